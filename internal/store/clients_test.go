package store_test

import (
	"context"
	"testing"

	"github.com/wagate/wagate/internal/clients"
	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// eachDB runs fn as a subtest on every dialect: this is the shared
// conformance suite that SQLite and PostgreSQL must both pass.
func eachDB(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, testdb.Open(t, d, store.Options{}))
		})
	}
}

func TestClients(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		svc := clients.NewService(db)
		c, tok, err := svc.Create(ctx, "  Acme ")
		if err != nil {
			t.Fatal(err)
		}
		if c.ID == 0 || c.Name != "Acme" || c.ActiveTokens != 1 {
			t.Fatalf("created %+v", c)
		}
		got, err := svc.Authenticate(ctx, tok)
		if err != nil || got.ID != c.ID {
			t.Fatalf("authenticate: %+v %v", got, err)
		}
		if _, err := svc.Authenticate(ctx, tok+"x"); !errs.Is(err, errs.Unauthorized) {
			t.Fatalf("wrong token: %v", err)
		}

		// A second token works beside the first until revoke_others.
		tok2, err := svc.RotateToken(ctx, c.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range []string{tok, tok2} {
			if _, err := svc.Authenticate(ctx, tk); err != nil {
				t.Fatalf("token before revoke: %v", err)
			}
		}
		tok3, err := svc.RotateToken(ctx, c.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range []string{tok, tok2} {
			if _, err := svc.Authenticate(ctx, tk); !errs.Is(err, errs.Unauthorized) {
				t.Fatalf("revoked token accepted: %v", err)
			}
		}
		if _, err := svc.Authenticate(ctx, tok3); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.RotateToken(ctx, 999999, false); !errs.Is(err, errs.NotFound) {
			t.Fatalf("rotate unknown client: %v", err)
		}

		c2, _, err := svc.Create(ctx, "Other")
		if err != nil {
			t.Fatal(err)
		}
		list, err := svc.List(ctx)
		if err != nil || len(list) != 2 || list[0].ID != c.ID || list[1].ID != c2.ID {
			t.Fatalf("list: %+v %v", list, err)
		}
		if err := svc.Delete(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Authenticate(ctx, tok3); !errs.Is(err, errs.Unauthorized) {
			t.Fatalf("token of deleted client: %v", err)
		}
		if err := svc.Delete(ctx, c.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		if _, _, err := svc.Create(ctx, " "); !errs.Is(err, errs.Invalid) {
			t.Fatalf("empty name: %v", err)
		}
	})
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx); err != nil { // idempotent
			t.Fatal(err)
		}
		if err := db.CheckSchema(ctx); err != nil {
			t.Fatal(err)
		}
		v, err := db.Version(ctx)
		if err != nil || v != db.LatestVersion() || v < 1 {
			t.Fatalf("version %d, latest %d, err %v", v, db.LatestVersion(), err)
		}
		// A schema from a newer binary is refused.
		if _, err := db.SQL().ExecContext(ctx, `INSERT INTO wagate_migrations (version, name, applied_at) VALUES ($1, 'future', 0)`, v+1); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx); err == nil {
			t.Fatal("migrate accepted a newer schema")
		}
		if err := db.CheckSchema(ctx); err == nil {
			t.Fatal("CheckSchema accepted a newer schema")
		}
	})
}
