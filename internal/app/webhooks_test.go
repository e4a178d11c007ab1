package app_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/app"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/testdb"
)

// whLoopback is the destination of every webhook in these tests: an IP
// literal (no DNS) on loopback, never dialled since nothing is published.
const whLoopback = "http://127.0.0.1:9/hook"

func whAllowLoopback() map[string]string {
	return map[string]string{"WAGATE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"}
}

func TestWebhooksAPI(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			m := startServer(t, dialect, whAllowLoopback())
			c, clientID := newClient(t, m, "Acme")
			other, _ := newClient(t, m, "Other")

			// Register, with the seed's body plus wagate's fields.
			r := c.do("POST", "/api/webhooks/register", map[string]any{
				"phone_number": "+55 (11) 99999-9999", "webhook_url": whLoopback, "max_retries": 3,
				"events": []string{"message", "message.ack"}, "description": "orders",
				"headers": map[string]string{"x-api-key": "hdr-credential-1"},
			})
			if r.Status != http.StatusCreated {
				t.Fatalf("register: %d %s", r.Status, r.Body)
			}
			w := r.json(t)
			id, secret := w["id"].(string), w["secret"].(string)
			if !strings.HasPrefix(secret, "whsec_") || len(id) != 36 || w["phone_number"] != "5511999999999" ||
				w["webhook_url"] != whLoopback || w["max_retries"].(float64) != 3 || w["active"] != true ||
				int64(w["client_id"].(float64)) != clientID || w["description"] != "orders" {
				t.Fatalf("registered: %s", r.Body)
			}
			if h := w["headers"].(map[string]any); h["X-Api-Key"] != "***" || bytes.Contains(r.Body, []byte("hdr-credential-1")) {
				t.Fatalf("header value shown: %s", r.Body)
			}

			// Defaults: client-wide, ["message"], 5 retries.
			r = c.do("POST", "/api/webhooks/register", map[string]any{"webhook_url": whLoopback + "2"})
			if r.Status != http.StatusCreated {
				t.Fatalf("register defaults: %d %s", r.Status, r.Body)
			}
			d := r.json(t)
			if d["phone_number"] != "" || d["max_retries"].(float64) != 5 || len(d["events"].([]any)) != 1 || d["events"].([]any)[0] != "message" {
				t.Fatalf("defaults: %s", r.Body)
			}
			id2 := d["id"].(string)

			// List and get never show the secret or header values.
			r = c.do("GET", "/api/webhooks", nil)
			if r.Status != 200 {
				t.Fatalf("list: %d %s", r.Status, r.Body)
			}
			if list := r.json(t)["data"].([]any); len(list) != 2 || list[0].(map[string]any)["id"] != id {
				t.Fatalf("list: %s", r.Body)
			}
			for _, body := range [][]byte{r.Body, c.do("GET", "/api/webhooks/"+id, nil).Body} {
				if bytes.Contains(body, []byte(secret)) || bytes.Contains(body, []byte("hdr-credential-1")) ||
					bytes.Contains(body, []byte(`"secret"`)) || !bytes.Contains(body, []byte(`"X-Api-Key":"***"`)) {
					t.Fatalf("secret material shown: %s", body)
				}
			}
			if r := c.do("GET", "/api/webhooks/"+strings.ToUpper(id), nil); r.Status != 200 || r.json(t)["id"] != id {
				t.Fatalf("get by upper-case id: %d %s", r.Status, r.Body)
			}

			// Patch: partial, and re-enable.
			r = c.do("PATCH", "/api/webhooks/"+id, map[string]any{"max_retries": 0, "events": []string{"*"}, "phone_number": ""})
			if r.Status != 200 {
				t.Fatalf("patch: %d %s", r.Status, r.Body)
			}
			p := r.json(t)
			if p["max_retries"].(float64) != 0 || p["events"].([]any)[0] != "*" || p["phone_number"] != "" ||
				p["description"] != "orders" || p["webhook_url"] != whLoopback || p["headers"].(map[string]any)["X-Api-Key"] != "***" {
				t.Fatalf("patched: %s", r.Body)
			}
			r = c.do("PATCH", "/api/webhooks/"+id, map[string]any{"active": false})
			if p := r.json(t); r.Status != 200 || p["active"] != false || p["disabled_reason"] != "disabled by client" || p["disabled_at"] == nil {
				t.Fatalf("disable: %d %s", r.Status, r.Body)
			}
			r = c.do("PATCH", "/api/webhooks/"+id, map[string]any{"active": true, "headers": map[string]string{}})
			if p := r.json(t); r.Status != 200 || p["active"] != true || p["disabled_reason"] != nil || p["disabled_at"] != nil ||
				len(p["headers"].(map[string]any)) != 0 {
				t.Fatalf("re-enable: %d %s", r.Status, r.Body)
			}

			// Rotate: a new secret, the old one in its grace period.
			r = c.do("POST", "/api/webhooks/"+id+"/rotate-secret", nil)
			if r.Status != 200 {
				t.Fatalf("rotate: %d %s", r.Status, r.Body)
			}
			rot := r.json(t)
			newSecret := rot["secret"].(string)
			exp, err := time.Parse(time.RFC3339, rot["previous_secret_expires_at"].(string))
			if rot["id"] != id || newSecret == secret || !strings.HasPrefix(newSecret, "whsec_") || err != nil ||
				exp.Before(time.Now().Add(23*time.Hour)) || exp.After(time.Now().Add(25*time.Hour)) {
				t.Fatalf("rotation: %s", r.Body)
			}
			if g := c.do("GET", "/api/webhooks/"+id, nil); !bytes.Contains(g.Body, []byte("previous_secret_expires_at")) || bytes.Contains(g.Body, []byte(newSecret)) {
				t.Fatalf("get after rotation: %s", g.Body)
			}
			if d, err := m.Webhooks.ForDelivery(t.Context(), id); err != nil || d.Secret != newSecret || d.PrevSecret != secret {
				t.Fatalf("delivery view after rotation: %v", err)
			}
			r = c.do("POST", "/api/webhooks/"+id+"/rotate-secret", map[string]any{"grace_seconds": 0})
			if r.Status != 200 || !bytes.Contains(r.Body, []byte(`"previous_secret_expires_at":null`)) {
				t.Fatalf("rotate without grace: %d %s", r.Status, r.Body)
			}
			expectError(t, c.do("POST", "/api/webhooks/"+id+"/rotate-secret", map[string]any{"grace_seconds": 8 * 86400}), 400, "VALIDATION_ERROR")
			expectError(t, c.do("POST", "/api/webhooks/"+id+"/rotate-secret", map[string]any{"grace_seconds": "1h"}), 400, "VALIDATION_ERROR")

			// Another client's id is not found, on every route, and
			// changes nothing.
			for _, rq := range []struct{ method, path string }{
				{"GET", "/api/webhooks/" + id}, {"PATCH", "/api/webhooks/" + id},
				{"DELETE", "/api/webhooks/" + id}, {"POST", "/api/webhooks/" + id + "/rotate-secret"},
			} {
				var body any
				if rq.method == "PATCH" {
					body = map[string]any{"max_retries": 1}
				}
				expectError(t, other.do(rq.method, rq.path, body), 404, "NOT_FOUND")
			}
			if r := other.do("GET", "/api/webhooks", nil); r.Status != 200 || !bytes.Equal(bytes.TrimSpace(r.Body), []byte(`{"data":[]}`)) {
				t.Fatalf("other client's list: %s", r.Body)
			}
			// Unknown and malformed ids.
			for _, bad := range []string{"00000000-0000-0000-0000-000000000000", "nope", "1"} {
				expectError(t, c.do("GET", "/api/webhooks/"+bad, nil), 404, "NOT_FOUND")
				expectError(t, c.do("PATCH", "/api/webhooks/"+bad, `{"max_retries":1}`), 404, "NOT_FOUND")
				expectError(t, c.do("DELETE", "/api/webhooks/"+bad, nil), 404, "NOT_FOUND")
				expectError(t, c.do("POST", "/api/webhooks/"+bad+"/rotate-secret", nil), 404, "NOT_FOUND")
			}
			// Without a token.
			anon := apiClient{t: t, base: m.URL()}
			expectError(t, anon.do("GET", "/api/webhooks", nil), 401, "UNAUTHORIZED")
			expectError(t, anon.do("POST", "/api/webhooks/register", map[string]any{"webhook_url": whLoopback}), 401, "UNAUTHORIZED")

			// Alert webhook.
			if r := c.do("PUT", "/api/me/alert-webhook", map[string]any{"url": whLoopback + "/alerts"}); r.Status != 204 {
				t.Fatalf("alert webhook: %d %s", r.Status, r.Body)
			}
			if me := c.do("GET", "/api/me", nil).json(t); me["alert_webhook_url"] != whLoopback+"/alerts" {
				t.Fatalf("me: %v", me)
			}
			expectError(t, c.do("PUT", "/api/me/alert-webhook", map[string]any{"url": "ftp://127.0.0.1/x"}), 400, "VALIDATION_ERROR")
			expectError(t, c.do("PUT", "/api/me/alert-webhook", map[string]any{}), 400, "VALIDATION_ERROR")
			expectError(t, c.do("PUT", "/api/me/alert-webhook", map[string]any{"url": 1}), 400, "VALIDATION_ERROR")
			if r := c.do("PUT", "/api/me/alert-webhook", map[string]any{"url": ""}); r.Status != 204 {
				t.Fatalf("clear alert webhook: %d %s", r.Status, r.Body)
			}
			if me := c.do("GET", "/api/me", nil).json(t); me["alert_webhook_url"] != nil {
				t.Fatalf("alert webhook not cleared: %v", me)
			}

			// Delete.
			if r := c.do("DELETE", "/api/webhooks/"+id, nil); r.Status != 204 {
				t.Fatalf("delete: %d %s", r.Status, r.Body)
			}
			expectError(t, c.do("GET", "/api/webhooks/"+id, nil), 404, "NOT_FOUND")
			expectError(t, c.do("DELETE", "/api/webhooks/"+id, nil), 404, "NOT_FOUND")
			if list := c.do("GET", "/api/webhooks", nil).json(t)["data"].([]any); len(list) != 1 || list[0].(map[string]any)["id"] != id2 {
				t.Fatalf("list after delete: %v", list)
			}
		})
	}
}

