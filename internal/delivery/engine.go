package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sessions"
	"github.com/wagate/wagate/internal/webhooks"
)

// Store is what the engine needs from storage.
type Store interface {
	Ingest(ctx context.Context, t Target, evs []NewEvent, lease Lease) (int, []Job, error)
	Claim(ctx context.Context, lease Lease, limit int, skip, stalled []string) ([]Job, error)
	Complete(ctx context.Context, results []Result, minFailures int, disableAfter time.Duration) ([]Disabled, error)
	ReleaseOwner(ctx context.Context, owner string) (int64, error)
	RenewLeases(ctx context.Context, owner string, until time.Time, ids []string) (int64, error)
	ListEvents(ctx context.Context, q ListQuery) ([]EventItem, string, error)
	GetEvent(ctx context.Context, clientID int64, id string) (EventItem, error)
	Requeue(ctx context.Context, clientID int64, id string) (string, error)
	Recover(ctx context.Context, clientID int64, webhookID string, since time.Time) (int64, error)
	Prune(ctx context.Context, cutoff time.Time, limit int) (int64, error)
	OutboxStats(ctx context.Context) (Stats, error)
}

// WebhookSource returns a webhook with its secrets decrypted, whoever owns it.
type WebhookSource interface {
	ForDelivery(ctx context.Context, id string) (webhooks.Webhook, error)
}

// Metrics is told what the engine does; optional.
type Metrics interface {
	// Attempt records one attempt: outcome is delivered, retry or failed.
	Attempt(webhookID, outcome string, d time.Duration)
	// Delivered records the time from an event's creation to its delivery.
	Delivered(latency time.Duration)
	// WebhookDisabled records an automatic disable.
	WebhookDisabled(reason string)
	// Inbound records newly stored events of a type.
	Inbound(eventType string, n int)
	// Jobs records the path n delivery jobs took: "handed" (leased when
	// stored and handed to the workers in memory), "stored" (stored due,
	// for the pollers: no room in memory), "deferred" (stored behind a
	// stalled webhook) or "claimed" (claimed by a poller).
	Jobs(path string, n int)
}

// Config of an Engine. Zero values take the documented defaults.
type Config struct {
	Store    Store
	Webhooks WebhookSource
	Log      *slog.Logger
	Metrics  Metrics
	Now      func() time.Time

	// NodeID names this node's leases; stable across restarts so that a
	// restarted node takes its rows back at once.
	NodeID string
	// Transport sends the requests; it must be the SSRF-guarded one.
	Transport http.RoundTripper
	UserAgent string

	Workers               int           // default 64
	MaxInFlightPerWebhook int           // default 16
	Timeout               time.Duration // default 15 s
	Schedule              []time.Duration
	DisableAfter          time.Duration // default 24 h
	MinFailures           int           // default 10
	AlertURL              string        // operator's alert webhook
	Retention             time.Duration // default 30 days
	Lease                 time.Duration // default 2 min
	Capacity              int           // jobs held in memory; default 10,000
	ParkLimit             int           // jobs held per webhook beyond those in flight; default Capacity/2
	PollInterval          time.Duration // default 500 ms
	BatchSize             int           // results per write; default 500
	// ResultLinger is how long the result writer waits for more results
	// before writing a batch that is not full: a few milliseconds turn
	// one-result transactions into batches at moderate rates; deliveries
	// are not delayed, only their bookkeeping. Default 25 ms: on PostgreSQL
	// fewer result commits leave the WAL to the inbound transactions, whose
	// latency is what users see.
	ResultLinger time.Duration
	// IngestConcurrency bounds the publishers storing events at once, so
	// that a burst of inbound batches cannot queue ahead of the result
	// writer and the poller on a single-writer database. 0: unbounded.
	IngestConcurrency int
	// RoomWait is how long a publisher waits for room in memory before it
	// stores its batch anyway (unleased, for the pollers). Default 2 s.
	RoomWait time.Duration
	// Defer is how long a stalled webhook's new rows wait in the database
	// before pollers look at them: at least Defer (default 10 s), then as
	// long as it has been stalled, up to MaxDefer (default 5 min).
	Defer    time.Duration
	MaxDefer time.Duration
}

