package app_test

import (
	"bytes"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/wagate/wagate/internal/app"
	"github.com/wagate/wagate/internal/testdb"
)

// scrape is one parsed /metrics answer.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, m *app.Main, token string) scrape {
	t.Helper()
	r := apiClient{t: t, base: m.URL(), token: token}.do("GET", "/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, r.Body)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include want, and whether there is exactly one such series.
func (s scrape) value(name string, want map[string]string) (float64, bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	var found []*dto.Metric
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			if labels[k] != v {
				ok = false
			}
		}
		if ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		return 0, false
	}
	m := found[0]
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount()), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

func (s scrape) expect(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := s.value(name, labels)
	if !ok {
		t.Errorf("%s%v: no single series", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestMetricsEndpoint starts the real server, makes requests and checks
// what /metrics says about them, on both databases.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			m := startServer(t, dialect, nil)
			c, _ := newClient(t, m, "Acme")
			for i := 0; i < 3; i++ {
				if r := c.do("GET", "/api/me", nil); r.Status != 200 {
					t.Fatalf("GET /api/me: %d", r.Status)
				}
			}
			c.do("GET", "/api/admin/clients/12345", nil) // client token on an admin route: 401
			c.do("GET", "/no/such/page", nil)
			c.do("BREW", "/api/me", nil)

			s := scrapeMetrics(t, m, "")
			s.expect(t, "wagate_http_requests_total", map[string]string{"route": "/api/me", "method": "GET", "status": "200"}, 3)
			s.expect(t, "wagate_http_requests_total", map[string]string{"route": "/api/admin/clients", "method": "POST", "status": "201"}, 1)
			s.expect(t, "wagate_http_requests_total", map[string]string{"route": "/api/admin/clients/{id}", "method": "GET", "status": "401"}, 1)
			s.expect(t, "wagate_http_requests_total", map[string]string{"route": "unmatched", "method": "GET", "status": "404"}, 1)
			s.expect(t, "wagate_http_request_duration_seconds", map[string]string{"route": "/api/me", "method": "GET"}, 3)
			// Raw paths and invented methods never become label values.
			for _, mt := range s["wagate_http_requests_total"].GetMetric() {
				for _, l := range mt.GetLabel() {
					if strings.Contains(l.GetValue(), "12345") || strings.Contains(l.GetValue(), "no/such") || l.GetValue() == "BREW" {
						t.Errorf("unbounded label value %s=%q", l.GetName(), l.GetValue())
					}
				}
			}

			ver, commit, _ := app.BuildInfo()
			s.expect(t, "wagate_build_info", map[string]string{"version": ver, "commit": commit}, 1)
			for _, st := range []string{"connected", "reconnecting", "disconnected", "logged_out"} {
				for _, eng := range []string{"whatsmeow", "sandbox"} {
					s.expect(t, "wagate_sessions", map[string]string{"status": st, "engine": eng}, 0)
				}
			}
			for _, st := range []string{"pending", "due", "failed"} {
				s.expect(t, "wagate_outbox_events", map[string]string{"status": st}, 0)
			}
			s.expect(t, "wagate_outbox_oldest_due_age_seconds", nil, 0)
			for _, oc := range []string{"delivered", "retry", "failed"} {
				s.expect(t, "wagate_webhook_attempt_duration_seconds", map[string]string{"outcome": oc}, 0)
			}
			s.expect(t, "wagate_webhook_delivery_latency_seconds", nil, 0)
			for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_start_time_seconds"} {
				if s[name] == nil {
					t.Errorf("%s missing: runtime and process collectors not registered", name)
				}
			}
		})
	}
}

// TestMetricsToken: with WAGATE_METRICS_TOKEN set, /metrics needs it.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	const token = "metrics-token-0123456789"
	m := startServer(t, "sqlite", map[string]string{"WAGATE_METRICS_TOKEN": token})
	anon := apiClient{t: t, base: m.URL()}
	expectError(t, anon.do("GET", "/metrics", nil), http.StatusUnauthorized, "UNAUTHORIZED")
	expectError(t, anon.do("GET", "/metrics", nil, "Authorization", "Bearer wrong"), http.StatusUnauthorized, "UNAUTHORIZED")
	expectError(t, anon.do("GET", "/metrics", nil, "Authorization", "Basic "+token), http.StatusUnauthorized, "UNAUTHORIZED")
	expectError(t, apiClient{t: t, base: m.URL(), token: m.AdminToken}.do("GET", "/metrics", nil), http.StatusUnauthorized, "UNAUTHORIZED")
	s := scrapeMetrics(t, m, token)
	if s["wagate_build_info"] == nil {
		t.Fatal("wagate_build_info missing with the right token")
	}
	// Two nodes in one process keep separate registries: this node has
	// seen none of the requests of the others.
	if _, ok := s.value("wagate_http_requests_total", map[string]string{"route": "/api/me"}); ok {
		t.Error("series from another node's registry")
	}
}