func TestWebhooksBadInput(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			m := startServer(t, dialect, whAllowLoopback())
			c, _ := newClient(t, m, "Acme")
			hdrs := map[string]string{}
			for i := range 21 {
				hdrs["X-H"+strings.Repeat("a", i)] = "v"
			}
			for _, tc := range []struct {
				name   string
				body   any
				status int
				code   string
				msg    string
			}{
				{"malformed JSON", `{"webhook_url":`, 400, "VALIDATION_ERROR", "JSON"},
				{"not an object", `[]`, 400, "VALIDATION_ERROR", ""},
				{"empty body", "", 400, "VALIDATION_ERROR", "empty"},
				{"url missing", map[string]any{"max_retries": 1}, 400, "VALIDATION_ERROR", "webhook_url"},
				{"url wrong type", map[string]any{"webhook_url": 5}, 400, "VALIDATION_ERROR", "webhook_url"},
				{"bad scheme", map[string]any{"webhook_url": "ftp://127.0.0.1/x"}, 400, "VALIDATION_ERROR", "scheme"},
				{"javascript scheme", map[string]any{"webhook_url": "javascript:alert(1)"}, 400, "VALIDATION_ERROR", "scheme"},
				{"credentials", map[string]any{"webhook_url": "http://user:pw@127.0.0.1:9/x"}, 400, "VALIDATION_ERROR", "credentials"},
				{"url too long", map[string]any{"webhook_url": whLoopback + strings.Repeat("a", 2048)}, 400, "VALIDATION_ERROR", "2048"},
				{"private outside allow list", map[string]any{"webhook_url": "http://10.0.0.1/x"}, 400, "VALIDATION_ERROR", "private"},
				{"metadata", map[string]any{"webhook_url": "http://169.254.169.254/x"}, 400, "VALIDATION_ERROR", "metadata"},
				{"unknown event", map[string]any{"webhook_url": whLoopback, "events": []string{"message", "bogus"}}, 400, "VALIDATION_ERROR", "bogus"},
				{"empty events", map[string]any{"webhook_url": whLoopback, "events": []string{}}, 400, "VALIDATION_ERROR", "events"},
				{"events wrong type", map[string]any{"webhook_url": whLoopback, "events": "message"}, 400, "VALIDATION_ERROR", "events"},
				{"reserved header", map[string]any{"webhook_url": whLoopback, "headers": map[string]string{"content-type": "text/plain"}}, 400, "VALIDATION_ERROR", "Content-Type"},
				{"signature header", map[string]any{"webhook_url": whLoopback, "headers": map[string]string{"Webhook-Id": "x"}}, 400, "VALIDATION_ERROR", "Webhook-Id"},
				{"header name", map[string]any{"webhook_url": whLoopback, "headers": map[string]string{"X:Y": "x"}}, 400, "VALIDATION_ERROR", "header name"},
				{"header CRLF", map[string]any{"webhook_url": whLoopback, "headers": map[string]string{"X-A": "a\r\nX-B: b"}}, 400, "VALIDATION_ERROR", "control"},
				{"header value long", map[string]any{"webhook_url": whLoopback, "headers": map[string]string{"X-A": strings.Repeat("v", 1025)}}, 400, "VALIDATION_ERROR", "1024"},
				{"too many headers", map[string]any{"webhook_url": whLoopback, "headers": hdrs}, 400, "VALIDATION_ERROR", "20"},
				{"headers wrong type", map[string]any{"webhook_url": whLoopback, "headers": map[string]any{"X-A": 1}}, 400, "VALIDATION_ERROR", "headers"},
				{"phone letters", map[string]any{"webhook_url": whLoopback, "phone_number": "55-11-abcd"}, 400, "VALIDATION_ERROR", "phone_number"},
				{"phone short", map[string]any{"webhook_url": whLoopback, "phone_number": "1234567"}, 400, "VALIDATION_ERROR", "phone_number"},
				{"phone wrong type", map[string]any{"webhook_url": whLoopback, "phone_number": 5511999999999}, 400, "VALIDATION_ERROR", "phone_number"},
				{"retries negative", map[string]any{"webhook_url": whLoopback, "max_retries": -1}, 400, "VALIDATION_ERROR", "max_retries"},
				{"retries too high", map[string]any{"webhook_url": whLoopback, "max_retries": 26}, 400, "VALIDATION_ERROR", "max_retries"},
				{"retries fractional", map[string]any{"webhook_url": whLoopback, "max_retries": 2.5}, 400, "VALIDATION_ERROR", "max_retries"},
				{"retries string", map[string]any{"webhook_url": whLoopback, "max_retries": "3"}, 400, "VALIDATION_ERROR", "max_retries"},
				{"description long", map[string]any{"webhook_url": whLoopback, "description": strings.Repeat("d", 501)}, 400, "VALIDATION_ERROR", "description"},
			} {
				r := c.do("POST", "/api/webhooks/register", tc.body)
				e := expectError(t, r, tc.status, tc.code)
				if !strings.Contains(e["message"].(string), tc.msg) {
					t.Errorf("%s: message %q lacks %q", tc.name, e["message"], tc.msg)
				}
			}
			if list := c.do("GET", "/api/webhooks", nil).json(t)["data"].([]any); len(list) != 0 {
				t.Fatalf("bad input stored %d webhooks", len(list))
			}

			// PATCH refuses the same, and leaves the webhook alone.
			r := c.do("POST", "/api/webhooks/register", map[string]any{"webhook_url": whLoopback})
			if r.Status != 201 {
				t.Fatalf("register: %d %s", r.Status, r.Body)
			}
			id := r.json(t)["id"].(string)
			for _, body := range []any{
				`{"max_retries":`, `"x"`, "", map[string]any{"webhook_url": "gopher://127.0.0.1/"},
				map[string]any{"max_retries": 99}, map[string]any{"events": []string{"nope"}},
				map[string]any{"headers": map[string]string{"Host": "x"}}, map[string]any{"phone_number": "12"},
				map[string]any{"active": "yes"}, map[string]any{"webhook_url": "http://192.168.1.1/x"},
			} {
				expectError(t, c.do("PATCH", "/api/webhooks/"+id, body), 400, "")
			}
			if g := c.do("GET", "/api/webhooks/"+id, nil).json(t); g["webhook_url"] != whLoopback || g["max_retries"].(float64) != 5 {
				t.Fatalf("a refused patch changed the webhook: %v", g)
			}
		})
	}
}

