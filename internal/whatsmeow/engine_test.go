package whatsmeow

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/types"
	_ "modernc.org/sqlite"

	"github.com/wagate/wagate/internal/sessions"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// openSQLite opens a database the way wagate does (modernc, WAL, FKs on).
func openSQLite(t *testing.T, fk bool) *sql.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "x.db") +
		"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)"
	if fk {
		dsn += "&_pragma=foreign_keys(1)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestNewSQLite(t *testing.T) {
	db := openSQLite(t, true)
	checkDeviceStore(t, db, "sqlite")
}

func TestNewSQLiteNeedsForeignKeys(t *testing.T) {
	db := openSQLite(t, false)
	if _, err := New(context.Background(), db, "sqlite", testLogger(t), Options{}); err == nil {
		t.Fatal("New accepted a SQLite database without foreign keys")
	}
}

func TestNewRejectsUnknownDialect(t *testing.T) {
	db := openSQLite(t, true)
	if _, err := New(context.Background(), db, "mysql", testLogger(t), Options{}); err == nil {
		t.Fatal("New accepted dialect mysql")
	}
}

func TestNewPostgres(t *testing.T) {
	base := os.Getenv("WAGATE_TEST_POSTGRES_URL")
	if base == "" {
		t.Fatal("WAGATE_TEST_POSTGRES_URL is not set: run `make test`, which starts a PostgreSQL server for the tests")
	}
	ctx := context.Background()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("wagate_whatsmeow_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close() // before the drop above, which runs at cleanup
	checkDeviceStore(t, db, "postgres")
}

// checkDeviceStore creates the tables (twice: upgrades must be idempotent),
// saves a device and loads it back, directly and through Open.
func checkDeviceStore(t *testing.T, db *sql.DB, dialect string) {
	t.Helper()
	ctx := context.Background()
	if _, err := New(ctx, db, dialect, testLogger(t), Options{}); err != nil {
		t.Fatalf("first New: %v", err)
	}
	eng, err := New(ctx, db, dialect, testLogger(t), Options{})
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	if eng.Name() != "whatsmeow" {
		t.Errorf("Name() = %q", eng.Name())
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM whatsmeow_device").Scan(&n); err != nil || n != 0 {
		t.Fatalf("whatsmeow_device: n=%d err=%v", n, err)
	}

	c := eng.Container()
	dev := c.NewDevice()
	jid := types.NewADJID("5511999990000", 0, 7)
	dev.ID = &jid
	dev.PushName = "Wagate Test"
	dev.Account = &waAdv.ADVSignedDeviceIdentity{
		Details:             []byte{1, 2, 3},
		AccountSignature:    bytes.Repeat([]byte{1}, 64),
		AccountSignatureKey: bytes.Repeat([]byte{2}, 32),
		DeviceSignature:     bytes.Repeat([]byte{3}, 64),
	}
	if err := dev.Save(ctx); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := c.GetDevice(ctx, jid)
	if err != nil || got == nil {
		t.Fatalf("GetDevice: %v, %v", got, err)
	}
	if got.RegistrationID != dev.RegistrationID || *got.NoiseKey.Priv != *dev.NoiseKey.Priv ||
		*got.IdentityKey.Priv != *dev.IdentityKey.Priv || got.PushName != "Wagate Test" {
		t.Error("loaded device differs from the saved one")
	}

	sink := &fakeSink{}
	cn, err := eng.Open(ctx, sessions.Session{ID: "s1", JID: jid.String()}, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	if id := cn.(*conn).client.Store.ID; id == nil || *id != jid {
		t.Errorf("Open loaded device %v, want %v", id, jid)
	}

	missing := types.NewADJID("5511000000000", 0, 1)
	cn2, err := eng.Open(ctx, sessions.Session{ID: "s2", JID: missing.String()}, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer cn2.Close()
	if id := cn2.(*conn).client.Store.ID; id != nil {
		t.Errorf("Open of an unknown device gave linked device %v", id)
	}
	if _, err := eng.Open(ctx, sessions.Session{ID: "s3", JID: "not a jid@@"}, sink); err == nil {
		t.Error("Open accepted a malformed JID")
	}
}
