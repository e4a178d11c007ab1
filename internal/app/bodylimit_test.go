package app_test

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/png"
	"net/http"
	"strings"
	"testing"
)

// TestSendBodyLimit: the send route takes base64 media past the general
// body limit, up to its own; other routes keep the small one.
func TestSendBodyLimit(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", map[string]string{
		"WAGATE_MAX_BODY_BYTES":       "4096",
		"WAGATE_MAX_MEDIA_BODY_BYTES": "200000",
	})
	c, _ := newClient(t, m, "Acme")
	session := linkedSandbox(t, c, "u1", "5511999999999")
	var img bytes.Buffer
	png.Encode(&img, image.NewGray(image.Rect(0, 0, 200, 200)))
	pad := bytes.Repeat([]byte{0}, 20000) // past 4 KiB once encoded
	b64 := base64.StdEncoding.EncodeToString(append(img.Bytes(), pad...))
	r := c.do("POST", "/api/whatsapp/sessions/"+session+"/messages", map[string]any{
		"to": "5511888888888", "type": "document", "media_base64": b64, "file_name": "blob.bin", "mime_type": "application/octet-stream",
	})
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("send with a 27 KB body: %d %s", r.Status, r.Body)
	}
	huge := strings.Repeat("A", 300000)
	expectError(t, c.do("POST", "/api/whatsapp/sessions/"+session+"/messages", map[string]any{
		"to": "5511888888888", "type": "document", "media_base64": huge,
	}), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	expectError(t, c.do("POST", "/api/webhooks/register", map[string]any{"webhook_url": "https://example.com/" + strings.Repeat("a", 5000)}),
		http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
}