// Engine delivers webhook events. It implements sessions.Publisher.
type Engine struct {
	cfg     Config
	store   Store
	log     *slog.Logger
	now     func() time.Time
	client  *http.Client
	disp    *dispatcher
	hooks   *hookCache
	results chan Result
	kick    chan struct{}
	ids     IDGen
	// backlog is set while due rows may be waiting in the database for room
	// in memory, so workers kick the poller as soon as room frees up.
	backlog atomic.Bool

	cancel  context.CancelFunc
	workers sync.WaitGroup
	loops   sync.WaitGroup
	writer  sync.WaitGroup
	alerts  sync.WaitGroup
	started atomic.Bool
	// resMu guards sends on results against its close at shutdown.
	resMu     sync.RWMutex
	resClosed bool
	// held is every job this node holds until its result is written:
	// queued, in flight, or waiting in results. Only their leases are
	// renewed, so a row the node has lost track of is not kept forever.
	heldMu sync.Mutex
	held   map[string]struct{}
	// closing bounds the writer's retries once Close has begun.
	closing atomic.Bool
	// ingestSem holds a slot per publisher storing events (IngestConcurrency).
	ingestSem chan struct{}
}

// New builds an engine; Start runs it.
func New(cfg Config) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.MaxInFlightPerWebhook <= 0 {
		cfg.MaxInFlightPerWebhook = 16
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if len(cfg.Schedule) == 0 {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.DisableAfter <= 0 {
		cfg.DisableAfter = 24 * time.Hour
	}
	if cfg.MinFailures <= 0 {
		cfg.MinFailures = 10
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 10000
	}
	if cfg.ParkLimit <= 0 {
		cfg.ParkLimit = max(cfg.Capacity/2, 2)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.ResultLinger <= 0 {
		cfg.ResultLinger = 25 * time.Millisecond
	}
	if cfg.RoomWait <= 0 {
		cfg.RoomWait = 2 * time.Second
	}
	if cfg.Defer <= 0 {
		cfg.Defer = 10 * time.Second
	}
	if cfg.MaxDefer < cfg.Defer {
		cfg.MaxDefer = max(5*time.Minute, cfg.Defer)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "wagate"
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	e := &Engine{
		cfg:   cfg,
		store: cfg.Store,
		log:   cfg.Log,
		now:   cfg.Now,
		client: &http.Client{
			Transport: cfg.Transport,
			// Redirects are not followed: a 3xx is a failed attempt, as the
			// target of a redirect was never validated.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		disp:    newDispatcher(cfg.MaxInFlightPerWebhook, cfg.ParkLimit, cfg.Capacity),
		hooks:   newHookCache(cfg.Webhooks, 5*time.Second, cfg.Now),
		results: make(chan Result, cfg.BatchSize*4),
		kick:    make(chan struct{}, 1),
		held:    map[string]struct{}{},
	}
	e.disp.now, e.disp.deferMin, e.disp.deferMax = cfg.Now, cfg.Defer, cfg.MaxDefer
	if cfg.IngestConcurrency > 0 {
		e.ingestSem = make(chan struct{}, cfg.IngestConcurrency)
	}
	return e
}

// Start takes back this node's leases from before a crash and starts the
// workers, the poller, the result writer and the pruner.
func (e *Engine) Start(ctx context.Context) error {
	if n, err := e.store.ReleaseOwner(ctx, e.cfg.NodeID); err != nil {
		return fmt.Errorf("release leases: %w", err)
	} else if n > 0 {
		e.log.Info("took back deliveries leased before a restart", "count", n, "node", e.cfg.NodeID)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.started.Store(true)
	e.writer.Add(1)
	go e.writeResults()
	for i := 0; i < e.cfg.Workers; i++ {
		e.workers.Add(1)
		go e.work()
	}
	e.loops.Add(3)
	go e.poll(ctx)
	go e.prune(ctx)
	go e.renew(ctx)
	e.kickPoller()
	return nil
}

// Close stops taking work, lets attempts in flight finish, gives the jobs
// not started back to the database and flushes the results.
func (e *Engine) Close(ctx context.Context) error {
	if !e.started.Swap(false) {
		return nil
	}
	e.closing.Store(true)
	e.cancel()
	e.loops.Wait()
	left := e.disp.close()
	e.workers.Wait()
	for _, j := range left {
		e.results <- Result{Job: j, Outcome: OutcomeRelease}
	}
	e.resMu.Lock()
	e.resClosed = true
	close(e.results)
	e.resMu.Unlock()
	e.writer.Wait()
	done := make(chan struct{})
	go func() { e.alerts.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// Publish implements sessions.Publisher: the events and their deliveries
// are committed in one transaction, then handed to the workers.
func (e *Engine) Publish(ctx context.Context, s sessions.Session, evs []events.Inbound) (int, error) {
	now := e.now()
	list := make([]NewEvent, 0, len(evs))
	for _, in := range evs {
		id := e.ids.New(now)
		payload, err := events.BuildPayload(id, s.ClientID, s.ID, s.PhoneNumber, in)
		if err != nil {
			return 0, errs.Wrap(errs.Invalid, err, "event cannot be encoded")
		}
		list = append(list, NewEvent{ID: id, Type: in.Type, DedupeKey: in.Key(), Payload: payload, CreatedAt: now, Media: in.Media})
	}
	return e.ingest(ctx, Target{ClientID: s.ClientID, SessionID: s.ID, PhoneNumber: s.PhoneNumber}, list)
}

func (e *Engine) ingest(ctx context.Context, t Target, list []NewEvent) (int, error) {
	if e.ingestSem != nil {
		select {
		case e.ingestSem <- struct{}{}:
			defer func() { <-e.ingestSem }()
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	var lease Lease
	if e.started.Load() {
		// Past RoomWait the batch is stored anyway: rows without room are
		// left to the pollers.
		if !e.disp.waitRoom(ctx, len(list), e.cfg.RoomWait) && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		lease = Lease{Owner: e.cfg.NodeID, Until: e.now().Add(e.cfg.Lease), Room: e.disp.roomFor, Defer: e.cfg.Defer, DeferFor: e.disp.deferFor}
	}
	n, jobs, err := e.store.Ingest(ctx, t, list, lease)
	if err != nil {
		return 0, err
	}
	if e.cfg.Metrics != nil && n > 0 {
		if n == len(list) {
			counts := map[string]int{}
			for _, ev := range list {
				counts[ev.Type]++
			}
			for typ, c := range counts {
				e.cfg.Metrics.Inbound(typ, c)
			}
		} else {
			// Some were duplicates; which ones the store knows. Count by the
			// first type, which is exact for the usual one-type batches.
			e.cfg.Metrics.Inbound(list[0].Type, n)
		}
	}
	if e.log.Enabled(ctx, slog.LevelDebug) {
		for _, j := range jobs {
			e.log.Debug("Enqueued webhook delivery", "eventId", j.ID, "event_id", j.EventID, "webhook_id", j.WebhookID, "client_id", j.ClientID, "event_type", j.EventType)
		}
	}
	leased := jobs[:0:0]
	due := 0 // unleased rows due now
	for _, j := range jobs {
		if j.Leased {
			leased = append(leased, j)
		} else if !j.Deferred {
			due++
		}
	}
	over, handed := 0, true
	if len(leased) > 0 {
		over, handed = e.hand(leased)
	}
	if !handed {
		over = len(leased)
	}
	e.countJobs("handed", len(leased)-over)
	e.countJobs("stored", due+over)
	e.countJobs("deferred", len(jobs)-len(leased)-due)
	if !handed || due > 0 {
		// Rows left unleased (or leased while the engine closed, until it
		// restarts) wait for the pollers.
		e.backlog.Store(true)
		e.kickPoller()
	}
	return n, nil
}

func (e *Engine) countJobs(path string, n int) {
	if e.cfg.Metrics != nil && n > 0 {
		e.cfg.Metrics.Jobs(path, n)
	}
}

// hand gives leased jobs to the dispatcher; what it will not hold goes back
// to the database for the pollers. It returns how many went back, and false
// once closed.
func (e *Engine) hand(jobs []Job) (int, bool) {
	e.heldMu.Lock()
	for _, j := range jobs {
		e.held[j.ID] = struct{}{}
	}
	e.heldMu.Unlock()
	overflow, ok := e.disp.push(jobs)
	if !ok {
		e.forget(jobs)
		return 0, false
	}
	if len(overflow) > 0 {
		e.backlog.Store(true)
		// A publisher racing with Close may find results closed: its rows
		// then stay leased to this node, which takes them back on restart.
		e.resMu.RLock()
		if !e.resClosed {
			for _, j := range overflow {
				e.results <- Result{Job: j, Outcome: OutcomeRelease}
			}
		}
		e.resMu.RUnlock()
	}
	return len(overflow), true
}

// forget drops jobs from the held set once their results are written.
func (e *Engine) forget(jobs []Job) {
	e.heldMu.Lock()
	for _, j := range jobs {
		delete(e.held, j.ID)
	}
	e.heldMu.Unlock()
}

// renew extends this node's leases while their jobs wait in memory.
func (e *Engine) renew(ctx context.Context) {
	defer e.loops.Done()
	t := time.NewTicker(e.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.heldMu.Lock()
		ids := make([]string, 0, len(e.held))
		for id := range e.held {
			ids = append(ids, id)
		}
		e.heldMu.Unlock()
		if _, err := e.store.RenewLeases(ctx, e.cfg.NodeID, e.now().Add(e.cfg.Lease), ids); err != nil && ctx.Err() == nil {
			e.log.Warn("renewing delivery leases failed", "err", err)
		}
	}
}

func (e *Engine) kickPoller() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *Engine) work() {
	defer e.workers.Done()
	for {
		job, ok := e.disp.next()
		if !ok {
			return
		}
		res := e.attempt(job)
		drained := e.disp.done(job.WebhookID, res.StatusCode != 0)
		e.results <- res
		if drained || e.backlog.Load() && e.disp.room() >= e.cfg.Capacity/2 {
			e.kickPoller()
		}
	}
}

// poll claims due rows (retries, rows of a crashed node, rows that found no
// room in memory) whenever there is room.
func (e *Engine) poll(ctx context.Context) {
	defer e.loops.Done()
	t := time.NewTicker(e.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.kick:
		}
		for ctx.Err() == nil {
			room := e.disp.room()
			if room <= 0 {
				break
			}
			limit := min(room, 500)
			busy, stalled := e.disp.saturated()
			lease := Lease{Owner: e.cfg.NodeID, Until: e.now().Add(e.cfg.Lease), Defer: e.cfg.Defer, DeferFor: e.disp.deferFor}
			jobs, err := e.store.Claim(ctx, lease, limit, busy, stalled)
			if err != nil {
				if ctx.Err() == nil {
					e.log.Warn("claiming due deliveries failed; will retry", "err", err)
				}
				break
			}
			e.countJobs("claimed", len(jobs))
			if len(jobs) > 0 {
				if _, ok := e.hand(jobs); !ok {
					return // closing: the rows stay leased to this node until it restarts
				}
			}
			if len(jobs) < limit {
				e.backlog.Store(false)
				break
			}
			e.backlog.Store(true)
		}
	}
}

// writeResults writes results in batches; a failed write is retried, since
// dropping it would only lead to a redelivery once the lease ends.
func (e *Engine) writeResults() {
	defer e.writer.Done()
	batch := make([]Result, 0, e.cfg.BatchSize)
	for {
		r, ok := <-e.results
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		var linger <-chan time.Time
	fill:
		for len(batch) < e.cfg.BatchSize {
			select {
			case r, ok := <-e.results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
				continue
			default:
			}
			if linger == nil {
				linger = time.After(e.cfg.ResultLinger)
			}
			select {
			case r, ok := <-e.results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			case <-linger:
				break fill
			}
		}
		e.flush(batch)
	}
}

// flush writes one batch. While the engine runs it retries for as long as
// it takes (a database outage), since a dropped result would leave its row
// leased to this node; once Close has begun it gives up after a while, and
// the rows come back when this node restarts or their leases end.
func (e *Engine) flush(batch []Result) {
	wait := 50 * time.Millisecond
	var deadline time.Time
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		disabled, err := e.store.Complete(ctx, batch, e.cfg.MinFailures, e.cfg.DisableAfter)
		cancel()
		if err == nil {
			jobs := make([]Job, len(batch))
			for i, r := range batch {
				jobs[i] = r.Job
			}
			e.forget(jobs)
			for _, d := range disabled {
				e.webhookDisabled(d)
			}
			return
		}
		if e.closing.Load() {
			if deadline.IsZero() {
				deadline = time.Now().Add(10 * time.Second)
			} else if time.Now().After(deadline) {
				e.log.Error("shutting down without writing delivery results; the rows are delivered again after a restart",
					"err", err, "results", len(batch))
				return
			}
		}
		if try == 1 || try%20 == 0 {
			e.log.Warn("writing delivery results failed; retrying", "err", err, "try", try, "results", len(batch))
		}
		time.Sleep(wait)
		wait = min(wait*2, 5*time.Second)
	}
}

func (e *Engine) prune(ctx context.Context) {
	defer e.loops.Done()
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		cutoff := e.now().Add(-e.cfg.Retention)
		for ctx.Err() == nil {
			n, err := e.store.Prune(ctx, cutoff, 5000)
			if err != nil {
				if ctx.Err() == nil {
					e.log.Warn("pruning old deliveries failed", "err", err)
				}
				break
			}
			if n > 0 {
				e.log.Debug("pruned delivered and failed events", "count", n, "before", cutoff)
			}
			if n < 5000 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stats returns the outbox depth.
func (e *Engine) Stats(ctx context.Context) (Stats, error) { return e.store.OutboxStats(ctx) }

// Events API --------------------------------------------------------------

// ListEvents lists a webhook's events, newest first.
func (e *Engine) ListEvents(ctx context.Context, q ListQuery) ([]EventItem, string, error) {
	switch q.Status {
	case "", StatusPending, StatusDelivered, StatusFailed:
	default:
		return nil, "", errs.E(errs.Invalid, "status must be one of pending, delivered, failed")
	}
	return e.store.ListEvents(ctx, q)
}

// GetEvent returns one event with its attempts.
func (e *Engine) GetEvent(ctx context.Context, clientID int64, id string) (EventItem, error) {
	return e.store.GetEvent(ctx, clientID, id)
}

// Retry queues one event again now, with a fresh retry budget.
func (e *Engine) Retry(ctx context.Context, clientID int64, id string) (EventItem, error) {
	if _, err := e.store.Requeue(ctx, clientID, id); err != nil {
		return EventItem{}, err
	}
	e.kickPoller()
	return e.store.GetEvent(ctx, clientID, id)
}

// Recover queues again every failed event of a webhook since a time.
func (e *Engine) Recover(ctx context.Context, clientID int64, webhookID string, since time.Time) (int64, error) {
	n, err := e.store.Recover(ctx, clientID, webhookID, since)
	if err == nil && n > 0 {
		e.kickPoller()
	}
	return n, err
}

// Test sends a webhook.test event to one webhook through the real pipeline.
func (e *Engine) Test(ctx context.Context, clientID int64, webhookID string) (string, error) {
	wh, err := e.hooks.src.ForDelivery(ctx, webhookID)
	if err != nil || wh.ClientID != clientID {
		return "", errs.E(errs.NotFound, "webhook not found")
	}
	if !wh.Active {
		return "", errs.E(errs.Conflict, "webhook is disabled: re-enable it with PATCH {\"active\": true} first")
	}
	now := e.now()
	id := e.ids.New(now)
	payload, err := events.BuildPayload(id, clientID, "", wh.PhoneNumber, events.Inbound{
		Type: events.TypeWebhookTest, Kind: "test", Content: "wagate test event", Timestamp: now,
		Metadata: map[string]any{"webhook_id": webhookID},
	})
	if err != nil {
		return "", err
	}
	_, err = e.ingest(ctx, Target{ClientID: clientID, WebhookID: webhookID},
		[]NewEvent{{ID: id, Type: events.TypeWebhookTest, Payload: payload, CreatedAt: now}})
	return id, err
}

// errWebhookGone marks a job whose webhook no longer exists.
var errWebhookGone = errors.New("webhook deleted")
