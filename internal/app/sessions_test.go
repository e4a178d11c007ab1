package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// TestSessionsEndToEnd walks the session lifecycle on the real server:
// connect, QR, scan, the seed's SESSION_EXISTS, inbound dedupe, idempotent
// sends, logout, and a restart that brings the linked session back.
func TestSessionsEndToEnd(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			// The second node reuses the first one's data directory and database.
			env := map[string]string{"WAGATE_DATA_DIR": t.TempDir()}
			if dialect == store.Postgres {
				env["DATABASE_URL"] = testdb.PostgresURL(t)
			}
			m := startServer(t, store.SQLite, env)
			c, _ := newClient(t, m, "Acme")
			ctx := context.Background()

			r := c.do("POST", "/api/whatsapp/connect", map[string]any{"user_id": "user-uuid-123", "phone_number": "+55 11 99999-9999", "engine": "sandbox"})
			if r.Status != http.StatusCreated {
				t.Fatalf("connect: %d %s", r.Status, r.Body)
			}
			conn := r.json(t)
			id, _ := conn["session_id"].(string)
			qr, _ := conn["qr_code"].(string)
			if conn["status"] != "reconnecting" || qr == "" || id == "" || len(conn) != 3 {
				t.Fatalf("connect answer: %s", r.Body)
			}

			// The QR as a real PNG, and raw.
			r = c.do("GET", "/api/whatsapp/sessions/"+id+"/qr", nil)
			if r.Status != 200 || r.Header.Get("Content-Type") != "image/png" || !bytes.HasPrefix(r.Body, []byte("\x89PNG\r\n\x1a\n")) {
				t.Fatalf("qr png: %d %q %q", r.Status, r.Header.Get("Content-Type"), r.Body[:min(len(r.Body), 16)])
			}
			img, err := png.Decode(bytes.NewReader(r.Body))
			if err != nil || img.Bounds().Dx() < 100 || img.Bounds().Dx() != img.Bounds().Dy() {
				t.Fatalf("qr image: %v %v", err, img.Bounds())
			}
			if raw := getJSON(t, c, "/api/whatsapp/sessions/"+id+"/qr?format=raw"); raw["qr_code"] != qr {
				t.Fatalf("raw qr: %v", raw)
			}
			if s := getJSON(t, c, "/api/whatsapp/sessions/"+id); s["status"] != "reconnecting" || s["qr_pending"] != true ||
				s["phone_number"] != "5511999999999" || s["engine"] != "sandbox" || s["user_id"] != "user-uuid-123" {
				t.Fatalf("session before scan: %v", s)
			}
			// Not linked yet: nothing to inject into.
			expectError(t, c.do("POST", "/api/whatsapp/sessions/"+id+"/sandbox/messages", map[string]any{"from": "5511988887777", "content": "x"}), 409, "SESSION_NOT_CONNECTED")
			expectError(t, c.do("POST", "/api/whatsapp/sessions/"+id+"/messages", map[string]any{"to": "5511988887777", "text": "x"}), 409, "SESSION_NOT_CONNECTED")

			r = c.do("POST", "/api/whatsapp/sessions/"+id+"/sandbox/scan", nil)
			if r.Status != 200 {
				t.Fatalf("scan: %d %s", r.Status, r.Body)
			}
			s := getJSON(t, c, "/api/whatsapp/sessions/"+id)
			if s["status"] != "connected" || s["jid"] != "5511999999999@s.whatsapp.net" || s["qr_pending"] != false {
				t.Fatalf("session after scan: %v", s)
			}
			if msg := expectError(t, c.do("GET", "/api/whatsapp/sessions/"+id+"/qr", nil), 404, "NOT_FOUND")["message"].(string); !strings.Contains(msg, "already connected") {
				t.Fatalf("qr when connected: %s", msg)
			}

			// The seed's answer to a second connect.
			e := expectError(t, c.do("POST", "/api/whatsapp/connect", map[string]any{"user_id": "user-uuid-123", "phone_number": "5511999999999"}), 400, "SESSION_EXISTS")
			if e["message"] != "Sessão já existente" || e["error"] != "Bad Request" {
				t.Fatalf("session exists: %v", e)
			}

			// The same inbound message twice is stored once.
			msg := map[string]any{"from": "5511988887777", "type": "text", "content": "olá", "message_id": "3EB0DUPLICATE0001"}
			r = c.do("POST", "/api/whatsapp/sessions/"+id+"/sandbox/messages", msg)
			if r.Status != http.StatusAccepted {
				t.Fatalf("inject: %d %s", r.Status, r.Body)
			}
			if ids := inject(t, c, id, msg); len(ids) != 1 || ids[0] != "3EB0DUPLICATE0001" {
				t.Fatalf("inject ids: %v", ids)
			}
			var n int
			if err := m.DB.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE session_id = $1 AND event_type = 'message'`, id).Scan(&n); err != nil || n != 1 {
				t.Fatalf("stored message events: %d %v", n, err)
			}
			var payload string
			if err := m.DB.SQL().QueryRowContext(ctx, `SELECT payload FROM events WHERE session_id = $1 AND event_type = 'message'`, id).Scan(&payload); err != nil ||
				!strings.Contains(payload, `"content":"olá"`) || !strings.Contains(payload, `"from":"5511988887777"`) {
				t.Fatalf("payload: %s %v", payload, err)
			}
			if err := m.DB.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE session_id = $1 AND event_type = 'session.status'`, id).Scan(&n); err != nil || n < 2 {
				t.Fatalf("session.status events: %d %v", n, err)
			}

			// A retried send with the same Idempotency-Key sends once.
			send := map[string]any{"to": "5511988887777", "type": "text", "text": "hello"}
			r1 := c.do("POST", "/api/whatsapp/sessions/"+id+"/messages", send, "Idempotency-Key", "order-42")
			r2 := c.do("POST", "/api/whatsapp/sessions/"+id+"/messages", send, "Idempotency-Key", "order-42")
			if r1.Status != 201 || r2.Status != 201 {
				t.Fatalf("sends: %d %s / %d %s", r1.Status, r1.Body, r2.Status, r2.Body)
			}
			a, b := r1.json(t), r2.json(t)
			if a["message_id"] == "" || a["message_id"] != b["message_id"] || a["timestamp"] != b["timestamp"] || r2.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("replay: %v vs %v", a, b)
			}
			sent := getJSON(t, c, "/api/whatsapp/sessions/"+id+"/sandbox/sent")["data"].([]any)
			if len(sent) != 1 || sent[0].(map[string]any)["message_id"] != a["message_id"] || sent[0].(map[string]any)["text"] != "hello" {
				t.Fatalf("sandbox sent: %v", sent)
			}
			expectError(t, c.do("POST", "/api/whatsapp/sessions/"+id+"/messages", map[string]any{"to": "5511988887777", "text": "other"}, "Idempotency-Key", "order-42"), 409, "CONFLICT")
			var keys int
			if err := m.DB.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM outbound_messages WHERE session_id = $1 AND message_id = $2`, id, a["message_id"]).Scan(&keys); err != nil || keys != 1 {
				t.Fatalf("outbound_messages: %d %v", keys, err)
			}
			// Its delivery receipt arrives as a message.ack event.
			waitFor(t, "delivered receipt", 10*time.Second, func() bool {
				var acks int
				m.DB.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE session_id = $1 AND event_type = 'message.ack' AND dedupe_key = $2`,
					id, "message.ack:"+a["message_id"].(string)+":delivered").Scan(&acks)
				return acks == 1
			})
			r = c.do("POST", "/api/whatsapp/sessions/"+id+"/sandbox/receipts", map[string]any{"message_ids": []string{a["message_id"].(string)}, "type": "played"})
			if r.Status != http.StatusAccepted {
				t.Fatalf("receipts: %d %s", r.Status, r.Body)
			}
			r = c.do("POST", "/api/whatsapp/sessions/"+id+"/read", map[string]any{"chat": "5511988887777", "message_ids": []string{"3EB0DUPLICATE0001"}})
			if r.Status != 200 {
				t.Fatalf("read: %d %s", r.Status, r.Body)
			}

			// A second user is linked and logged out; the first stays linked.
			other := linkedSandbox(t, c, "user-2", "5511977776666")
			r = c.do("POST", "/api/whatsapp/sessions/"+other+"/logout", nil)
			if r.Status != 200 || r.json(t)["status"] != "logged_out" {
				t.Fatalf("logout: %d %s", r.Status, r.Body)
			}
			if s := getJSON(t, c, "/api/whatsapp/sessions/"+other); s["status"] != "logged_out" || s["jid"] != "" {
				t.Fatalf("after logout: %v", s)
			}
			list := getJSON(t, c, "/api/whatsapp/sessions?limit=1")
			if len(list["data"].([]any)) != 1 || list["next_cursor"] == nil {
				t.Fatalf("list page 1: %v", list)
			}
			list = getJSON(t, c, "/api/whatsapp/sessions?limit=1&cursor="+list["next_cursor"].(string))
			if len(list["data"].([]any)) != 1 || list["next_cursor"] != nil {
				t.Fatalf("list page 2: %v", list)
			}

			// Restart: a new node on the same data directory and database.
			if err := m.Close(ctx); err != nil {
				t.Fatal(err)
			}
			m2 := startServer(t, store.SQLite, env)
			c.base = m2.URL()
			if s := getJSON(t, c, "/api/whatsapp/sessions/"+id); s["status"] != "connected" || s["jid"] != "5511999999999@s.whatsapp.net" {
				t.Fatalf("linked session after restart: %v", s)
			}
			if s := getJSON(t, c, "/api/whatsapp/sessions/"+other); s["status"] != "logged_out" {
				t.Fatalf("logged-out session after restart: %v", s)
			}
			if r := c.do("POST", "/api/whatsapp/sessions/"+id+"/messages", map[string]any{"to": "5511988887777", "text": "back"}); r.Status != 201 {
				t.Fatalf("send after restart: %d %s", r.Status, r.Body)
			}
			// The key is remembered across the restart.
			if r := c.do("POST", "/api/whatsapp/sessions/"+id+"/messages", send, "Idempotency-Key", "order-42"); r.Status != 201 || r.json(t)["message_id"] != a["message_id"] {
				t.Fatalf("replay after restart: %d %s", r.Status, r.Body)
			}
			// The logged-out user pairs again in the same session.
			r = c.do("POST", "/api/whatsapp/connect", map[string]any{"user_id": "user-2", "phone_number": "5511977776666"})
			if r.Status != 201 || r.json(t)["session_id"] != other || r.json(t)["qr_code"] == "" {
				t.Fatalf("connect after logout: %d %s", r.Status, r.Body)
			}
			// Delete logs out and removes the row.
			if r := c.do("DELETE", "/api/whatsapp/sessions/"+id, nil); r.Status != 204 {
				t.Fatalf("delete: %d %s", r.Status, r.Body)
			}
			expectError(t, c.do("GET", "/api/whatsapp/sessions/"+id, nil), 404, "NOT_FOUND")
		})
	}
}