// TestWebhooksLoopbackRefusedByDefault: without WAGATE_WEBHOOK_ALLOW_CIDRS,
// the SSRF guard refuses loopback destinations at registration.
func TestWebhooksLoopbackRefusedByDefault(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", nil)
	c, _ := newClient(t, m, "Acme")
	for _, u := range []string{whLoopback, "http://[::1]:9/hook", "http://127.1.2.3/x"} {
		e := expectError(t, c.do("POST", "/api/webhooks/register", map[string]any{"webhook_url": u}), 400, "VALIDATION_ERROR")
		if !strings.Contains(e["message"].(string), "loopback") {
			t.Fatalf("%s: %v", u, e["message"])
		}
	}
	expectError(t, c.do("PUT", "/api/me/alert-webhook", map[string]any{"url": whLoopback}), 400, "VALIDATION_ERROR")
}

// TestWebhookSecretsSurviveRestart: a node restarted on the same data
// directory reads its generated key back and opens the stored secrets; a
// node given another key refuses to start.
func TestWebhookSecretsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := whAllowLoopback()
	env["WAGATE_DATA_DIR"] = dir
	m := startServer(t, "sqlite", env)
	c, _ := newClient(t, m, "Acme")
	r := c.do("POST", "/api/webhooks/register", map[string]any{"webhook_url": whLoopback})
	if r.Status != 201 {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	id, secret := r.json(t)["id"].(string), r.json(t)["secret"].(string)
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	m2 := startServer(t, "sqlite", env)
	if d, err := m2.Webhooks.ForDelivery(t.Context(), id); err != nil || d.Secret != secret {
		t.Fatalf("after restart: %v", err)
	}
	if err := m2.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	env["WAGATE_SECRET_KEY"] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	if err := startServerErr(t, env); err == nil || !strings.Contains(err.Error(), "WAGATE_SECRET_KEY") {
		t.Fatalf("start with another key: %v", err)
	}
	env["WAGATE_SECRET_KEY"] = "too-short"
	if err := startServerErr(t, env); err == nil || !strings.Contains(err.Error(), "WAGATE_SECRET_KEY") {
		t.Fatalf("start with a malformed key: %v", err)
	}
}

// startServerErr starts a SQLite node that is expected to fail, and returns
// its error.
func startServerErr(t *testing.T, env map[string]string) error {
	t.Helper()
	vars := map[string]string{"WAGATE_ADDR": "127.0.0.1:0", "WAGATE_SANDBOX": "true", "WAGATE_ENGINE": "sandbox"}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] }, "")
	if err != nil {
		t.Fatal(err)
	}
	m := &app.Main{Config: cfg, Log: testdb.Logger(t)}
	err = m.Start(context.Background())
	m.Close(context.Background())
	return err
}
