package store

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// SQLite's own checkpoints are off (they would run inside a writer's
// commit); the store's passive checkpoint moves the WAL into the database
// and Close leaves an empty WAL behind.
func TestSQLiteCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, "", dir, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var auto int
	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("wal_autocheckpoint = %d, %v; want 0", auto, err)
	}
	if _, err := s.exec(ctx, `CREATE TABLE t (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := s.exec(ctx, `INSERT INTO t (v) VALUES (zeroblob(8000))`); err != nil {
			t.Fatal(err)
		}
	}
	wal, done, err := s.checkpoint(ctx, "PASSIVE")
	if err != nil {
		t.Fatal(err)
	}
	if wal < 200 || done != wal {
		t.Fatalf("passive checkpoint: wal %d pages, %d checkpointed; want all of at least 200", wal, done)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "wagate.db-wal"))
	if err == nil && fi.Size() != 0 {
		t.Fatalf("WAL left at %d bytes after Close", fi.Size())
	}
}