// TestSessionRoutesScopedAndValidated: every session route answers another
// client's session as absent, and bad input with a 4xx envelope.
func TestSessionRoutesScopedAndValidated(t *testing.T) {
	t.Parallel()
	m := startServer(t, store.SQLite, map[string]string{"WAGATE_MAX_BODY_BYTES": "262144", "WAGATE_MAX_MEDIA_BODY_BYTES": "262144"})
	owner, _ := newClient(t, m, "owner")
	intruder, _ := newClient(t, m, "intruder")
	theirs := linkedSandbox(t, owner, "u1", "5511999999999")
	mine := linkedSandbox(t, intruder, "u1", "5511999999999")
	pending := intruder.do("POST", "/api/whatsapp/connect", map[string]any{"user_id": "u2", "phone_number": "5511999999998", "engine": "sandbox"}).json(t)["session_id"].(string)

	text := map[string]any{"to": "5511988887777", "text": "x"}
	routes := []struct {
		method, path string
		body         any
	}{
		{"GET", "", nil},
		{"DELETE", "", nil},
		{"GET", "/qr", nil},
		{"GET", "/qr?format=raw", nil},
		{"POST", "/pair-code", map[string]any{"phone_number": "5511999999999"}},
		{"POST", "/logout", nil},
		{"POST", "/reconnect", nil},
		{"POST", "/messages", text},
		{"POST", "/read", map[string]any{"chat": "5511988887777", "message_ids": []string{"A"}}},
		{"GET", "/media/3EB0A", nil},
		{"POST", "/sandbox/scan", nil},
		{"POST", "/sandbox/messages", map[string]any{"from": "5511988887777", "content": "x"}},
		{"POST", "/sandbox/receipts", map[string]any{"message_ids": []string{"A"}, "type": "read"}},
		{"GET", "/sandbox/sent", nil},
	}
	for _, rt := range routes {
		t.Run("scoped "+rt.method+rt.path, func(t *testing.T) {
			expectError(t, intruder.do(rt.method, "/api/whatsapp/sessions/"+theirs+rt.path, rt.body), 404, "NOT_FOUND")
			expectError(t, intruder.do(rt.method, "/api/whatsapp/sessions/no-such-session"+rt.path, rt.body), 404, "NOT_FOUND")
		})
	}
	if s := getJSON(t, owner, "/api/whatsapp/sessions/"+theirs); s["status"] != "connected" {
		t.Fatalf("the owner's session was touched: %v", s)
	}
	if r := owner.do("GET", "/api/whatsapp/sessions", nil); !strings.Contains(string(r.Body), theirs) || strings.Contains(string(r.Body), mine) {
		t.Fatalf("owner's list: %s", r.Body)
	}

	big := make([]map[string]any, 1001)
	for i := range big {
		big[i] = map[string]any{"from": "5511988887777", "content": "x"}
	}
	p := "/api/whatsapp/sessions/" + mine
	cases := []struct {
		name, method, path string
		body               any
		status             int
		hdr                []string
	}{
		{"connect empty", "POST", "/api/whatsapp/connect", `{}`, 400, nil},
		{"connect malformed", "POST", "/api/whatsapp/connect", `{"user_id":`, 400, nil},
		{"connect number user", "POST", "/api/whatsapp/connect", `{"user_id":1,"phone_number":"5511999999999"}`, 400, nil},
		{"connect short phone", "POST", "/api/whatsapp/connect", map[string]any{"user_id": "x", "phone_number": "12"}, 400, nil},
		{"connect long user", "POST", "/api/whatsapp/connect", map[string]any{"user_id": strings.Repeat("u", 129), "phone_number": "5511999999999"}, 400, nil},
		{"connect engine", "POST", "/api/whatsapp/connect", map[string]any{"user_id": "x", "phone_number": "5511999999999", "engine": "bogus"}, 400, nil},
		{"list limit 0", "GET", "/api/whatsapp/sessions?limit=0", nil, 400, nil},
		{"list limit 101", "GET", "/api/whatsapp/sessions?limit=101", nil, 400, nil},
		{"list cursor", "GET", "/api/whatsapp/sessions?cursor=%21%21", nil, 400, nil},
		{"qr format", "GET", "/api/whatsapp/sessions/" + pending + "/qr?format=gif", nil, 400, nil},
		{"qr size", "GET", "/api/whatsapp/sessions/" + pending + "/qr?size=5", nil, 400, nil},
		{"qr none pending", "GET", p + "/qr", nil, 404, nil},
		{"pair-code phone", "POST", p + "/pair-code", map[string]any{"phone_number": "12"}, 400, nil},
		{"pair-code linked", "POST", p + "/pair-code", nil, 409, nil},
		{"send malformed", "POST", p + "/messages", `{"to":`, 400, nil},
		{"send recipient", "POST", p + "/messages", map[string]any{"to": "someone", "text": "x"}, 400, nil},
		{"send type", "POST", p + "/messages", map[string]any{"to": "5511988887777", "type": "hologram"}, 400, nil},
		{"send no text", "POST", p + "/messages", map[string]any{"to": "5511988887777"}, 400, nil},
		{"send key", "POST", p + "/messages", text, 400, []string{"Idempotency-Key", "two words"}},
		{"send multipart", "POST", p + "/messages", text, 415, []string{"Content-Type", "multipart/form-data; boundary=x"}},
		{"send huge", "POST", p + "/messages", map[string]any{"to": "5511988887777", "type": "image", "media_base64": strings.Repeat("A", 300000)}, 413, nil},
		{"send not connected", "POST", "/api/whatsapp/sessions/" + pending + "/messages", text, 409, nil},
		{"read no ids", "POST", p + "/read", map[string]any{"chat": "5511988887777"}, 400, nil},
		{"read chat", "POST", p + "/read", map[string]any{"chat": "x", "message_ids": []string{"A"}}, 400, nil},
		{"inject empty", "POST", p + "/sandbox/messages", `{}`, 400, nil},
		{"inject empty batch", "POST", p + "/sandbox/messages", map[string]any{"messages": []any{}}, 400, nil},
		{"inject too many", "POST", p + "/sandbox/messages", map[string]any{"messages": big}, 400, nil},
		{"inject sender", "POST", p + "/sandbox/messages", map[string]any{"from": "nobody", "content": "x"}, 400, nil},
		{"inject not connected", "POST", "/api/whatsapp/sessions/" + pending + "/sandbox/messages", map[string]any{"from": "5511988887777", "content": "x"}, 409, nil},
		{"receipts type", "POST", p + "/sandbox/receipts", map[string]any{"message_ids": []string{"A"}, "type": "seen"}, 400, nil},
		{"receipts no ids", "POST", p + "/sandbox/receipts", map[string]any{"type": "read"}, 400, nil},
		{"scan linked", "POST", p + "/sandbox/scan", nil, 409, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, intruder.do(tc.method, tc.path, tc.body, tc.hdr...), tc.status, "")
		})
	}
}

