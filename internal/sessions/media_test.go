package sessions_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/secretbox"
	"github.com/wagate/wagate/internal/sessions"
	"github.com/wagate/wagate/internal/testdb"
)

// TestMedia: an injected file goes through the real publisher into the
// store, sealed, and Media returns it to its owner only, while connected.
func TestMedia(t *testing.T) {
	t.Parallel()
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	var pub *delivery.Engine
	f := newFixture(t, func(o *sessions.Options) {
		// The delivery engine, not started, stores events as it does in
		// production: the plumbing from Publish to Ingest is under test.
		pub = delivery.New(delivery.Config{Store: o.Store.(delivery.Store), Log: testdb.Logger(t)})
		o.Publisher = pub
		o.Sealer = box
		o.MaxDownloadBytes = 1 << 10
	})
	ctx := context.Background()
	id := f.linked(t, f.a, "u1")
	file := []byte("GIF89a-not-really-a-gif")
	ids, err := f.m.SandboxInject(ctx, f.a, id, []sessions.SimMessage{
		{From: "5511988887777", Type: "document", MessageID: "DOC1", FileName: "relatório.gif",
			MediaBase64: base64.StdEncoding.EncodeToString(file)},
		{From: "5511988887777", Type: "image", MessageID: "BIG1", MediaBase64: base64.StdEncoding.EncodeToString(make([]byte, 2<<10))},
		{From: "5511988887777", Type: "text", MessageID: "TXT1", Content: "no file"},
	})
	if err != nil || len(ids) != 3 {
		t.Fatalf("inject: %v %v", ids, err)
	}

	// Sealed at rest.
	var stored []byte
	if err := f.db.SQL().QueryRow(`SELECT engine_ref FROM media_refs WHERE session_id = $1 AND message_id = 'DOC1'`, id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, file) {
		t.Fatal("the reference is stored in the clear")
	}
	if open, err := box.Open(stored); err != nil || !bytes.Equal(open, append([]byte("sandbox\x00"), file...)) {
		t.Fatalf("stored reference does not open to the file: %v", err)
	}

	got, err := f.m.Media(ctx, f.a, id, "DOC1")
	if err != nil || !bytes.Equal(got.Data, file) || got.MimeType != "image/gif" || got.FileName != "relatório.gif" {
		t.Fatalf("media: %+v %v", got, err)
	}
	for name, c := range map[string]struct {
		client     int64
		session    string
		message    string
		code       errs.Code
		wantSubstr string
	}{
		"another client":  {f.b, id, "DOC1", errs.NotFound, ""},
		"unknown session": {f.a, "no-such-session", "DOC1", errs.NotFound, ""},
		"unknown message": {f.a, id, "NOPE", errs.NotFound, "no media"},
		"text message":    {f.a, id, "TXT1", errs.NotFound, "no media"},
		"bad message id":  {f.a, id, "two words", errs.NotFound, ""},
		"over the limit":  {f.a, id, "BIG1", errs.TooLarge, ""},
	} {
		_, err := f.m.Media(ctx, c.client, c.session, c.message)
		var e *errs.Error
		if !errs.Is(err, c.code) || !errors.As(err, &e) || !bytes.Contains([]byte(e.Message), []byte(c.wantSubstr)) {
			t.Errorf("%s: %v, want %s", name, err, c.code)
		}
	}

	// Not connected: 409, as a real session cannot download then.
	if _, err := f.m.Logout(ctx, f.a, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Media(ctx, f.a, id, "DOC1"); !errs.Is(err, errs.NotConnected) {
		t.Fatalf("logged out: %v", err)
	}
}
