// Package store is wagate's storage adapter: one implementation over
// database/sql for both embedded SQLite (modernc.org/sqlite) and PostgreSQL
// (pgx). Queries are written once with $N placeholders, which both drivers
// bind by position; only the DDL and a few clauses differ per dialect.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	_ "modernc.org/sqlite"             // registers driver "sqlite"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/errs"
)

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

//go:embed migrations
var migrationsFS embed.FS

// DB is the store. Safe for concurrent use.
type DB struct {
	db *sql.DB
	// wdb runs the write transactions. On SQLite it is one connection of
	// its own: writes are serialised anyway (writeMu), and a connection
	// that only this node's writer uses keeps its page cache, which SQLite
	// drops whenever another connection has written since. On PostgreSQL
	// it is db.
	wdb     *sql.DB
	dialect string
	log     *slog.Logger
	now     func() time.Time
	// writeMu serialises SQLite write transactions in Go: SQLite allows one
	// writer, and waiting here is cheaper and fairer than SQLite's
	// busy-handler sleeps.
	writeMu sync.Mutex
	// ids makes the outbox rows' ids from the store's clock.
	ids delivery.IDGen
	// stop ends the SQLite checkpointer; done says it has ended.
	stop chan struct{}
	done chan struct{}
}

// SQLite checkpointing. SQLite would otherwise checkpoint the WAL inside
// whichever commit crosses 1,000 pages, while that writer holds writeMu and
// every other writer waits behind its copying and fsync. A goroutine does it
// instead, passively, so writers never wait for it; only a WAL that passive
// checkpoints cannot shrink (readers kept it busy) is truncated under the
// write lock.
const (
	checkpointEvery   = 500 * time.Millisecond
	checkpointMaxWAL  = 16384 // pages (64 MiB at 4 KiB) before a truncating checkpoint
	checkpointTimeout = 30 * time.Second
)

// Options tune Open.
type Options struct {
	// Now is the clock; tests stub it. Defaults to time.Now.
	Now func() time.Time
	// MaxOpenConns bounds the pool (default 16 for PostgreSQL, 8 for SQLite).
	MaxOpenConns int
}

// Open connects to PostgreSQL when databaseURL is set, else to the SQLite
// file wagate.db in dataDir (created with mode 0700). It does not migrate.
func Open(ctx context.Context, databaseURL, dataDir string, log *slog.Logger, opts Options) (*DB, error) {
	s := &DB{log: log, now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if databaseURL != "" {
		s.dialect = Postgres
		s.db, err = sql.Open("pgx", databaseURL)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		s.db.SetMaxOpenConns(max(opts.MaxOpenConns, 16))
		s.db.SetMaxIdleConns(max(opts.MaxOpenConns, 16))
	} else {
		s.dialect = SQLite
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		path := filepath.Join(dataDir, "wagate.db")
		// WAL lets readers run beside the writer; IMMEDIATE transactions take
		// the write lock up front so two writers wait (busy_timeout) instead of
		// failing on a lock upgrade.
		dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)" +
			"&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
		s.db, err = sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		n := opts.MaxOpenConns
		if n == 0 {
			n = 8
		}
		s.db.SetMaxOpenConns(n)
		s.db.SetMaxIdleConns(n)
		s.db.SetConnMaxLifetime(0)
		if s.wdb, err = sql.Open("sqlite", dsn); err != nil {
			s.db.Close()
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		s.wdb.SetMaxOpenConns(1)
		s.wdb.SetMaxIdleConns(1)
		s.wdb.SetConnMaxLifetime(0)
	}
	if s.wdb == nil {
		s.wdb = s.db
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("connect to %s: %w", s.dialect, err)
	}
	if s.dialect == SQLite {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.checkpointLoop()
	}
	return s, nil
}

// Close stops the checkpointer, checkpoints a last time and closes the pool.
func (s *DB) Close() error {
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
		ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
		s.writeMu.Lock()
		_, _, err := s.checkpoint(ctx, "TRUNCATE")
		s.writeMu.Unlock()
		cancel()
		if err != nil {
			s.log.Warn("final WAL checkpoint failed", "err", err)
		}
	}
	if s.wdb != nil && s.wdb != s.db {
		s.wdb.Close()
	}
	return s.db.Close()
}