// TestSessionMediaAndSandboxSwitch: media URLs go through the SSRF guard
// (loopback only with the operator's allow-list), and an operator can
// disable the sandbox.
func TestSessionMediaAndSandboxSwitch(t *testing.T) {
	t.Parallel()
	img, _ := base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
	media := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(img) }))
	defer media.Close()

	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprint("allow=", allow), func(t *testing.T) {
			env := map[string]string{}
			if allow {
				env["WAGATE_WEBHOOK_ALLOW_CIDRS"] = "127.0.0.0/8"
			}
			m := startServer(t, store.SQLite, env)
			c, _ := newClient(t, m, "media")
			id := linkedSandbox(t, c, "u", "5511999999999")
			r := c.do("POST", "/api/whatsapp/sessions/"+id+"/messages", map[string]any{"to": "5511988887777", "type": "image", "media_url": media.URL + "/a.png", "caption": "hi"})
			if !allow {
				if msg := expectError(t, r, 400, "VALIDATION_ERROR")["message"].(string); !strings.Contains(msg, "not allowed") {
					t.Fatalf("loopback media without allow-list: %s", msg)
				}
				return
			}
			if r.Status != 201 {
				t.Fatalf("send image: %d %s", r.Status, r.Body)
			}
			sent := getJSON(t, c, "/api/whatsapp/sessions/"+id+"/sandbox/sent")["data"].([]any)[0].(map[string]any)
			if sent["mime_type"] != "image/png" || int(sent["media_size"].(float64)) != len(img) || sent["caption"] != "hi" {
				t.Fatalf("sent image: %v", sent)
			}
		})
	}

	t.Run("sandbox disabled", func(t *testing.T) {
		m := startServer(t, store.SQLite, map[string]string{"WAGATE_SANDBOX": "false", "WAGATE_ENGINE": "whatsmeow"})
		c, _ := newClient(t, m, "prod")
		e := expectError(t, c.do("POST", "/api/whatsapp/connect", map[string]any{"user_id": "u", "phone_number": "5511999999999", "engine": "sandbox"}), 400, "VALIDATION_ERROR")
		if !strings.Contains(e["message"].(string), "sandbox") {
			t.Fatalf("message: %v", e["message"])
		}
	})
}
