package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wagate/wagate/internal/app"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/secretbox"
	"github.com/wagate/wagate/internal/store"
)

// target is a wagate under test.
type target struct {
	mode       string
	baseURL    string
	adminToken string
	// pid is the process whose RSS is reported, 0 when unknown; rssScope
	// says what that process holds.
	pid      int
	rssScope string
	// outbox reads the outbox depth, to check that results were stored;
	// nil when it cannot be read.
	outbox func(ctx context.Context) (delivery.Stats, error)
	// own is true when the tool started the server (and its data).
	own  bool
	stop func(ctx context.Context) error
	// logTail returns the end of the server's log, for errors.
	logTail func() string
	// died reports whether a spawned server exited before it was stopped.
	died func() (bool, string)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// builder builds the wagate binary once per invocation of the tool.
type builder struct {
	once sync.Once
	bin  string
	dir  string
	err  error
}

func (b *builder) get(ctx context.Context, log *slog.Logger) (string, error) {
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "wagate-load-bin")
		if b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "wagate")
		log.Info("building wagate", "out", b.bin)
		// The same flags as `make build`, so the spawned binary is the shipped one.
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", b.bin, "github.com/wagate/wagate/cmd/wagate")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/wagate (run from the wagate repository, or pass --wagate-bin): %v\n%s", err, out)
		}
	})
	return b.bin, b.err
}

