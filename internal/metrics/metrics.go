// Package metrics is wagate's Prometheus instrumentation: the delivery
// engine's counters and histograms, HTTP request metrics, outbox and session
// gauges read at scrape time, and the /metrics handler.
//
// Every Metrics owns its own registry (never the global default one), so two
// nodes started in one process, as the tests do, never share series.
package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wagate/wagate/internal/delivery"
)

// SessionCount is the number of sessions of one engine in one status.
type SessionCount struct {
	Engine string
	Status string
	Count  int64
}

// Options configures New. The funcs are optional: a gauge whose source is
// nil is not exported.
type Options struct {
	Version string
	Commit  string
	Log     *slog.Logger
	// OutboxStats measures the delivery backlog (delivery.Engine.Stats).
	OutboxStats func(ctx context.Context) (delivery.Stats, error)
	// Sessions counts sessions by engine and status.
	Sessions func(ctx context.Context) ([]SessionCount, error)
	// Engines and Statuses are always exported for the sessions gauge, at 0
	// when no session has them, so alerts see a series rather than nothing.
	Engines  []string
	Statuses []string
	// CacheTTL bounds how often a scrape reaches the database; default 2 s.
	CacheTTL time.Duration
	// Now is the clock of the cache; default time.Now.
	Now func() time.Time
}

// Metrics holds one node's collectors. It implements delivery.Metrics, and
// ObserveRequest has the signature of httpapi.RequestObserver.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	deliveries   *prometheus.CounterVec
	attemptDur   *prometheus.HistogramVec
	latency      prometheus.Histogram
	inbound      *prometheus.CounterVec
	jobs         *prometheus.CounterVec
	disabled     *prometheus.CounterVec
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
}

var _ delivery.Metrics = (*Metrics)(nil)

// Buckets of the delivery latency: from 1 ms (handed to a worker at once)
// to a day (the end of the default retry schedule).
var latencyBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
	60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
}

// Buckets of one attempt: up to the longest timeout people configure.
var attemptBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60}

// New builds the collectors and registers them, with the Go runtime and
// process collectors, on a fresh registry.
func New(o Options) *Metrics {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: o.Log,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_webhook_deliveries_total",
			Help: "Webhook delivery attempts by webhook and outcome (delivered, retry, failed).",
		}, []string{"webhook_id", "outcome"}),
		attemptDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wagate_webhook_attempt_duration_seconds",
			Help:    "Duration of one webhook delivery attempt, by outcome.",
			Buckets: attemptBuckets,
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wagate_webhook_delivery_latency_seconds",
			Help:    "Time from an event's creation to its successful delivery, retries included.",
			Buckets: latencyBuckets,
		}),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_inbound_events_total",
			Help: "Newly stored inbound events by type (duplicates redelivered by WhatsApp are not counted).",
		}, []string{"type"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_delivery_jobs_total",
			Help: "Delivery jobs by the path they took to a worker: handed (leased when stored, handed over in memory), stored (left due for the pollers: no room in memory), deferred (behind a stalled webhook), claimed (by a poller).",
		}, []string{"path"}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_webhooks_disabled_total",
			Help: "Webhooks disabled automatically, by reason class (gone, failing, other).",
		}, []string{"reason_class"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_http_requests_total",
			Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wagate_http_request_duration_seconds",
			Help:    "HTTP request duration by route pattern and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
	}
	ver, commit := o.Version, o.Commit
	if ver == "" {
		ver = "dev"
	}
	if commit == "" {
		commit = "unknown"
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "wagate_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": ver, "commit": commit},
	})
	buildInfo.Set(1)
	// Outcomes and classes are known in advance: create them at 0 so that
	// rate() and alerts work from the first scrape.
	for _, oc := range []string{"delivered", "retry", "failed"} {
		m.attemptDur.WithLabelValues(oc)
	}
	for _, c := range []string{"gone", "failing", "other"} {
		m.disabled.WithLabelValues(c)
	}
	for _, p := range []string{"handed", "stored", "deferred", "claimed"} {
		m.jobs.WithLabelValues(p)
	}

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo, m.deliveries, m.attemptDur, m.latency, m.inbound, m.jobs, m.disabled,
		m.httpRequests, m.httpDuration,
		newStateCollector(o),
	)
	return m
}

