package testdb

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EnvPGBin names the directory of the PostgreSQL binaries that `make test`
// uses; when unset, the newest /usr/lib/postgresql/*/bin is taken.
const EnvPGBin = "WAGATE_TEST_PG_BIN"

// Cluster is a private, throwaway PostgreSQL server for one test: unlike
// the shared server of `make test`, a test may stop and start it (to
// simulate a database crash) without disturbing the others. It listens on
// a unix socket only, in its own directory.
type Cluster struct {
	t        testing.TB
	settings []string
	bin      string
	dir      string // owned by the cluster's OS user: data/, the socket, server.log
	port     int
	runAs    []string // runuser prefix when the tests run as root
}

// StartCluster initialises and starts a private cluster, stopped and
// removed at cleanup. settings are extra server settings ("name=value").
// initdb refuses root, so as root the cluster belongs to the "postgres" OS
// user (which scripts/test.sh creates).
func StartCluster(t testing.TB, settings ...string) *Cluster {
	t.Helper()
	bin, err := pgBin()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, settings: settings, bin: bin, port: 5432}
	owner := -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("private PostgreSQL: running as root needs the postgres OS user (scripts/test.sh creates it): %v", err)
		}
		owner, _ = strconv.Atoi(u.Uid)
		c.runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	// Not t.TempDir: its parents are 0700 and root's, which the postgres
	// user could not traverse.
	c.dir, err = os.MkdirTemp("", "wagate-pgpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.run(10*time.Second, "pg_ctl", "-D", c.data(), "-m", "immediate", "stop")
		os.RemoveAll(c.dir)
	})
	if err := os.Chmod(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if owner >= 0 {
		if err := os.Chown(c.dir, owner, -1); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := c.run(60*time.Second, "initdb", "-D", c.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.Start()
	return c
}

// URL is the connection URL of the cluster's postgres database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", c.dir, c.port)
}

// Start starts the server on its data directory and waits until it
// accepts connections. The socket and port stay the same across restarts.
func (c *Cluster) Start() {
	c.t.Helper()
	// fsync=off is safe here: Stop kills the server processes, not the
	// machine, so what was written reaches the data files. Commits stay
	// synchronous: with synchronous_commit=off, a crash would lose commits
	// already acknowledged, which is no test of wagate.
	opts := fmt.Sprintf("-k %s -p %d -c listen_addresses='' -c fsync=off -c max_connections=200", c.dir, c.port)
	for _, s := range c.settings {
		opts += " -c " + s
	}
	if out, err := c.run(60*time.Second, "pg_ctl", "-D", c.data(), "-w", "-t", "60", "-l", filepath.Join(c.dir, "server.log"), "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		c.t.Fatalf("pg_ctl start: %v\n%s\nserver log:\n%s", err, out, log)
	}
}

// Stop stops the server at once, as a crash would: "-m immediate" aborts
// every session without a checkpoint, so the next start runs recovery.
func (c *Cluster) Stop() {
	c.t.Helper()
	if out, err := c.run(30*time.Second, "pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop"); err != nil {
		c.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// run runs a PostgreSQL binary as the cluster's OS user.
func (c *Cluster) run(timeout time.Duration, prog string, args ...string) ([]byte, error) {
	argv := append(append(append([]string(nil), c.runAs...), filepath.Join(c.bin, prog)), args...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.dir // the postgres user may not be able to read the test's working directory
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return out, fmt.Errorf("%s timed out after %v", prog, timeout)
	}
	return out, err
}

// pgBin finds the PostgreSQL binaries.
func pgBin() (string, error) {
	if b := os.Getenv(EnvPGBin); b != "" {
		return b, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) < pgVersion(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL binaries: set %s or install postgresql (make test does)", EnvPGBin)
}

func pgVersion(dir string) int {
	n, _ := strconv.Atoi(strings.Split(filepath.Base(filepath.Dir(dir)), ".")[0])
	return n
}
