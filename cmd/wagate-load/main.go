// Command wagate-load measures wagate's delivery pipeline end to end: it
// injects inbound sandbox messages through the public API, receives the
// signed webhook deliveries on its own loopback receiver, and reports
// throughput, latency percentiles, errors, duplicates, losses and the
// server's peak RSS.
//
// It runs against a wagate it starts itself (--spawn, the default), one
// already running on loopback (--url), or in its own process (--mode
// inprocess, harness, nodurable) for CPU profiles and for the comparison
// with durability switched off. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `wagate-load: load generator and benchmark of wagate's webhook delivery.

Usage:
  wagate-load [flags]                      spawn a wagate (built from ./cmd/wagate) and measure it
  wagate-load --url URL --admin-token T    measure a wagate already running on loopback
  wagate-load --mode spawn,harness,nodurable
                                           run several targets in turn and compare them

Modes (--mode, comma-separated; each runs the same load in turn):
  spawn      a wagate binary as a child process (temp data dir; --db, --wagate-bin)
  url        the wagate at --url (with --admin-token)
  inprocess  wagate's own app.Main inside this process (for --cpuprofile/--memprofile)
  harness    the same parts as app.Main, assembled in this process, with the real outbox store
  nodurable  as harness, but the outbox (events, deliveries, results) lives in memory:
             durability switched off, in this benchmark harness only

