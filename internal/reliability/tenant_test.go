package reliability_test

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// tenantCalls has a plausible request for every client route with a path
// parameter: a body the route would accept from the owner, so that only
// ownership can make it a 404. TestTenantIsolation fails when a route with
// a path parameter is missing here: add it with its body.
var tenantCalls = map[string]struct {
	query string
	body  any
}{
	"GET /api/webhooks/{id}":                    {},
	"PATCH /api/webhooks/{id}":                  {body: map[string]any{"max_retries": 1, "active": false}},
	"DELETE /api/webhooks/{id}":                 {},
	"POST /api/webhooks/{id}/rotate-secret":     {body: map[string]any{"grace_seconds": 0}},
	"GET /api/webhooks/{id}/events":             {query: "?status=delivered"},
	"GET /api/webhooks/events/{eventId}":        {},
	"POST /api/webhooks/events/{eventId}/retry": {},
	"POST /api/webhooks/{id}/recover":           {body: map[string]any{"since": "2000-01-01T00:00:00Z"}},
	"POST /api/webhooks/{id}/test":              {},

	"GET /api/whatsapp/sessions/{id}":                   {},
	"DELETE /api/whatsapp/sessions/{id}":                {},
	"GET /api/whatsapp/sessions/{id}/qr":                {query: "?format=raw"},
	"POST /api/whatsapp/sessions/{id}/pair-code":        {body: map[string]any{"phone_number": "5511999999999"}},
	"POST /api/whatsapp/sessions/{id}/logout":           {},
	"POST /api/whatsapp/sessions/{id}/reconnect":        {},
	"POST /api/whatsapp/sessions/{id}/messages":         {body: map[string]any{"to": "5511988887777", "text": "hi"}},
	"POST /api/whatsapp/sessions/{id}/read":             {body: map[string]any{"chat": "5511988887777", "message_ids": []string{"iso-1"}}},
	"POST /api/whatsapp/sessions/{id}/sandbox/scan":     {},
	"POST /api/whatsapp/sessions/{id}/sandbox/messages": {body: map[string]any{"from": "5511988887777", "content": "x"}},
	"POST /api/whatsapp/sessions/{id}/sandbox/receipts": {body: map[string]any{"message_ids": []string{"iso-1"}, "type": "read"}},
	"GET /api/whatsapp/sessions/{id}/sandbox/sent":      {},
	"GET /api/whatsapp/sessions/{id}/media/{messageId}": {},
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// TestTenantIsolation calls every client route that takes an id, as client
// B with client A's ids, and expects a 404 envelope from each; then checks
// that nothing of A's changed. It is not parallel: it reads
// the server's Routes().
func TestTenantIsolation(t *testing.T) {
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			env := baseEnv(t, nil)
			if dialect == store.Postgres {
				env["DATABASE_URL"] = testdb.PostgresURL(t)
			}
			m := startServer(t, env)
			rc := newCountingReceiver(t)
			a, _ := newClient(t, m.URL(), m.AdminToken, "A")
			b, _ := newClient(t, m.URL(), m.AdminToken, "B")
			hook := registerWebhook(t, a, map[string]any{"webhook_url": rc.url(), "max_retries": 3})
			session := linkedSandbox(t, a, "u1", "5511999999999")
			// A text message and one with a file, for the media route.
			r := a.do("POST", "/api/whatsapp/sessions/"+session+"/sandbox/messages", map[string]any{"messages": []map[string]any{
				{"from": "5511888888888", "type": "text", "content": "x", "message_id": "iso-1"},
				{"from": "5511888888888", "type": "image", "message_id": "iso-media", "mime_type": "image/png",
					"media_base64": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="},
			}})
			if r.Status != http.StatusAccepted {
				t.Fatalf("inject: %d %s", r.Status, r.Body)
			}
			var event string
			waitFor(t, "A's events delivered", 30*time.Second, func() bool {
				evs := listEvents(t, a, hook, "delivered")
				if len(evs) == 2 {
					event = evs[0]["id"].(string)
					return true
				}
				return false
			})
			// B has resources of its own, so a route that confused the two
			// would find something.
			registerWebhook(t, b, map[string]any{"webhook_url": rc.url(), "max_retries": 3})
			linkedSandbox(t, b, "u1", "5511999999999")

			idFor := func(pattern, param string) string {
				switch {
				case param == "{eventId}":
					return event
				case param == "{messageId}":
					return "iso-media"
				case param == "{id}" && strings.HasPrefix(pattern, "/api/webhooks/"):
					return hook
				case param == "{id}" && strings.HasPrefix(pattern, "/api/whatsapp/sessions/"):
					return session
				}
				return ""
			}

			views := []string{
				"/api/me", "/api/webhooks", "/api/webhooks/" + hook, "/api/webhooks/" + hook + "/events",
				"/api/webhooks/events/" + event, "/api/whatsapp/sessions", "/api/whatsapp/sessions/" + session,
				"/api/whatsapp/sessions/" + session + "/sandbox/sent", "/api/whatsapp/sessions/" + session + "/media/iso-media",
			}
			snapshot := func() map[string][]byte {
				out := map[string][]byte{}
				for _, v := range views {
					r := a.do("GET", v, nil)
					if r.Status != 200 {
						t.Fatalf("A's GET %s: %d %s", v, r.Status, r.Body)
					}
					out[v] = r.Body
				}
				return out
			}
			before := snapshot()
			received := rc.total()

			covered := map[string]bool{}
			for _, route := range m.API.Routes() {
				method, pattern, _ := strings.Cut(route, " ")
				if !strings.Contains(pattern, "{") || strings.HasPrefix(pattern, "/api/admin/") {
					continue // admin routes take the admin token, not a client's
				}
				call, ok := tenantCalls[route]
				if !ok {
					t.Errorf("%s takes an id but is not in tenantCalls: add a plausible request for it", route)
					continue
				}
				covered[route] = true
				path := pathParam.ReplaceAllStringFunc(pattern, func(p string) string {
					id := idFor(pattern, p)
					if id == "" {
						t.Errorf("%s: no id of A's for %s", route, p)
					}
					return id
				})
				r := b.do(method, path+call.query, call.body, "Idempotency-Key", "iso-key")
				if r.Status != http.StatusNotFound {
					t.Errorf("%s as another client: %d %s", route, r.Status, r.Body)
					continue
				}
				if msg := envelopeError(r.Status, r.Body); msg != "" {
					t.Errorf("%s: %s", route, msg)
				} else if code := r.json(t)["code"]; code != "NOT_FOUND" {
					t.Errorf("%s: code %v", route, code)
				}
			}
			t.Logf("%d routes walked as another client", len(covered))
			for route := range tenantCalls {
				if !covered[route] {
					t.Errorf("tenantCalls has %s, which is not served (or takes no id): remove it", route)
				}
			}

			// Nothing of A's changed: no edit, no send, no test event or
			// retry delivered.
			time.Sleep(300 * time.Millisecond)
			after := snapshot()
			for _, v := range views {
				if !bytes.Equal(before[v], after[v]) {
					t.Errorf("A's %s changed:\nbefore %s\nafter  %s", v, before[v], after[v])
				}
			}
			if sent := getJSON(t, a, "/api/whatsapp/sessions/"+session+"/sandbox/sent")["data"].([]any); len(sent) != 0 {
				t.Errorf("A's session sent %d messages", len(sent))
			}
			if got := rc.total(); got != received {
				t.Errorf("the receiver got %d deliveries meanwhile", got-received)
			}
			if n := len(listEvents(t, a, hook, "")); n != 2 {
				t.Errorf("A's webhook has %d events, want 2", n)
			}
		})
	}
}