// Registry is where every collector of this node is registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Attempt implements delivery.Metrics.
func (m *Metrics) Attempt(webhookID, outcome string, d time.Duration) {
	m.deliveries.WithLabelValues(webhookID, outcome).Inc()
	m.attemptDur.WithLabelValues(outcome).Observe(d.Seconds())
}

// Delivered implements delivery.Metrics.
func (m *Metrics) Delivered(latency time.Duration) {
	if latency < 0 { // clocks of two nodes may disagree a little
		latency = 0
	}
	m.latency.Observe(latency.Seconds())
}

// WebhookDisabled implements delivery.Metrics. Reasons are free text (they
// carry the last error), so only their class becomes a label.
func (m *Metrics) WebhookDisabled(reason string) {
	m.disabled.WithLabelValues(ReasonClass(reason)).Inc()
}

// Inbound implements delivery.Metrics.
func (m *Metrics) Inbound(eventType string, n int) {
	if n > 0 {
		m.inbound.WithLabelValues(eventType).Add(float64(n))
	}
}

// Jobs implements delivery.Metrics.
func (m *Metrics) Jobs(path string, n int) {
	if n > 0 {
		m.jobs.WithLabelValues(path).Add(float64(n))
	}
}

// ReasonClass maps a disable reason to gone, failing or other.
func ReasonClass(reason string) string {
	r := strings.ToLower(reason)
	// The failing reason quotes the last error, which may say anything:
	// its prefix decides first.
	switch {
	case strings.HasPrefix(r, "failing"):
		return "failing"
	case strings.Contains(r, "410") || strings.Contains(r, "gone"):
		return "gone"
	}
	return "other"
}

// ObserveRequest records one finished HTTP request. pattern is the
// ServeMux pattern ("GET /api/webhooks/{id}"), never the raw path, so the
// label set stays bounded; its method prefix is dropped as the method has
// its own label.
func (m *Metrics) ObserveRequest(pattern, method string, status int, d time.Duration) {
	route := pattern
	if i := strings.IndexByte(route, ' '); i >= 0 {
		route = strings.TrimSpace(route[i+1:])
	}
	if route == "" {
		route = "unmatched"
	}
	if status == 0 { // the handler wrote nothing: net/http sends 200
		status = http.StatusOK
	}
	method = normMethod(method)
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// normMethod keeps the method label bounded: anything a client invents is "other".
func normMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// Handler serves the registry in the Prometheus exposition format. When
// token is set, requests must carry "Authorization: Bearer <token>".
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // counts the handler's own errors
	})
	if token == "" {
		return h
	}
	// Comparing hashes keeps the comparison constant-time whatever the lengths.
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || got == "" {
			unauthorized(w, "Token not found")
			return
		}
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			unauthorized(w, "Invalid token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// unauthorized answers with the API's error envelope.
func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"statusCode": http.StatusUnauthorized,
		"message":    msg,
		"error":      http.StatusText(http.StatusUnauthorized),
		"code":       "UNAUTHORIZED",
	})
}

// stateCollector exports gauges read from the database at scrape time. The
// readings are cached for CacheTTL so that frequent or concurrent scrapes
// (several Prometheus servers, a curl loop) cost at most one query per TTL.
type stateCollector struct {
	o      Options
	outbox *prometheus.Desc
	oldest *prometheus.Desc
	sess   *prometheus.Desc
	errs   *prometheus.Desc

	mu         sync.Mutex
	at         time.Time
	stats      delivery.Stats
	statsErr   error
	sessions   []SessionCount
	sessionErr error
	// Failed readings by source. Counted here rather than in a registered
	// CounterVec: the registry collects collectors concurrently, so a
	// separate counter could be gathered before this scrape's failure.
	outboxErrors, sessionErrors uint64
}