Flags:
`

// options are the command-line flags.
type options struct {
	modes        []string
	procs        int
	url          string
	adminToken   string
	metricsToken string
	wagateBin    string
	db           string
	databaseURL  string
	pgReuse      bool
	serverEnv    []string

	sessions           int
	webhooksPerSession int
	rate               float64
	duration           time.Duration
	events             int
	maxEvents          int
	warmup             time.Duration
	concurrency        int
	batch              int
	tick               time.Duration
	contentSize        int
	hangWebhooks       int
	pending            int
	webhookTimeout     time.Duration
	retrySchedule      string
	drainTimeout       time.Duration
	verifyEvery        int
	repeat             int
	waitIdle           time.Duration
	timeout            time.Duration

	json         bool
	cpuProfile   string
	memProfile   string
	mutexProfile string
	keep         bool
	verbose      bool
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("wagate-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	var mode string
	var spawn bool
	fs.StringVar(&mode, "mode", "", "targets to measure, comma-separated: spawn, url, inprocess, harness, nodurable (default spawn, or url when --url is set)")
	fs.BoolVar(&spawn, "spawn", false, "start wagate as a child process (the same as --mode spawn)")
	fs.StringVar(&o.url, "url", "", "base URL of a running wagate on loopback, e.g. http://127.0.0.1:8080")
	fs.StringVar(&o.adminToken, "admin-token", os.Getenv("WAGATE_ADMIN_TOKEN"), "admin token of the --url server (default $WAGATE_ADMIN_TOKEN)")
	fs.StringVar(&o.metricsToken, "metrics-token", os.Getenv("WAGATE_METRICS_TOKEN"), "bearer token of the --url server's /metrics, used to check that results were stored")
	fs.StringVar(&o.wagateBin, "wagate-bin", "", "wagate binary to spawn (default: build ./cmd/wagate into a temp dir)")
	fs.StringVar(&o.db, "db", "sqlite", "database of spawned and in-process servers: sqlite or postgres")
	fs.StringVar(&o.databaseURL, "database-url", "", "PostgreSQL server URL for --db postgres; a fresh database is created on it per run and dropped after")
	fs.BoolVar(&o.pgReuse, "pg-reuse", false, "use the --database-url database as is instead of creating a fresh one per run")
	fs.Var((*stringList)(&o.serverEnv), "server-env", "extra KEY=VALUE for spawned and in-process servers (repeatable), e.g. WAGATE_WORKERS=32")

	fs.IntVar(&o.sessions, "sessions", 10, "sandbox sessions to create and inject into")
	fs.IntVar(&o.webhooksPerSession, "webhooks-per-session", 1, "webhooks per session (each filtered on the session's phone number)")
	fs.Float64Var(&o.rate, "rate", 0, "events per second, paced in batches every --tick; 0 = as fast as possible with --concurrency injectors of --batch events")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured injection time, after --warmup (ignored when --events is set)")
	fs.IntVar(&o.events, "events", 0, "inject exactly this many events (warm-up included) instead of running for --duration")
	fs.IntVar(&o.maxEvents, "max-events", 10_000_000, "upper bound of events one run injects at --rate 0 with --duration")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "injection time at the start that is excluded from throughput and latency")
	fs.IntVar(&o.concurrency, "concurrency", 4, "parallel inject requests")
	fs.IntVar(&o.batch, "batch", 500, "events per inject request at most (1..1000)")
	fs.DurationVar(&o.tick, "tick", 10*time.Millisecond, "pacing interval at a fixed --rate")
	fs.IntVar(&o.contentSize, "content-size", 40, "bytes of text per message")
	fs.IntVar(&o.hangWebhooks, "hang-webhooks", 0, "extra webhooks (on session 0's phone number) whose receiver never answers until the server's timeout; not counted")
	fs.IntVar(&o.pending, "pending", 0, "before the run, leave this many events pending for a webhook whose receiver is down (a closed loopback port); spawned servers get WAGATE_RETRY_SCHEDULE=1h")
	fs.DurationVar(&o.webhookTimeout, "webhook-timeout", 0, "WAGATE_WEBHOOK_TIMEOUT of spawned and in-process servers (default: the server's, 15s)")
	fs.StringVar(&o.retrySchedule, "retry-schedule", "", "WAGATE_RETRY_SCHEDULE of spawned and in-process servers (default: the server's; 1h with --pending)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 60*time.Second, "how long to wait after the injection for every delivery to arrive")
	fs.IntVar(&o.verifyEvery, "verify-every", 50, "verify the signature of one delivery in N (and each webhook's first)")
	fs.IntVar(&o.repeat, "repeat", 1, "run each mode this many times and report the median too")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "upper bound of one run, set-up and drain included")
	fs.DurationVar(&o.waitIdle, "wait-idle", 0, "before each run, wait up to this long for the machine to be idle (under 10% busy for 2s); the report shows the CPU other processes used during each run either way")

	fs.BoolVar(&o.json, "json", false, "print the results as JSON")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the injection and drain (in-process modes only: inprocess, harness, nodurable)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile after the drain (in-process modes only)")
	fs.StringVar(&o.mutexProfile, "mutexprofile", "", "write a mutex contention profile of the injection and drain (in-process modes only)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp data dirs, fresh databases and --url clients after the run")
	fs.BoolVar(&o.verbose, "v", false, "log progress to stderr")
	fs.IntVar(&o.procs, "procs", 0, "GOMAXPROCS of the load tool (injector and receiver); default 1 when every mode runs wagate in its own process (spawn, url), so that the tool competes with it as one runnable thread rather than two, else the CPU count")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch {
	case mode != "":
		for _, m := range strings.Split(mode, ",") {
			if m = strings.TrimSpace(m); m != "" {
				o.modes = append(o.modes, m)
			}
		}
	case spawn:
		o.modes = []string{modeSpawn}
	case o.url != "":
		o.modes = []string{modeURL}
	default:
		o.modes = []string{modeSpawn}
	}
	return o, o.validate()
}

// Modes.
const (
	modeSpawn     = "spawn"
	modeURL       = "url"
	modeInProcess = "inprocess"
	modeHarness   = "harness"
	modeNoDurable = "nodurable"
)

func inProcess(mode string) bool {
	return mode == modeInProcess || mode == modeHarness || mode == modeNoDurable
}

func (o *options) validate() error {
	if o.procs < 0 {
		return errors.New("--procs must be 0 (automatic) or more")
	}
	for _, m := range o.modes {
		switch m {
		case modeSpawn, modeInProcess, modeHarness, modeNoDurable:
		case modeURL:
			if o.url == "" {
				return errors.New("--mode url needs --url")
			}
			if o.adminToken == "" {
				return errors.New("--url needs --admin-token (or WAGATE_ADMIN_TOKEN)")
			}
			if err := checkLoopbackURL(o.url); err != nil {
				return err
			}
		default:
			return fmt.Errorf("--mode: unknown mode %q (spawn, url, inprocess, harness, nodurable)", m)
		}
		if (o.cpuProfile != "" || o.memProfile != "" || o.mutexProfile != "") && !inProcess(m) {
			return fmt.Errorf("--cpuprofile, --memprofile and --mutexprofile need an in-process mode (inprocess, harness, nodurable), not %s: a spawned or remote server has no profiling endpoint", m)
		}
	}
	switch o.db {
	case "sqlite":
	case "postgres":
		if o.databaseURL == "" {
			return errors.New("--db postgres needs --database-url (see scripts/bench-postgres.sh)")
		}
		if err := checkLoopbackURL(o.databaseURL); err != nil {
			return fmt.Errorf("--database-url: %w", err)
		}
	default:
		return fmt.Errorf("--db must be sqlite or postgres, not %q", o.db)
	}
	switch {
	case o.sessions < 1:
		return errors.New("--sessions must be >= 1")
	case o.webhooksPerSession < 1 || o.webhooksPerSession > maxHooksPerClient-reservedHooks:
		return fmt.Errorf("--webhooks-per-session must be 1..%d", maxHooksPerClient-reservedHooks)
	case o.rate < 0:
		return errors.New("--rate must be >= 0")
	case o.events < 0 || o.maxEvents < 1:
		return errors.New("--events must be >= 0 and --max-events >= 1")
	case o.events == 0 && o.duration <= 0:
		return errors.New("--duration must be > 0 (or set --events)")
	case o.warmup < 0:
		return errors.New("--warmup must be >= 0")
	case o.concurrency < 1:
		return errors.New("--concurrency must be >= 1")
	case o.batch < 1 || o.batch > 1000:
		return errors.New("--batch must be 1..1000 (the sandbox endpoint takes at most 1000 messages)")
	case o.tick < time.Millisecond:
		return errors.New("--tick must be >= 1ms")
	case o.contentSize < 1 || o.contentSize > 4096:
		return errors.New("--content-size must be 1..4096")
	case o.hangWebhooks < 0 || o.hangWebhooks > reservedHooks:
		return fmt.Errorf("--hang-webhooks must be 0..%d (they share session 0's client)", reservedHooks)
	case o.pending < 0:
		return errors.New("--pending must be >= 0")
	case o.drainTimeout <= 0:
		return errors.New("--drain-timeout must be > 0")
	case o.verifyEvery < 1:
		return errors.New("--verify-every must be >= 1")
	case o.repeat < 1:
		return errors.New("--repeat must be >= 1")
	case o.timeout <= 0:
		return errors.New("--timeout must be > 0")
	}
	for _, kv := range o.serverEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--server-env %q: want KEY=VALUE", kv)
		}
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "wagate-load: %v\n", err)
		return 2
	}
	procs := o.procs
	if procs == 0 {
		procs = runtime.NumCPU()
		if !slices.ContainsFunc(o.modes, inProcess) {
			procs = 1
		}
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	rep, err := measure(ctx, o, newLogger(stderr, o.verbose))
	if rep != nil {
		if o.json {
			rep.writeJSON(stdout)
		} else {
			rep.writeText(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "wagate-load: %v\n", err)
		return 1
	}
	if rep.failed() {
		return 3 // losses, duplicates or errors: the report says which
	}
	return 0
}