func (s *DB) checkpointLoop() {
	defer close(s.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
		walPages, _, err := s.checkpoint(ctx, "PASSIVE")
		if err == nil && walPages > checkpointMaxWAL {
			s.writeMu.Lock()
			_, _, err = s.checkpoint(ctx, "TRUNCATE")
			s.writeMu.Unlock()
		}
		cancel()
		if err != nil {
			s.log.Warn("WAL checkpoint failed", "err", err)
		}
	}
}

// checkpoint runs one WAL checkpoint of the given mode and returns the
// WAL's size and how much of it is now in the database, in pages.
func (s *DB) checkpoint(ctx context.Context, mode string) (walPages, done int, err error) {
	var busy int
	err = s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &walPages, &done)
	return walPages, done, err
}

// Dialect returns SQLite or Postgres.
func (s *DB) Dialect() string { return s.dialect }

// SQL exposes the pool for adapters that keep their own tables in wagate's
// database (whatsmeow's device store).
func (s *DB) SQL() *sql.DB { return s.db }

// Ping checks the database answers.
func (s *DB) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

type migration struct {
	version int
	name    string
	sql     string
}

func (s *DB) migrations() ([]migration, error) {
	dir := "migrations/" + s.dialect
	entries, err := fs.ReadDir(migrationsFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, _ := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", name)
		}
		b, err := migrationsFS.ReadFile(dir + "/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// LatestVersion is the schema version this binary knows.
func (s *DB) LatestVersion() int {
	ms, _ := s.migrations()
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// ErrSchemaTooNew means the database was migrated by a newer wagate.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// Version returns the applied schema version (0 for an empty database). It
// only reads, so readiness probes can call it.
func (s *DB) Version(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM wagate_migrations`).Scan(&v); err != nil {
		if !s.tableExists(ctx) {
			return 0, nil
		}
		return 0, err
	}
	return int(v.Int64), nil
}

// tableExists reports whether wagate_migrations exists (an empty database
// has none yet).
func (s *DB) tableExists(ctx context.Context) bool {
	q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'wagate_migrations'`
	if s.dialect == Postgres {
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'wagate_migrations'`
	}
	var n int
	if err := s.db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return true // unknown: let the caller report the first error
	}
	return n > 0
}

// Migrate applies every migration newer than the database's version, each in
// its own transaction, and refuses a database whose schema is newer.
func (s *DB) Migrate(ctx context.Context) error {
	ms, err := s.migrations()
	if err != nil {
		return err
	}
	if s.dialect == Postgres {
		// Several nodes may start at once: serialise their migrations.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7231001)`); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7231001)`)
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS wagate_migrations (
		version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create wagate_migrations: %w", err)
	}
	cur, err := s.Version(ctx)
	if err != nil {
		return err
	}
	if latest := s.LatestVersion(); cur > latest {
		return fmt.Errorf("%w: database is at version %d, this binary knows up to %d; upgrade wagate", ErrSchemaTooNew, cur, latest)
	}
	for _, m := range ms {
		if m.version <= cur {
			continue
		}
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO wagate_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, s.now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		s.log.Info("applied migration", "version", m.version, "name", m.name, "dialect", s.dialect)
	}
	return nil
}

// CheckSchema reports whether the database is at exactly the binary's version.
func (s *DB) CheckSchema(ctx context.Context) error {
	v, err := s.Version(ctx)
	if err != nil {
		return err
	}
	if latest := s.LatestVersion(); v != latest {
		if v > latest {
			return fmt.Errorf("%w: version %d > %d", ErrSchemaTooNew, v, latest)
		}
		return fmt.Errorf("schema at version %d, expected %d: run wagate migrate", v, latest)
	}
	return nil
}

// tx runs fn in a transaction, committing when it returns nil.
func (s *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	if s.dialect == SQLite {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// exec runs one write statement outside a transaction.
func (s *DB) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if s.dialect == SQLite {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
	}
	return s.wdb.ExecContext(ctx, q, args...)
}

// ms converts a time to the stored unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS converts stored unix milliseconds back to UTC time.
func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// fromNullMS converts a nullable column; the zero time means NULL.
func fromNullMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

// nullMS is the reverse of fromNullMS.
func nullMS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: ms(t), Valid: true}
}

// notFound maps sql.ErrNoRows to an errs.NotFound naming what was missing.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	return err
}

// isUniqueViolation reports a unique-constraint failure on either dialect.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505")
}
