package store_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
)

// TestMediaRefs: a media reference is stored with its event, in the same
// transaction; a redelivery adds none; it goes with its session and with
// age.
func TestMediaRefs(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h1", "", `["*"]`, true)
		target := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		media := func(id, key, ref string) delivery.NewEvent {
			return delivery.NewEvent{ID: delivery.NewID(), Type: events.TypeMessage, DedupeKey: key, Payload: []byte(`{}`),
				CreatedAt: f.clk.now(), Media: &events.MediaRef{MessageID: id, Ref: []byte(ref), MimeType: "image/png", FileName: "a.png", Size: 42}}
		}
		count := func() int {
			var n int
			if err := f.db.SQL().QueryRow(`SELECT COUNT(*) FROM media_refs`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}

		batch := append(f.events(2, "message", "text"), media("M1", "message:M1:image", "sealed-1"))
		if n, jobs, err := f.db.Ingest(ctx, target, batch, delivery.Lease{}); err != nil || n != 3 || len(jobs) != 3 {
			t.Fatalf("ingest: %d %d %v", n, len(jobs), err)
		}
		got, err := f.db.MediaRef(ctx, f.session, "M1")
		if err != nil || !bytes.Equal(got.Ref, []byte("sealed-1")) || got.MimeType != "image/png" || got.FileName != "a.png" ||
			got.Size != 42 || got.MessageID != "M1" {
			t.Fatalf("media ref: %+v %v", got, err)
		}
		if _, err := f.db.MediaRef(ctx, f.session, "M2"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown message: %v", err)
		}
		if _, err := f.db.MediaRef(ctx, "another-session", "M1"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("another session: %v", err)
		}

		// A redelivery (same dedupe key) stores neither the event nor its reference.
		if n, _, err := f.db.Ingest(ctx, target, []delivery.NewEvent{media("M1", "message:M1:image", "sealed-again")}, delivery.Lease{}); err != nil || n != 0 {
			t.Fatalf("redelivery: %d %v", n, err)
		}
		// Another event of the same message keeps the first file.
		if n, _, err := f.db.Ingest(ctx, target, []delivery.NewEvent{media("M1", "message:M1:document", "other")}, delivery.Lease{}); err != nil || n != 1 {
			t.Fatalf("second kind: %d %v", n, err)
		}
		if got, _ := f.db.MediaRef(ctx, f.session, "M1"); !bytes.Equal(got.Ref, []byte("sealed-1")) || count() != 1 {
			t.Fatalf("after redelivery: %q, %d refs", got.Ref, count())
		}

		// Pruned by age with the events.
		f.clk.advance(2 * time.Hour)
		if _, _, err := f.db.Ingest(ctx, target, []delivery.NewEvent{media("M2", "message:M2:image", "sealed-2")}, delivery.Lease{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.Prune(ctx, f.clk.now().Add(-time.Hour), 100); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.MediaRef(ctx, f.session, "M1"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("old reference not pruned: %v", err)
		}
		if _, err := f.db.MediaRef(ctx, f.session, "M2"); err != nil {
			t.Fatalf("young reference pruned: %v", err)
		}

		// Deleting the session deletes its references.
		f.execT(t, `DELETE FROM whatsapp_connections WHERE id = $1`, f.session)
		if count() != 0 {
			t.Fatalf("%d references outlived their session", count())
		}
	})
}

// TestMediaRefsSameTransaction: when the reference cannot be written, the
// event is not stored either (so the engine does not acknowledge it and
// WhatsApp delivers it again); a batch without media never touches the
// table.
func TestMediaRefsSameTransaction(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		target := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		f.execT(t, `DROP TABLE media_refs`)

		if n, _, err := f.db.Ingest(ctx, target, f.events(3, "message", "plain"), delivery.Lease{}); err != nil || n != 3 {
			t.Fatalf("ingest without media: %d %v", n, err)
		}
		withMedia := f.events(2, "message", "m")
		withMedia[1].Media = &events.MediaRef{MessageID: "M1", Ref: []byte("x")}
		if _, _, err := f.db.Ingest(ctx, target, withMedia, delivery.Lease{}); err == nil {
			t.Fatal("ingest succeeded without its media reference")
		}
		var n int
		if err := f.db.SQL().QueryRow(`SELECT COUNT(*) FROM events`).Scan(&n); err != nil || n != 3 {
			t.Fatalf("events after the failed ingest: %d %v (want the first 3 only)", n, err)
		}
	})
}
