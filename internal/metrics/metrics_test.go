package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/metrics"
)

func scrape(t *testing.T, h http.Handler, auth string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestReasonClass(t *testing.T) {
	for reason, want := range map[string]string{
		"endpoint answered 410 Gone":                     "gone",
		"failing for over 24h0m0s (last error: timeout)": "failing",
		"something new":                                  "other",
		"":                                               "other",
		"Failing for over 1h (last error: 410 in the body?)": "failing",
		"HTTP 410": "gone",
	} {
		if got := metrics.ReasonClass(reason); got != want {
			t.Errorf("ReasonClass(%q) = %q, want %q", reason, got, want)
		}
	}
}

func TestDeliveryAndHTTPMetrics(t *testing.T) {
	m := metrics.New(metrics.Options{Version: "v1.2.3", Commit: "abc"})
	m.Attempt("wh1", "delivered", 20*time.Millisecond)
	m.Attempt("wh1", "retry", time.Second)
	m.Attempt("wh2", "delivered", 5*time.Millisecond)
	m.Delivered(3 * time.Second)
	m.Delivered(-time.Second) // clock skew between nodes is not an error
	m.Inbound("message", 4)
	m.Inbound("message", 0)
	m.WebhookDisabled("endpoint answered 410 Gone")
	m.ObserveRequest("GET /api/webhooks/{id}", "GET", 200, time.Millisecond)
	m.ObserveRequest("", "PROPFIND", 404, time.Millisecond)
	m.ObserveRequest("/api/", "DELETE", 0, time.Millisecond)

	const want = `
# HELP wagate_webhook_deliveries_total Webhook delivery attempts by webhook and outcome (delivered, retry, failed).
# TYPE wagate_webhook_deliveries_total counter
wagate_webhook_deliveries_total{outcome="delivered",webhook_id="wh1"} 1
wagate_webhook_deliveries_total{outcome="delivered",webhook_id="wh2"} 1
wagate_webhook_deliveries_total{outcome="retry",webhook_id="wh1"} 1
# HELP wagate_inbound_events_total Newly stored inbound events by type (duplicates redelivered by WhatsApp are not counted).
# TYPE wagate_inbound_events_total counter
wagate_inbound_events_total{type="message"} 4
# HELP wagate_webhooks_disabled_total Webhooks disabled automatically, by reason class (gone, failing, other).
# TYPE wagate_webhooks_disabled_total counter
wagate_webhooks_disabled_total{reason_class="failing"} 0
wagate_webhooks_disabled_total{reason_class="gone"} 1
wagate_webhooks_disabled_total{reason_class="other"} 0
# HELP wagate_http_requests_total HTTP requests by route pattern, method and status.
# TYPE wagate_http_requests_total counter
wagate_http_requests_total{method="DELETE",route="/api/",status="200"} 1
wagate_http_requests_total{method="GET",route="/api/webhooks/{id}",status="200"} 1
wagate_http_requests_total{method="other",route="unmatched",status="404"} 1
# HELP wagate_build_info Always 1; the labels name the running build.
# TYPE wagate_build_info gauge
wagate_build_info{commit="abc",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"wagate_webhook_deliveries_total", "wagate_inbound_events_total", "wagate_webhooks_disabled_total",
		"wagate_http_requests_total", "wagate_build_info"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "wagate_webhook_delivery_latency_seconds"); n != 1 {
		t.Fatalf("latency histogram series: %d", n)
	}
}

// TestStateGaugesCached: the database is read at most once per TTL, even
// under concurrent scrapes, and a failed reading drops the gauges and
// counts an error instead of exporting a false zero.
func TestStateGaugesCached(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	var statsCalls, sessCalls atomic.Int32
	var fail atomic.Bool
	m := metrics.New(metrics.Options{
		Now:      func() time.Time { return time.Unix(0, now.Load()) },
		CacheTTL: 2 * time.Second,
		OutboxStats: func(ctx context.Context) (delivery.Stats, error) {
			statsCalls.Add(1)
			if fail.Load() {
				return delivery.Stats{}, errors.New("database is down")
			}
			return delivery.Stats{Pending: 5, Due: 3, Failed: 1, OldestDueAge: 1500 * time.Millisecond}, nil
		},
		Sessions: func(ctx context.Context) ([]metrics.SessionCount, error) {
			sessCalls.Add(1)
			return []metrics.SessionCount{{Engine: "sandbox", Status: "connected", Count: 2}, {Engine: "custom", Status: "weird", Count: 1}}, nil
		},
		Engines:  []string{"whatsmeow", "sandbox"},
		Statuses: []string{"connected", "disconnected"},
	})
	h := m.Handler("")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scrape(t, h, "")
		}()
	}
	wg.Wait()
	if statsCalls.Load() != 1 || sessCalls.Load() != 1 {
		t.Fatalf("8 scrapes within the TTL read the database %d/%d times, want 1", statsCalls.Load(), sessCalls.Load())
	}
	_, body := scrape(t, h, "")
	for _, want := range []string{
		`wagate_outbox_events{status="pending"} 5`,
		`wagate_outbox_events{status="due"} 3`,
		`wagate_outbox_events{status="failed"} 1`,
		`wagate_outbox_oldest_due_age_seconds 1.5`,
		`wagate_sessions{engine="sandbox",status="connected"} 2`,
		`wagate_sessions{engine="whatsmeow",status="connected"} 0`,
		`wagate_sessions{engine="whatsmeow",status="disconnected"} 0`,
		`wagate_sessions{engine="custom",status="weird"} 1`,
		`wagate_metrics_scrape_errors_total{source="outbox"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}

	fail.Store(true)
	now.Add(int64(3 * time.Second))
	code, body := scrape(t, h, "")
	if code != 200 {
		t.Fatalf("a failed reading broke the scrape: %d", code)
	}
	if statsCalls.Load() != 2 {
		t.Fatalf("stats read %d times after the TTL, want 2", statsCalls.Load())
	}
	if strings.Contains(body, "wagate_outbox_events{") || !strings.Contains(body, `wagate_metrics_scrape_errors_total{source="outbox"} 1`) {
		t.Errorf("failed reading: gauges should be absent and the error counted:\n%s", body)
	}
	if !strings.Contains(body, `wagate_sessions{engine="sandbox",status="connected"} 2`) {
		t.Error("one failing source must not hide the other")
	}
}

func TestHandlerToken(t *testing.T) {
	m := metrics.New(metrics.Options{})
	h := m.Handler("s3cret-token")
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Basic s3cret-token", "bearer s3cret-token", "Bearer s3cret-token2"} {
		code, body := scrape(t, h, auth)
		if code != http.StatusUnauthorized || !strings.Contains(body, `"code":"UNAUTHORIZED"`) {
			t.Errorf("Authorization %q: %d %s", auth, code, body)
		}
	}
	if code, body := scrape(t, h, "Bearer s3cret-token"); code != 200 || !strings.Contains(body, "wagate_build_info") {
		t.Errorf("right token: %d", code)
	}
	if code, _ := scrape(t, m.Handler(""), ""); code != 200 {
		t.Errorf("no token configured: %d", code)
	}
}

// TestRegistriesIndependent: two nodes in one process never share series.
func TestRegistriesIndependent(t *testing.T) {
	a := metrics.New(metrics.Options{})
	b := metrics.New(metrics.Options{})
	a.Inbound("message", 3)
	if n := testutil.CollectAndCount(b.Registry(), "wagate_inbound_events_total"); n != 0 {
		t.Fatalf("b sees a's series: %d", n)
	}
}