func newStateCollector(o Options) *stateCollector {
	if o.CacheTTL <= 0 {
		o.CacheTTL = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &stateCollector{
		o: o,
		outbox: prometheus.NewDesc("wagate_outbox_events",
			"Outbox rows by status: pending (waiting or in flight), due (pending and due now), failed (retries spent).",
			[]string{"status"}, nil),
		oldest: prometheus.NewDesc("wagate_outbox_oldest_due_age_seconds",
			"How long the oldest due pending row has been due; 0 when none is due.", nil, nil),
		sess: prometheus.NewDesc("wagate_sessions",
			"WhatsApp sessions by status and engine.", []string{"status", "engine"}, nil),
		errs: prometheus.NewDesc("wagate_metrics_scrape_errors_total",
			"Failures to read a scrape-time gauge from the database, by source (outbox, sessions).", []string{"source"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.errs
	if c.o.OutboxStats != nil {
		ch <- c.outbox
		ch <- c.oldest
	}
	if c.o.Sessions != nil {
		ch <- c.sess
	}
}

// refresh reads the database unless the cached reading is fresh. The lock
// is held during the queries, so concurrent scrapes wait for one reading.
func (c *stateCollector) refresh() {
	now := c.o.Now()
	if !c.at.IsZero() && now.Sub(c.at) < c.o.CacheTTL {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c.o.OutboxStats != nil {
		c.stats, c.statsErr = c.o.OutboxStats(ctx)
		if c.statsErr != nil {
			c.outboxErrors++
			c.o.Log.Warn("metrics: read outbox stats", "err", c.statsErr)
		}
	}
	if c.o.Sessions != nil {
		c.sessions, c.sessionErr = c.o.Sessions(ctx)
		if c.sessionErr != nil {
			c.sessionErrors++
			c.o.Log.Warn("metrics: count sessions", "err", c.sessionErr)
		}
	}
	c.at = now
}

// Collect exports the cached readings; a failed reading exports nothing
// for that source (and counts in wagate_metrics_scrape_errors_total), so
// alerts on the gauges see no data rather than a false zero.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refresh()
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(c.outboxErrors), "outbox")
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(c.sessionErrors), "sessions")
	if c.o.OutboxStats != nil && c.statsErr == nil {
		st := c.stats
		ch <- prometheus.MustNewConstMetric(c.outbox, prometheus.GaugeValue, float64(st.Pending), "pending")
		ch <- prometheus.MustNewConstMetric(c.outbox, prometheus.GaugeValue, float64(st.Due), "due")
		ch <- prometheus.MustNewConstMetric(c.outbox, prometheus.GaugeValue, float64(st.Failed), "failed")
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, st.OldestDueAge.Seconds())
	}
	if c.o.Sessions != nil && c.sessionErr == nil {
		type key struct{ status, engine string }
		counts := map[key]float64{}
		for _, e := range c.o.Engines {
			for _, s := range c.o.Statuses {
				counts[key{s, e}] = 0
			}
		}
		for _, sc := range c.sessions {
			counts[key{sc.Status, sc.Engine}] += float64(sc.Count)
		}
		for k, v := range counts {
			ch <- prometheus.MustNewConstMetric(c.sess, prometheus.GaugeValue, v, k.status, k.engine)
		}
	}
}

// CountSessions is the Sessions source for wagate's database; the query is
// the same on SQLite and PostgreSQL.
func CountSessions(db *sql.DB) func(ctx context.Context) ([]SessionCount, error) {
	return func(ctx context.Context) ([]SessionCount, error) {
		rows, err := db.QueryContext(ctx, `SELECT engine, session_status, COUNT(*) FROM whatsapp_connections GROUP BY 1, 2`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []SessionCount
		for rows.Next() {
			var sc SessionCount
			if err := rows.Scan(&sc.Engine, &sc.Status, &sc.Count); err != nil {
				return nil, err
			}
			out = append(out, sc)
		}
		return out, rows.Err()
	}
}
