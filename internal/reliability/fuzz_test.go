package reliability_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/app"
)

// fuzzFixture is a real wagate (SQLite, in this process) with a client, a
// connected sandbox session, one waiting for its scan, and a webhook on a
// loopback receiver. Fuzz inputs go straight to its handler, without a
// socket.
type fuzzFixture struct {
	m       *app.Main
	token   string
	session string
	pending string
	hook    string
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	f.Helper()
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	f.Cleanup(rc.Close)
	m := startServer(f, baseEnv(f, map[string]string{"WAGATE_LOG_LEVEL": "error"}))
	c, _ := newClient(f, m.URL(), m.AdminToken, "fuzz")
	fx := &fuzzFixture{m: m, token: c.token}
	fx.hook = registerWebhook(f, c, map[string]any{"webhook_url": rc.URL + "/hook", "events": []string{"*"}, "max_retries": 0})
	// User ids a fuzzer is unlikely to reuse, so a fuzzed connect seldom
	// takes the fixture's sessions over.
	fx.session = linkedSandbox(f, c, "fixture-user-connected", "5511999999999")
	r := c.do("POST", "/api/whatsapp/connect", map[string]any{"user_id": "fixture-user-pending", "phone_number": "5511999999998", "engine": "sandbox"})
	if r.Status != http.StatusCreated {
		f.Fatalf("connect: %d %s", r.Status, r.Body)
	}
	fx.pending = r.json(f)["session_id"].(string)
	return fx
}

// serve sends one request to the server's handler.
func (fx *fuzzFixture) serve(method, path, token, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.RemoteAddr = "127.0.0.1:12345"
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	fx.m.API.ServeHTTP(rec, req)
	return rec
}

// checkAnswer fails on a 5xx, on an error that is not the envelope, and on
// a success that is not JSON.
func checkAnswer(t *testing.T, route string, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	switch {
	case rec.Code >= 500:
		t.Fatalf("%s answered %d to %q: %s", route, rec.Code, body, rec.Body)
	case rec.Code >= 400:
		if msg := envelopeError(rec.Code, rec.Body.Bytes()); msg != "" {
			t.Fatalf("%s answered %d to %q without the envelope: %s", route, rec.Code, body, msg)
		}
	case rec.Code == http.StatusNoContent:
	case !json.Valid(rec.Body.Bytes()):
		t.Fatalf("%s answered %d to %q with a body that is not JSON: %.200q", route, rec.Code, body, rec.Body)
	}
}

// networkSafe reports whether a body can make wagate reach beyond
// loopback: a URL (webhook_url, url, media_url, a header value...) that is
// not http://127.0.0.1:9/ (the discard port, where nothing listens), or a
// session on the whatsmeow engine, which would call WhatsApp. It decodes the
// first JSON value as the server does; a body it cannot decode the server
// refuses too. Strings are matched wherever they sit, which also covers
// keys that match a field case-insensitively.
func networkSafe(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return true
	}
	safe := true
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			safe = safe && safeString(x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				safe = safe && safeString(k)
				walk(e)
			}
		}
	}
	walk(v)
	return safe
}

func safeString(s string) bool {
	lower := strings.ToLower(s)
	if strings.Contains(lower, "whatsmeow") {
		return false
	}
	if !strings.Contains(lower, "http") {
		return true // every URL wagate fetches or posts to is http(s)
	}
	u, err := url.Parse(strings.TrimSpace(s))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.User == nil && u.Host == "127.0.0.1:9"
}

// decodeRoutes are the routes that read a JSON body; their paths name the
// fixture's resources. admin routes take the admin token.
var decodeRoutes = []struct {
	route string
	admin bool
}{
	{route: "POST /api/admin/clients", admin: true},
	{route: "POST /api/whatsapp/connect"},
	{route: "POST /api/whatsapp/sessions/{id}/pair-code"},
	{route: "POST /api/whatsapp/sessions/{id}/messages"},
	{route: "POST /api/whatsapp/sessions/{id}/read"},
	{route: "POST /api/whatsapp/sessions/{id}/sandbox/messages"},
	{route: "POST /api/whatsapp/sessions/{id}/sandbox/receipts"},
	{route: "POST /api/webhooks/register"},
	{route: "PATCH /api/webhooks/{id}"},
	{route: "POST /api/webhooks/{id}/rotate-secret"},
	{route: "POST /api/webhooks/{id}/recover"},
	{route: "PUT /api/me/alert-webhook"},
}

