package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// measure runs every mode --repeat times, one after the other (never two
// at once: they would share the CPUs), and collects the results.
func measure(ctx context.Context, o *options, log *slog.Logger) (*report, error) {
	rep := &report{Machine: machineInfo(), Settings: settingsOf(o)}
	b := &builder{}
	defer b.cleanup()
	// Interleaved (a b c a b c...), so drifting noise on a shared machine
	// spreads over every mode rather than landing on one.
	for i := range o.repeat {
		for _, mode := range o.modes {
			if o.waitIdle > 0 {
				if err := waitIdle(ctx, o.waitIdle, log); err != nil {
					return rep, err
				}
			}
			log.Info("run", "mode", mode, "n", i+1, "of", o.repeat)
			rctx, cancel := context.WithTimeout(ctx, o.timeout)
			res, err := runOnce(rctx, o, mode, i+1, b, log)
			cancel()
			if res != nil {
				rep.Runs = append(rep.Runs, res)
			}
			if err != nil {
				return rep, fmt.Errorf("%s run %d: %w", mode, i+1, err)
			}
		}
	}
	rep.summarize()
	return rep, nil
}

// waitIdle waits until the machine was under 10% busy over 2 seconds, or
// gives up after timeout and runs anyway (the report shows the noise).
func waitIdle(ctx context.Context, timeout time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(timeout)
	for {
		b0, t0, err := machineCPU()
		if err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
		b1, t1, err := machineCPU()
		if err != nil || t1 == t0 {
			return nil
		}
		busy := float64(b1-b0) / float64(t1-t0)
		if busy < 0.10 {
			return nil
		}
		if time.Now().After(deadline) {
			log.Warn("the machine is still busy; measuring anyway", "busy", fmt.Sprintf("%.0f%%", busy*100))
			return nil
		}
		log.Info("waiting for the machine to be idle", "busy", fmt.Sprintf("%.0f%%", busy*100))
	}
}

// loadRun is one measured run against one target.
type loadRun struct {
	o     *options
	t     *target
	log   *slog.Logger
	runID string

	rec   *recorder
	rv    *receiver
	api   *api
	f     *fleet
	in    *injector
	limit int

	baseline    int64 // outbox rows pending before the injection
	baselineOK  bool
	injectStart int64
	injectEnd   int64
	storedAt    int64 // when the outbox had no measured row pending; 0 = unknown
	storedNote  string

	// CPU time of the server and of this process at the start and the end
	// of the injection and drain.
	cpuServer0, cpuServer1 time.Duration
	cpuSelf0, cpuSelf1     time.Duration
	cpuAt0, cpuAt1         time.Time
	machBusy0, machTotal0  int64
	machBusy1, machTotal1  int64
}

// cpuMark samples the CPU time used so far.
func (l *loadRun) cpuMark() (server, self time.Duration, at time.Time) {
	at = time.Now()
	if l.t.pid != 0 && l.t.pid != os.Getpid() {
		server, _ = cpuTime(l.t.pid)
	}
	self, _ = cpuTime(os.Getpid())
	return server, self, at
}

// capacity is how many messages a run may inject.
func capacity(o *options) int {
	switch {
	case o.events > 0:
		return o.events
	case o.rate > 0:
		return int(math.Ceil(o.rate*(o.warmup+o.duration).Seconds())) + o.batch + 1
	default:
		return o.maxEvents
	}
}