// TestMetricsPipeline follows messages from a sandbox phone to a webhook
// and checks the delivery, inbound and session metrics count them exactly;
// then checks that every metric docs/alerts.yml names exists.
func TestMetricsPipeline(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			m := startServer(t, dialect, pipelineEnv(nil))
			c, _ := newClient(t, m, "Acme")
			rc := newReceiver(t, nil)
			hookID, _ := registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "max_retries": 3})
			session := linkedSandbox(t, c, "metrics-user", "5511988887777")
			const n = 7
			var msgs []map[string]any
			for i := 0; i < n; i++ {
				msgs = append(msgs, textMsg("5511999999999", "hello "+itoa(int64(i))))
			}
			inject(t, c, session, msgs...)
			waitFor(t, "deliveries", 10*time.Second, func() bool { return len(rc.deliveries()) >= n })

			// Attempts are counted right after the receiver answers, and the
			// gauges read from the database are cached for a couple of
			// seconds: poll.
			var s scrape
			waitFor(t, "metrics to catch up", 10*time.Second, func() bool {
				s = scrapeMetrics(t, m, "")
				d, _ := s.value("wagate_webhook_deliveries_total", map[string]string{"webhook_id": hookID, "outcome": "delivered"})
				conn, _ := s.value("wagate_sessions", map[string]string{"status": "connected", "engine": "sandbox"})
				pending, _ := s.value("wagate_outbox_events", map[string]string{"status": "pending"})
				return d >= n && conn == 1 && pending == 0
			})
			time.Sleep(100 * time.Millisecond) // nothing more may arrive
			s = scrapeMetrics(t, m, "")
			s.expect(t, "wagate_webhook_deliveries_total", map[string]string{"webhook_id": hookID, "outcome": "delivered"}, n)
			if _, ok := s.value("wagate_webhook_deliveries_total", map[string]string{"outcome": "retry"}); ok {
				t.Error("retries counted, but every attempt succeeded")
			}
			s.expect(t, "wagate_inbound_events_total", map[string]string{"type": "message"}, n)
			// A few events at a time always find room: all handed over in memory.
			s.expect(t, "wagate_delivery_jobs_total", map[string]string{"path": "handed"}, n)
			s.expect(t, "wagate_delivery_jobs_total", map[string]string{"path": "claimed"}, 0)
			s.expect(t, "wagate_webhook_attempt_duration_seconds", map[string]string{"outcome": "delivered"}, n)
			s.expect(t, "wagate_webhook_delivery_latency_seconds", nil, n)
			s.expect(t, "wagate_sessions", map[string]string{"status": "connected", "engine": "sandbox"}, 1)
			s.expect(t, "wagate_outbox_events", map[string]string{"status": "failed"}, 0)
			s.expect(t, "wagate_outbox_events", map[string]string{"status": "due"}, 0)
			s.expect(t, "wagate_outbox_oldest_due_age_seconds", nil, 0)
			s.expect(t, "wagate_http_requests_total", map[string]string{"route": "/api/whatsapp/sessions/{id}/sandbox/messages", "method": "POST", "status": "202"}, 1)

			checkAlertsFile(t, s)
		})
	}
}

// checkAlertsFile parses docs/alerts.yml as Prometheus rule groups and
// checks that every wagate_ metric an expression names is exported.
func checkAlertsFile(t *testing.T, s scrape) {
	t.Helper()
	b, err := os.ReadFile("../../docs/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key would silently do nothing in Prometheus
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("docs/alerts.yml: %v", err)
	}
	metricRe := regexp.MustCompile(`\b(wagate_[a-z_]+|go_[a-z_]+|process_[a-z_]+|up)\b`)
	n := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.Labels["severity"] == "" {
				t.Errorf("%s/%s: alert, expr, labels.severity, annotations.summary and .description are required", g.Name, r.Alert)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for: %v", r.Alert, err)
				}
			}
			for _, name := range metricRe.FindAllString(r.Expr, -1) {
				if name == "up" {
					continue
				}
				fam := name
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if base, ok := strings.CutSuffix(name, suf); ok && s[base] != nil && s[base].GetType() == dto.MetricType_HISTOGRAM {
						fam = base
					}
				}
				if s[fam] == nil {
					t.Errorf("alert %s names %s, which /metrics does not export", r.Alert, name)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("docs/alerts.yml has %d rules, want at least 4", n)
	}
}
