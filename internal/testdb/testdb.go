// Package testdb gives tests real databases: a SQLite file in a temp dir, and
// a fresh database on the throwaway PostgreSQL server that `make test`
// starts (WAGATE_TEST_POSTGRES_URL). A missing server fails the test: tests
// never skip silently.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/wagate/wagate/internal/store"
)

// EnvPostgres names the admin URL of the test PostgreSQL server.
const EnvPostgres = "WAGATE_TEST_POSTGRES_URL"

// Dialects lists the databases every store test runs on.
var Dialects = []string{store.SQLite, store.Postgres}

// PostgresURL creates an empty database for this test, dropped at cleanup,
// and returns its URL.
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgres)
	if admin == "" {
		t.Fatalf("%s is not set: run the tests with `make test`, which starts a throwaway PostgreSQL", EnvPostgres)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "wagate_test_" + hex.EncodeToString(b)
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u.Path = "/" + name
	return u.String()
}

// Open returns a migrated store of the given dialect, closed at cleanup.
func Open(t testing.TB, dialect string, opts store.Options) *store.DB {
	t.Helper()
	dbURL, dir := "", t.TempDir()
	if dialect == store.Postgres {
		dbURL = PostgresURL(t)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL, dir, Logger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// Logger returns a logger that writes to the test log when -v is set.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