// noBodyRoutes write but read no body: nothing for FuzzDecode to feed.
var noBodyRoutes = []string{
	"POST /api/admin/clients/{id}/tokens",
	"POST /api/whatsapp/sessions/{id}/logout",
	"POST /api/whatsapp/sessions/{id}/reconnect",
	"POST /api/whatsapp/sessions/{id}/sandbox/scan",
	"POST /api/webhooks/events/{eventId}/retry",
	"POST /api/webhooks/{id}/test",
}

var fuzzContentTypes = []string{
	"application/json", "", "text/plain", "application/x-www-form-urlencoded",
	"multipart/form-data; boundary=x", "application/json; charset=utf-8", ";;;",
}

// FuzzDecode sends arbitrary bodies, with various content types, to every
// route that decodes JSON, and expects a 2xx or the 4xx envelope: never a
// 5xx. The routes it must cover are read from the server's Routes(), so a new
// route with a body fails it until it is added to decodeRoutes.
func FuzzDecode(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, route := range fx.m.API.Routes() {
		method, _, _ := strings.Cut(route, " ")
		if method != "POST" && method != "PUT" && method != "PATCH" {
			continue
		}
		known := slices.Contains(noBodyRoutes, route)
		for _, d := range decodeRoutes {
			known = known || d.route == route
		}
		if !known {
			f.Errorf("%s is neither in decodeRoutes nor in noBodyRoutes", route)
		}
	}
	for _, d := range decodeRoutes {
		if !slices.Contains(fx.m.API.Routes(), d.route) {
			f.Errorf("decodeRoutes has %s, which is not served", d.route)
		}
	}
	paths := make([]string, len(decodeRoutes))
	for i, d := range decodeRoutes {
		_, pattern, _ := strings.Cut(d.route, " ")
		id := fx.session
		switch {
		case strings.HasSuffix(pattern, "/pair-code"):
			id = fx.pending
		case strings.HasPrefix(pattern, "/api/webhooks/"):
			id = fx.hook
		}
		paths[i] = strings.ReplaceAll(pattern, "{id}", id)
	}

	f.Fuzz(func(t *testing.T, route, contentType uint8, body []byte) {
		if !networkSafe(body) {
			t.Skip("the body names a destination beyond loopback")
		}
		i := int(route) % len(decodeRoutes)
		d := decodeRoutes[i]
		method, _, _ := strings.Cut(d.route, " ")
		token := fx.token
		if d.admin {
			token = adminToken
		}
		rec := fx.serve(method, paths[i], token, fuzzContentTypes[int(contentType)%len(fuzzContentTypes)], body)
		checkAnswer(t, d.route, body, rec)
	})
}

// FuzzSandboxInject sends arbitrary bodies to the sandbox injection of a
// connected session: its answer is 202 with the message ids, or the 4xx
// envelope; the events it accepts go through the whole pipeline (storage,
// payload, delivery to a loopback receiver), where a panic would end the
// test binary.
func FuzzSandboxInject(f *testing.F) {
	fx := newFuzzFixture(f)
	path := "/api/whatsapp/sessions/" + fx.session + "/sandbox/messages"
	f.Fuzz(func(t *testing.T, body []byte) {
		if !networkSafe(body) {
			t.Skip("the body names a destination beyond loopback")
		}
		rec := fx.serve("POST", path, fx.token, "application/json", body)
		checkAnswer(t, "sandbox/messages", body, rec)
		if rec.Code >= 300 {
			return
		}
		if rec.Code != http.StatusAccepted {
			t.Fatalf("answered %d to %q: %s", rec.Code, body, rec.Body)
		}
		var out struct {
			MessageIDs []string `json:"message_ids"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.MessageIDs) == 0 || len(out.MessageIDs) > 1000 {
			t.Fatalf("202 to %q with %s", body, rec.Body)
		}
		for _, id := range out.MessageIDs {
			if id == "" {
				t.Fatalf("202 to %q with an empty message id: %s", body, rec.Body)
			}
		}
	})
}