func (b *builder) cleanup() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// serverEnv is the configuration of a server the tool starts: sandbox
// sessions, loopback webhooks allowed, rate limits out of the way, quiet.
func serverEnv(o *options, addr, dataDir, dbURL, adminToken string) map[string]string {
	env := map[string]string{
		"WAGATE_ADDR":                addr,
		"WAGATE_DATA_DIR":            dataDir,
		"WAGATE_ENGINE":              "sandbox",
		"WAGATE_SANDBOX":             "true",
		"WAGATE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
		"WAGATE_RATE_LIMIT":          "1000000",
		"WAGATE_RATE_BURST":          "1000000",
		"WAGATE_MAX_BODY_BYTES":      strconv.Itoa(8 << 20),
		"WAGATE_LOG_LEVEL":           "warn",
		"WAGATE_ADMIN_TOKEN":         adminToken,
		"WAGATE_NODE_ID":             "wagate-load",
		// A key of our own, so the server does not warn about generating one.
		"WAGATE_SECRET_KEY": secretKey(),
	}
	if dbURL != "" {
		env["DATABASE_URL"] = dbURL
	}
	if o.webhookTimeout > 0 {
		env["WAGATE_WEBHOOK_TIMEOUT"] = o.webhookTimeout.String()
	}
	switch {
	case o.retrySchedule != "":
		env["WAGATE_RETRY_SCHEDULE"] = o.retrySchedule
	case o.pending > 0:
		// The pending events must stay pending for the whole run.
		env["WAGATE_RETRY_SCHEDULE"] = "1h"
	}
	for _, kv := range o.serverEnv {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}

func secretKey() string {
	k, err := secretbox.GenerateKey()
	if err != nil {
		return ""
	}
	return secretbox.EncodeKey(k)
}

// freshDatabase creates an empty database on the PostgreSQL server of
// adminURL and returns its URL and a function that drops it.
func freshDatabase(ctx context.Context, adminURL string) (string, func(), error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", nil, err
	}
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	name := "wagate_load_" + randomHex(6)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop := func() {
		db, err := sql.Open("pgx", adminURL)
		if err != nil {
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// startTarget starts (or reaches) the server of one mode.
func startTarget(ctx context.Context, mode string, o *options, b *builder, log *slog.Logger) (*target, error) {
	if mode == modeURL {
		return &target{mode: mode, baseURL: strings.TrimRight(o.url, "/"), adminToken: o.adminToken,
			rssScope: "n/a (server not started by the tool)", outbox: scrapeOutbox(o.url, o.metricsToken),
			stop: func(context.Context) error { return nil }}, nil
	}
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	dataDir, err := os.MkdirTemp("", "wagate-load-data")
	if err != nil {
		return nil, err
	}
	if o.keep {
		log.Warn("keeping the data directory", "dir", dataDir)
	} else {
		cleanups = append(cleanups, func() { os.RemoveAll(dataDir) })
	}
	dbURL := ""
	if o.db == "postgres" {
		dbURL = o.databaseURL
		if !o.pgReuse {
			var drop func()
			if dbURL, drop, err = freshDatabase(ctx, o.databaseURL); err != nil {
				cleanup()
				return nil, err
			}
			if !o.keep {
				cleanups = append(cleanups, drop)
			}
		}
	}
	adminToken := "wga_load_" + randomHex(16)
	var t *target
	switch mode {
	case modeSpawn:
		t, err = spawn(ctx, o, b, dataDir, dbURL, adminToken, log)
	case modeInProcess:
		t, err = startApp(ctx, o, dataDir, dbURL, adminToken)
	case modeHarness, modeNoDurable:
		t, err = startHarness(ctx, o, mode == modeHarness, dataDir, dbURL, adminToken)
	}
	if err != nil {
		cleanup()
		return nil, err
	}
	t.mode, t.own = mode, true
	stop := t.stop
	t.stop = func(ctx context.Context) error {
		err := stop(ctx)
		cleanup()
		return err
	}
	return t, nil
}

// freeAddr returns a loopback address with a free port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// spawn runs wagate as a child process in dataDir.
func spawn(ctx context.Context, o *options, b *builder, dataDir, dbURL, adminToken string, log *slog.Logger) (*target, error) {
	bin := o.wagateBin
	if bin == "" {
		var err error
		if bin, err = b.get(ctx, log); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dataDir, "wagate.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// An explicit environment: nothing of the caller's (a DATABASE_URL, a
	// .env file in the working directory) leaks into the measured server.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range serverEnv(o, addr, dataDir, dbURL, adminToken) {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dataDir, env, logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); logFile.Close(); close(exited) }()
	tail := func() string {
		b, _ := os.ReadFile(logPath)
		return truncateHead(string(b), 3000)
	}
	stopping := false
	t := &target{
		baseURL: "http://" + addr, adminToken: adminToken, pid: cmd.Process.Pid,
		rssScope: "the wagate process", logTail: tail,
		died: func() (bool, string) {
			select {
			case <-exited:
				if !stopping {
					return true, fmt.Sprint(exitErr)
				}
			default:
			}
			return false, ""
		},
	}
	t.stop = func(ctx context.Context) error {
		stopping = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		return nil
	}
	if err := waitReady(ctx, t.baseURL, exited); err != nil {
		t.stop(ctx)
		return nil, fmt.Errorf("%w\nserver log:\n%s", err, tail())
	}
	// A second pool on the same database reads the outbox depth; it only
	// runs after the injection, to check that results were stored.
	side, err := store.Open(ctx, dbURL, dataDir, slog.New(slog.DiscardHandler), store.Options{MaxOpenConns: 2})
	if err == nil {
		t.outbox = side.OutboxStats
		stop := t.stop
		t.stop = func(ctx context.Context) error { side.Close(); return stop(ctx) }
	}
	return t, nil
}

func truncateHead(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// waitReady polls /readyz until the server answers 200.
func waitReady(ctx context.Context, base string, exited <-chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("wagate exited during start-up")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("wagate not ready after 60s")
		}
	}
}

func mapGetenv(env map[string]string) config.Getenv {
	return func(k string) string { return env[k] }
}

// startApp runs wagate's own app.Main in this process.
func startApp(ctx context.Context, o *options, dataDir, dbURL, adminToken string) (*target, error) {
	cfg, err := config.Load(mapGetenv(serverEnv(o, "127.0.0.1:0", dataDir, dbURL, adminToken)), "")
	if err != nil {
		return nil, err
	}
	m := &app.Main{Config: cfg, Log: app.NewLogger(cfg, os.Stderr)}
	if err := m.Start(ctx); err != nil {
		m.Close(context.Background())
		return nil, err
	}
	return &target{
		baseURL: m.URL(), adminToken: m.AdminToken, pid: os.Getpid(),
		rssScope: "this process: wagate, the load generator and the receiver", outbox: m.DB.OutboxStats,
		stop: m.Close,
	}, nil
}

// cpuTime is the CPU time (user + system) a process used so far: from
// /proc/<pid>/stat, in clock ticks of 1/100 s (USER_HZ on Linux).
func cpuTime(pid int) (time.Duration, error) {
	if pid == os.Getpid() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// machineCPU reads the busy and total CPU time of the whole machine from
// /proc/stat, in clock ticks summed over every CPU.
func machineCPU() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, errors.New("unexpected /proc/stat")
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		total += n
		if i != 3 && i != 4 { // idle and iowait
			busy += n
		}
	}
	return busy, total, nil
}

// procStatus reads VmHWM (peak RSS) and VmRSS of a process, in bytes.
func procStatus(pid int) (peak, cur int64, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if name == "VmHWM" {
			peak = kb << 10
		} else {
			cur = kb << 10
		}
	}
	return peak, cur, sc.Err()
}

// scrapeCounter returns a reader of the sum of a metric's series whose
// labels hold every one of want.
func scrapeCounter(base, token, name string, want ...string) func(ctx context.Context) (float64, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(ctx context.Context) (float64, error) {
		body, err := getMetrics(ctx, client, base, token)
		if err != nil {
			return 0, err
		}
		var sum float64
		for _, line := range strings.Split(body, "\n") {
			labels, ok := strings.CutPrefix(line, name+"{")
			if !ok {
				continue
			}
			end := strings.LastIndex(labels, "} ")
			if end < 0 {
				continue
			}
			match := true
			for _, w := range want {
				match = match && strings.Contains(labels[:end], w)
			}
			if v, err := strconv.ParseFloat(strings.TrimSpace(labels[end+2:]), 64); err == nil && match {
				sum += v
			}
		}
		return sum, nil
	}
}

// getMetrics fetches /metrics.
func getMetrics(ctx context.Context, client *http.Client, base, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(base, "/")+"/metrics", nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics answered %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return string(b), err
}

// scrapeOutbox reads wagate_outbox_events{status="pending"} from /metrics,
// for servers the tool did not start. The gauge is cached for 2 s there.
func scrapeOutbox(base, token string) func(ctx context.Context) (delivery.Stats, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(ctx context.Context) (delivery.Stats, error) {
		body, err := getMetrics(ctx, client, base, token)
		if err != nil {
			return delivery.Stats{}, err
		}
		var st delivery.Stats
		found := false
		for _, line := range strings.Split(body, "\n") {
			for _, m := range []struct {
				prefix string
				dst    *int64
			}{{`wagate_outbox_events{status="pending"} `, &st.Pending}, {`wagate_outbox_events{status="due"} `, &st.Due}, {`wagate_outbox_events{status="failed"} `, &st.Failed}} {
				if v, ok := strings.CutPrefix(line, m.prefix); ok {
					f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					if err == nil {
						*m.dst = int64(f)
						found = found || m.dst == &st.Pending
					}
				}
			}
		}
		if !found {
			return st, errors.New("/metrics has no wagate_outbox_events gauge")
		}
		return st, nil
	}
}
