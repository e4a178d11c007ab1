package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"mime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/testdb"
)

// TestInboundMediaEndToEnd: a sandbox message injected with its file is
// delivered to the webhook without the file or any key, and the media
// route returns the exact bytes to the session's owner only.
func TestInboundMediaEndToEnd(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			m := startServer(t, dialect, pipelineEnv(nil))
			c, _ := newClient(t, m, "media")
			other, _ := newClient(t, m, "other")
			rc := newReceiver(t, nil)
			registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "events": []string{"message"}})
			id := linkedSandbox(t, c, "u1", "5511999999999")
			otherID := linkedSandbox(t, other, "u1", "5511999999998")
			ctx := context.Background()

			png, _ := base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
			pdf := []byte("%PDF-1.4\n" + strings.Repeat("wagate ", 200))
			image := map[string]any{"from": "5511988887777", "type": "image", "content": "a pixel", "message_id": "3EB0MEDIA0001",
				"media_base64": base64.StdEncoding.EncodeToString(png)}
			doc := map[string]any{"from": "5511988887777", "type": "document", "message_id": "3EB0MEDIA0002",
				"media_base64": base64.StdEncoding.EncodeToString(pdf), "mime_type": "application/pdf", "file_name": "relatório final.pdf"}
			inject(t, c, id, image, doc)
			inject(t, c, id, image) // a redelivery

			// The payloads describe the files and carry none of their bytes.
			waitFor(t, "two deliveries", 10*time.Second, func() bool { return len(rc.deliveries()) >= 2 })
			for _, d := range rc.deliveries() {
				body := string(d.Body)
				for _, secret := range []string{image["media_base64"].(string)[:24], doc["media_base64"].(string)[:24], "media_base64", "engine_ref"} {
					if strings.Contains(body, secret) {
						t.Fatalf("payload carries %q: %s", secret, body)
					}
				}
				var p struct {
					MessageID string         `json:"message_id"`
					Metadata  map[string]any `json:"metadata"`
				}
				if err := json.Unmarshal(d.Body, &p); err != nil {
					t.Fatal(err)
				}
				want := map[string]any{"3EB0MEDIA0001": "image/png", "3EB0MEDIA0002": "application/pdf"}[p.MessageID]
				if p.Metadata["mime_type"] != want || p.Metadata["file_size"] == nil {
					t.Fatalf("payload metadata of %s: %v", p.MessageID, p.Metadata)
				}
			}
			var refs int
			if err := m.DB.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM media_refs WHERE session_id = $1`, id).Scan(&refs); err != nil || refs != 2 {
				t.Fatalf("media refs: %d %v (the redelivery must not add one)", refs, err)
			}
			var stored []byte
			if err := m.DB.SQL().QueryRowContext(ctx, `SELECT engine_ref FROM media_refs WHERE message_id = '3EB0MEDIA0002'`).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(stored, pdf[:40]) {
				t.Fatal("the file is stored in the clear")
			}

			path := "/api/whatsapp/sessions/" + id + "/media/"
			r := c.do("GET", path+"3EB0MEDIA0001", nil)
			if r.Status != 200 || !bytes.Equal(r.Body, png) || r.Header.Get("Content-Type") != "image/png" ||
				r.Header.Get("Content-Length") != strconv.Itoa(len(png)) || !strings.HasPrefix(r.Header.Get("Cache-Control"), "private, max-age=") ||
				r.Header.Get("Content-Disposition") != "" {
				t.Fatalf("image: %d %v %q", r.Status, r.Header, r.Body[:min(len(r.Body), 64)])
			}
			r = c.do("GET", path+"3EB0MEDIA0002", nil)
			if r.Status != 200 || !bytes.Equal(r.Body, pdf) || r.Header.Get("Content-Type") != "application/pdf" {
				t.Fatalf("document: %d %v", r.Status, r.Header)
			}
			disp, params, err := mime.ParseMediaType(r.Header.Get("Content-Disposition"))
			if err != nil || disp != "inline" || params["filename"] != "relatório final.pdf" {
				t.Fatalf("Content-Disposition %q: %v %v", r.Header.Get("Content-Disposition"), params, err)
			}

			// Another client's session does not exist for this client; an
			// unknown id or one without a file is absent.
			expectError(t, other.do("GET", path+"3EB0MEDIA0001", nil), 404, "NOT_FOUND")
			expectError(t, other.do("GET", "/api/whatsapp/sessions/"+otherID+"/media/3EB0MEDIA0001", nil), 404, "NOT_FOUND")
			expectError(t, c.do("GET", path+"3EB0UNKNOWN", nil), 404, "NOT_FOUND")
			inject(t, c, id, map[string]any{"from": "5511988887777", "type": "text", "content": "hi", "message_id": "3EB0TEXT"})
			expectError(t, c.do("GET", path+"3EB0TEXT", nil), 404, "NOT_FOUND")
			expectError(t, (apiClient{t: t, base: m.URL()}).do("GET", path+"3EB0MEDIA0001", nil), 401, "")

			// A session that is not connected cannot download.
			if r := c.do("POST", "/api/whatsapp/sessions/"+id+"/logout", nil); r.Status != 200 {
				t.Fatalf("logout: %d %s", r.Status, r.Body)
			}
			expectError(t, c.do("GET", path+"3EB0MEDIA0001", nil), 409, "SESSION_NOT_CONNECTED")

			// Deleting the session deletes its references.
			if r := c.do("DELETE", "/api/whatsapp/sessions/"+id, nil); r.Status != 204 {
				t.Fatalf("delete: %d %s", r.Status, r.Body)
			}
			if err := m.DB.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM media_refs WHERE session_id = $1`, id).Scan(&refs); err != nil || refs != 0 {
				t.Fatalf("media refs after delete: %d %v", refs, err)
			}
		})
	}
}
