package store_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/secretbox"
	"github.com/wagate/wagate/internal/ssrf"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/webhooks"
)

// webhookService is the service over db, allowed to reach loopback so that
// URLs are IP literals and nothing is resolved.
func webhookService(t *testing.T, db *store.DB) *webhooks.Service {
	t.Helper()
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return webhooks.NewService(db, box, ssrf.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}), webhooks.Options{})
}

func newTestClient(t *testing.T, db *store.DB, name string) int64 {
	t.Helper()
	c, err := db.CreateClient(context.Background(), name, "hash-"+name, "wg_"+name)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func TestWebhooksStore(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := newTestClient(t, db, "a"), newTestClient(t, db, "b")
		if s, err := db.AnySealedSecret(ctx); err != nil || s != nil {
			t.Fatalf("no webhooks yet: %v %v", s, err)
		}

		now := time.UnixMilli(1762352580123).UTC()
		rec := webhooks.Record{
			ID: "6f1c1f4e-8f5a-4c39-9a55-0d7c2b1e0001", ClientID: a, PhoneNumber: "5511999999999",
			URL: "https://hooks.example.com/x", MaxRetries: 3, Events: []string{"message", "message.ack"},
			HeadersSealed: []byte{1, 2, 3}, Description: "orders", SecretSealed: []byte{4, 5, 6},
			Active: true, CreatedAt: now, UpdatedAt: now,
		}
		if err := db.CreateWebhook(ctx, rec); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetWebhook(ctx, a, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != rec.ID || got.ClientID != a || got.PhoneNumber != rec.PhoneNumber || got.URL != rec.URL ||
			got.MaxRetries != 3 || len(got.Events) != 2 || got.Events[1] != "message.ack" ||
			!bytes.Equal(got.HeadersSealed, rec.HeadersSealed) || got.Description != "orders" ||
			!bytes.Equal(got.SecretSealed, rec.SecretSealed) || got.PrevSecretSealed != nil ||
			!got.PrevSecretUntil.IsZero() || !got.Active || !got.DisabledAt.IsZero() || !got.FailingSince.IsZero() ||
			!got.CreatedAt.Equal(now) || !got.UpdatedAt.Equal(now) {
			t.Fatalf("read back %+v", got)
		}
		if byID, err := db.WebhookByID(ctx, rec.ID); err != nil || byID.ClientID != a {
			t.Fatalf("by id: %+v %v", byID, err)
		}

		// Client scoping: the other client sees nothing and touches nothing.
		if _, err := db.GetWebhook(ctx, b, rec.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("other client's get: %v", err)
		}
		called := false
		if _, err := db.UpdateWebhook(ctx, b, rec.ID, func(*webhooks.Record) error { called = true; return nil }); !errs.Is(err, errs.NotFound) || called {
			t.Fatalf("other client's update: %v (fn called: %v)", err, called)
		}
		if err := db.DeleteWebhook(ctx, b, rec.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("other client's delete: %v", err)
		}
		if l, err := db.ListWebhooks(ctx, b); err != nil || len(l) != 0 {
			t.Fatalf("other client's list: %v %v", l, err)
		}
		if _, err := db.WebhookByID(ctx, "6f1c1f4e-8f5a-4c39-9a55-0d7c2b1e0fff"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown id: %v", err)
		}

		// Every mutable column round-trips, NULLs included.
		later := now.Add(time.Hour)
		upd, err := db.UpdateWebhook(ctx, a, rec.ID, func(r *webhooks.Record) error {
			r.PhoneNumber, r.URL, r.MaxRetries, r.Events = "", "https://hooks.example.com/y", 0, []string{"*"}
			r.HeadersSealed, r.Description = nil, ""
			r.SecretSealed, r.PrevSecretSealed, r.PrevSecretUntil = []byte{7}, []byte{4, 5, 6}, later.Add(24*time.Hour)
			r.Active, r.DisabledReason, r.DisabledAt = false, "gone", later
			r.FailingSince, r.ConsecutiveFailures, r.UpdatedAt = later, 4, later
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _ = db.GetWebhook(ctx, a, rec.ID)
		if got.PhoneNumber != "" || got.URL != upd.URL || got.MaxRetries != 0 || got.Events[0] != "*" ||
			got.HeadersSealed != nil || !bytes.Equal(got.SecretSealed, []byte{7}) ||
			!bytes.Equal(got.PrevSecretSealed, []byte{4, 5, 6}) || !got.PrevSecretUntil.Equal(later.Add(24*time.Hour)) ||
			got.Active || got.DisabledReason != "gone" || !got.DisabledAt.Equal(later) || !got.FailingSince.Equal(later) ||
			got.ConsecutiveFailures != 4 || !got.UpdatedAt.Equal(later) || !got.CreatedAt.Equal(now) {
			t.Fatalf("after update %+v", got)
		}
		// The PostgreSQL column is BOOLEAN and the SQLite one INTEGER: a
		// parameter works on both.
		var inactive int
		if err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM webhooks WHERE active = $1`, false).Scan(&inactive); err != nil || inactive != 1 {
			t.Fatalf("active column: %d %v", inactive, err)
		}

		// A failing fn rolls back.
		boom := errors.New("boom")
		if _, err := db.UpdateWebhook(ctx, a, rec.ID, func(r *webhooks.Record) error { r.URL = "changed"; return boom }); !errors.Is(err, boom) {
			t.Fatalf("fn error: %v", err)
		}
		if got, _ := db.GetWebhook(ctx, a, rec.ID); got.URL != upd.URL {
			t.Fatal("a failed update was written")
		}

		// Concurrent read-modify-writes are serialised, none lost.
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := db.UpdateWebhook(ctx, a, rec.ID, func(r *webhooks.Record) error { r.MaxRetries++; return nil }); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got, _ := db.GetWebhook(ctx, a, rec.ID); got.MaxRetries != 10 {
			t.Fatalf("lost updates: max_retries %d, want 10", got.MaxRetries)
		}

		// Unknown client.
		orphan := rec
		orphan.ID, orphan.ClientID = "6f1c1f4e-8f5a-4c39-9a55-0d7c2b1e0002", 999999
		if err := db.CreateWebhook(ctx, orphan); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown client: %v", err)
		}

		// Listing is per client, oldest first; counting matches.
		second := rec
		second.ID, second.CreatedAt = "6f1c1f4e-8f5a-4c39-9a55-0d7c2b1e0003", now.Add(time.Second)
		if err := db.CreateWebhook(ctx, second); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateWebhook(ctx, second); !errs.Is(err, errs.Conflict) {
			t.Fatalf("duplicate id: %v", err)
		}
		l, err := db.ListWebhooks(ctx, a)
		if err != nil || len(l) != 2 || l[0].ID != rec.ID || l[1].ID != second.ID {
			t.Fatalf("list: %+v %v", l, err)
		}
		if n, err := db.CountWebhooks(ctx, a); err != nil || n != 2 {
			t.Fatalf("count: %d %v", n, err)
		}
		if s, err := db.AnySealedSecret(ctx); err != nil || s == nil {
			t.Fatalf("any sealed secret: %v %v", s, err)
		}

		if err := db.DeleteWebhook(ctx, a, rec.ID); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteWebhook(ctx, a, rec.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("delete twice: %v", err)
		}

		// Deleting the client takes its webhooks with it.
		if err := db.DeleteClient(ctx, a); err != nil {
			t.Fatal(err)
		}
		if _, err := db.WebhookByID(ctx, second.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("webhook of a deleted client: %v", err)
		}
	})
}

func TestClientAlertURL(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := newTestClient(t, db, "a")
		if err := db.SetClientAlertURL(ctx, a, "https://alerts.example.com/x"); err != nil {
			t.Fatal(err)
		}
		if c, _ := db.GetClient(ctx, a); c.AlertWebhookURL != "https://alerts.example.com/x" {
			t.Fatalf("alert url %q", c.AlertWebhookURL)
		}
		if err := db.SetClientAlertURL(ctx, a, ""); err != nil {
			t.Fatal(err)
		}
		if c, _ := db.GetClient(ctx, a); c.AlertWebhookURL != "" {
			t.Fatalf("cleared alert url %q", c.AlertWebhookURL)
		}
		if err := db.SetClientAlertURL(ctx, 999999, "https://alerts.example.com/x"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown client: %v", err)
		}
	})
}

// TestWebhooksSealedAtRest goes through the service: secrets and header
// values never reach the table in clear, and come back intact.
func TestWebhooksSealedAtRest(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := newTestClient(t, db, "a"), newTestClient(t, db, "b")
		svc := webhookService(t, db)
		const headerValue = "Bearer header-credential-8c1e"
		w, err := svc.Register(ctx, a, webhooks.Input{URL: "http://127.0.0.1:9/hook",
			Headers: map[string]string{"Authorization": headerValue}})
		if err != nil {
			t.Fatal(err)
		}
		rot, err := svc.RotateSecret(ctx, a, w.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}

		// Every column of the raw row, read as bytes, holds neither secret
		// nor the header value.
		rows, err := db.SQL().QueryContext(ctx, `SELECT * FROM webhooks WHERE id = $1`, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		if !rows.Next() {
			t.Fatal("no row")
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		var raw strings.Builder
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				raw.Write(v)
			case string:
				raw.WriteString(v)
			}
		}
		for _, secret := range []string{w.Secret, rot.Secret, strings.TrimPrefix(w.Secret, "whsec_"), headerValue, "header-credential"} {
			if strings.Contains(raw.String(), secret) {
				t.Fatalf("%q is stored in clear", secret)
			}
		}

		d, err := svc.ForDelivery(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d.Secret != rot.Secret || d.PrevSecret != w.Secret || !d.PrevSecretUntil.Equal(rot.PreviousSecretExpiresAt) ||
			d.Headers["Authorization"] != headerValue {
			t.Fatalf("for delivery: %+v", d)
		}
		if err := svc.CheckKey(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Get(ctx, b, w.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("other client: %v", err)
		}
		// Another key cannot read them, and says so at start-up.
		if err := webhookService(t, db).CheckKey(ctx); err == nil {
			t.Fatal("CheckKey accepted another key")
		}
	})
}