// prepare starts the receiver and creates the clients, sessions and
// webhooks (and the pending backlog) on the target.
func prepare(ctx context.Context, o *options, t *target, log *slog.Logger) (*loadRun, error) {
	l := &loadRun{o: o, t: t, log: log, runID: randomHex(4), limit: capacity(o)}
	l.rec = newRecorder(l.limit, o.webhooksPerSession)
	prefix := "WL" + l.runID + "-"
	var err error
	if l.rv, err = startReceiver(l.rec, prefix, o.verifyEvery); err != nil {
		return l, err
	}
	l.api = newAPI(t.baseURL, o.concurrency)
	start := time.Now()
	if l.f, err = setup(ctx, l.api, t.adminToken, o, l.rv, l.runID); err != nil {
		return l, fmt.Errorf("setup: %w", err)
	}
	log.Info("setup done", "clients", len(l.f.clients), "sessions", len(l.f.sessions), "webhooks", l.f.hooks+len(l.f.hang), "took", time.Since(start))
	if o.pending > 0 {
		start := time.Now()
		if l.f.pendingSession, err = setupPending(ctx, l.api, t.adminToken, o.pending, l.runID); err != nil {
			return l, err
		}
		// Their first attempts fail at once (connection refused); wait until
		// all have been tried, so they wait for the retry schedule and the
		// run measures a backlog at rest.
		if err := l.waitAttempted(ctx, o.pending); err != nil {
			log.Warn("could not confirm the pending backlog was attempted", "err", err)
		}
		log.Info("pending backlog in place", "events", o.pending, "took", time.Since(start))
	}
	if t.outbox != nil {
		if st, err := t.outbox(ctx); err == nil {
			l.baseline, l.baselineOK = st.Pending, true
		} else {
			l.storedNote = "outbox depth unreadable: " + err.Error()
		}
	} else {
		l.storedNote = "outbox depth unreadable"
	}
	l.in = newInjector(l.api, l.rec, l.f, prefix, o, l.limit)
	return l, nil
}

// depth is the outbox depth a wait condition looks at.
type depth struct{ Pending, Due int64 }

// waitAttempted waits until /metrics counts n failed attempts (outcome
// retry) for the pending session's webhook.
func (l *loadRun) waitAttempted(ctx context.Context, n int) error {
	count := scrapeCounter(l.t.baseURL, l.o.metricsToken, "wagate_webhook_deliveries_total",
		`outcome="retry"`, `webhook_id="`+l.f.pendingSession.hooks[0]+`"`)
	deadline := time.Now().Add(l.o.drainTimeout + time.Duration(n/1000)*time.Second)
	for {
		v, err := count(ctx)
		if err != nil {
			return err
		}
		if v >= float64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%g of %d attempted", v, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitOutbox polls the outbox depth until cond holds.
func (l *loadRun) waitOutbox(ctx context.Context, timeout time.Duration, cond func(depth) bool) error {
	if l.t.outbox == nil {
		return errors.New("outbox depth unreadable")
	}
	every := 50 * time.Millisecond
	if l.t.mode == modeURL {
		every = 500 * time.Millisecond // /metrics caches the gauge for 2 s
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := l.t.outbox(ctx)
		if err != nil {
			return err
		}
		if cond(depth{Pending: st.Pending, Due: st.Due}) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not reached after %v (pending %d, due %d)", timeout, st.Pending, st.Due)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// inject runs the injection: paced at --rate, or flat out.
func (l *loadRun) inject(ctx context.Context) {
	stopAfter := l.o.warmup + l.o.duration
	if l.o.events > 0 {
		stopAfter = l.o.timeout // bounded by the count, and by --timeout
	}
	l.cpuServer0, l.cpuSelf0, l.cpuAt0 = l.cpuMark()
	l.machBusy0, l.machTotal0, _ = machineCPU()
	l.injectStart = l.rec.now()
	if l.o.rate > 0 {
		l.in.paced(ctx, l.o.rate, l.o.tick, stopAfter, l.o.concurrency)
	} else {
		l.in.flat(ctx, stopAfter, l.o.concurrency)
	}
	l.injectEnd = l.rec.now()
}

func (l *loadRun) window() window {
	return window{from: l.injectStart + int64(l.o.warmup), to: l.injectEnd}
}

// expected is how many deliveries the accepted messages owe.
func (l *loadRun) expected() int64 {
	var n int64
	for _, s := range l.f.sessions {
		n += s.sent.Load()
	}
	return n * int64(l.o.webhooksPerSession)
}

// drain waits until every accepted message reached each of its webhooks,
// or the drain timeout, then until the outbox shows their results stored.
func (l *loadRun) drain(ctx context.Context) {
	want := l.expected()
	deadline := time.Now().Add(l.o.drainTimeout)
	for l.rec.firsts.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	l.cpuServer1, l.cpuSelf1, l.cpuAt1 = l.cpuMark()
	l.machBusy1, l.machTotal1, _ = machineCPU()
}

// waitStored waits until no measured row is pending in the outbox: only
// the pending backlog and the hanging webhooks' rows may remain.
func (l *loadRun) waitStored(ctx context.Context) {
	if !l.baselineOK {
		return
	}
	other := l.baseline
	if len(l.f.hang) > 0 {
		other += int64(len(l.f.hang)) * l.f.sessions[0].sent.Load()
	}
	if err := l.waitOutbox(ctx, l.o.drainTimeout, func(st depth) bool { return st.Pending <= other }); err != nil {
		l.storedNote = "results not confirmed stored: " + err.Error()
		return
	}
	l.storedAt = l.rec.now()
}

func (l *loadRun) close(ctx context.Context) {
	if l.rv != nil {
		l.rv.close()
	}
	if l.f != nil && !l.t.own && !l.o.keep {
		if err := teardown(ctx, l.api, l.t.adminToken, l.f); err != nil {
			l.log.Warn("deleting the run's clients failed", "err", err)
		}
	}
}

// runOnce starts the target, runs the load, and stops the target.
func runOnce(ctx context.Context, o *options, mode string, n int, b *builder, log *slog.Logger) (res *result, err error) {
	t, err := startTarget(ctx, mode, o, b, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if serr := t.stop(sctx); serr != nil && err == nil {
			log.Warn("stopping the server", "err", serr)
		}
	}()
	l, err := prepare(ctx, o, t, log)
	defer l.close(context.Background())
	if err != nil {
		if t.logTail != nil {
			err = fmt.Errorf("%w\nserver log:\n%s", err, t.logTail())
		}
		return nil, err
	}
	if t.pid == os.Getpid() {
		// In-process modes share this process: start each run's peak RSS
		// afresh ("5" resets VmHWM, Linux 4.0+).
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			log.Warn("cannot reset the peak RSS; it includes earlier runs", "err", err)
		}
	}
	var stopProfile func() error
	if o.cpuProfile != "" {
		if stopProfile, err = startCPUProfile(profileName(o.cpuProfile, mode, n, o)); err != nil {
			return nil, err
		}
	}
	if o.mutexProfile != "" {
		runtime.SetMutexProfileFraction(5)
	}
	l.inject(ctx)
	l.drain(ctx)
	if o.mutexProfile != "" {
		err := writeProfile("mutex", profileName(o.mutexProfile, mode, n, o))
		runtime.SetMutexProfileFraction(0)
		if err != nil {
			return nil, err
		}
	}
	if stopProfile != nil {
		if err := stopProfile(); err != nil {
			return nil, err
		}
	}
	if o.memProfile != "" {
		if err := writeHeapProfile(profileName(o.memProfile, mode, n, o)); err != nil {
			return nil, err
		}
	}
	if t.died != nil {
		if dead, how := t.died(); dead {
			return l.result(mode, n), fmt.Errorf("the wagate process exited during the run (%s); its log ends with:\n%s", how, t.logTail())
		}
	}
	l.waitStored(ctx)
	res = l.result(mode, n)
	if t.pid != 0 {
		if peak, cur, err := procStatus(t.pid); err == nil {
			p, c := mb(peak), mb(cur)
			res.PeakRSSMB, res.RSSMB = &p, &c
		}
	}
	res.RSSScope = t.rssScope
	return res, ctx.Err()
}

// profileName keeps one profile per run when there are several.
func profileName(base, mode string, n int, o *options) string {
	if len(o.modes) == 1 && o.repeat == 1 {
		return base
	}
	return fmt.Sprintf("%s.%s.%d", base, mode, n)
}

func startCPUProfile(path string) (func() error, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func mb(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

func ms(ns int64) float64 { return math.Round(float64(ns)/1e4) / 100 }

// result turns what was recorded into the report of one run.
func (l *loadRun) result(mode string, n int) *result {
	w := l.window()
	t := l.rec.tally(w)
	o := l.o
	r := &result{
		Mode: mode, DB: o.db, Run: n,
		Injected: t.injected, Accepted: t.accepted, InjectFailed: t.failed,
		InjectRequests: t.requestsOK + t.requestsFailed, InjectRequestsFailed: t.requestsFailed,
		Expected: t.expected, Delivered: t.delivered, Lost: t.lost,
		Duplicates: t.duplicates, Unexpected: t.unexpectedArrive,
		SigChecked: l.rv.sigChecked.Load(), SigErrors: l.rv.sigErrors.Load(), SigError: l.rv.sigError(),
		BadRequests: l.rv.badRequest.Load(), HangRequests: l.rv.hung.Load(),
		StoredNote: l.storedNote,
	}
	if mode == modeURL {
		r.DB = "n/a"
	}
	l.in.errMu.Lock()
	r.FirstInjectError = l.in.firstErr
	l.in.errMu.Unlock()
	if span := w.to - w.from; span > 0 {
		secs := float64(span) / 1e9
		r.WindowS = round2(secs)
		r.Throughput = math.Round(float64(t.inWindow) / secs)
		r.InjectRate = math.Round(float64(t.sentInWindow) / secs)
	}
	if len(t.perSecond) > 0 {
		ps := append([]int(nil), t.perSecond...)
		sortInts(ps)
		r.PerSecondMin, r.PerSecondMedian, r.PerSecondMax = ps[0], ps[len(ps)/2], ps[len(ps)-1]
	}
	if t.firstMeasuredSent > 0 && t.lastArrival > t.firstMeasuredSent {
		r.EndToEnd = math.Round(float64(t.measured) / (float64(t.lastArrival-t.firstMeasuredSent) / 1e9))
	}
	if wall := l.cpuAt1.Sub(l.cpuAt0).Seconds(); wall > 0 {
		r.CPUWallS = round2(wall)
		if l.cpuServer1 > 0 {
			r.CPUServer = round2((l.cpuServer1 - l.cpuServer0).Seconds() / wall)
		}
		r.CPUSelf = round2((l.cpuSelf1 - l.cpuSelf0).Seconds() / wall)
		if dt := l.machTotal1 - l.machTotal0; dt > 0 {
			// Whatever else ran on the machine meanwhile: a noisy run shows here.
			busy := float64(l.machBusy1-l.machBusy0) / float64(dt) * float64(runtime.NumCPU())
			r.CPUOther = round2(max(busy-r.CPUServer-r.CPUSelf, 0))
		}
	}
	r.Latency = latencyOf(t.latencies)
	r.StartedAt = l.rec.base.Add(time.Duration(w.from)).UTC().Format(time.RFC3339Nano)
	for _, v := range t.maxLatencyPerSecond {
		r.MaxLatencyPerSecond = append(r.MaxLatencyPerSecond, ms(v))
	}
	r.InjectRequest = latencyOf(t.injectTook)
	if o.rate > 0 {
		lag := latencyOf(t.injectLag)
		r.InjectLag = &lag
	}
	if t.lastArrival > 0 {
		r.DrainS = round2(float64(max(t.lastArrival-l.injectEnd, 0)) / 1e9)
	}
	if l.storedAt > 0 && t.lastArrival > 0 {
		v := round2(float64(max(l.storedAt-t.lastArrival, 0)) / 1e9)
		r.ResultsStoredS = &v
		if r.Lost == 0 {
			r.Durable = math.Round(float64(t.delivered) / (float64(l.storedAt-l.injectStart) / 1e9))
		}
	}
	return r
}

func latencyOf(sorted []int64) latency {
	return latency{Samples: len(sorted), P50: ms(percentile(sorted, 50)), P90: ms(percentile(sorted, 90)),
		P99: ms(percentile(sorted, 99)), Max: ms(percentile(sorted, 100))}
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
