package reliability_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// hungReceiver accepts requests and never answers; it counts how many are
// open at once.
type hungReceiver struct {
	srv  *httptest.Server
	stop chan struct{}

	mu       sync.Mutex
	open     int
	maxOpen  int
	requests int
}

func newHungReceiver(t *testing.T) *hungReceiver {
	t.Helper()
	h := &hungReceiver{stop: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h.mu.Lock()
		h.open++
		h.requests++
		h.maxOpen = max(h.maxOpen, h.open)
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			h.open--
			h.mu.Unlock()
		}()
		// Until wagate gives up (its timeout closes the connection) or
		// the test ends.
		select {
		case <-r.Context().Done():
		case <-h.stop:
		}
	}))
	t.Cleanup(func() {
		close(h.stop)
		h.srv.Close()
	})
	return h
}

func (h *hungReceiver) stats() (open, maxOpen, requests int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.open, h.maxOpen, h.requests
}

// TestHungReceiverIsolated: one webhook's receiver hangs until wagate's
// timeout, another webhook of the same client is healthy. The healthy one
// gets every event promptly, and the hung one never holds more than
// WAGATE_WEBHOOK_MAX_IN_FLIGHT deliveries. (The throughput ratio is a
// benchmark figure of the load tool, not asserted here.)
func TestHungReceiverIsolated(t *testing.T) {
	t.Parallel()
	const workers, perHook, events = 8, 3, 200
	timeout := 2 * time.Second
	m := startServer(t, baseEnv(t, map[string]string{
		"WAGATE_WORKERS":               strconv.Itoa(workers),
		"WAGATE_WEBHOOK_MAX_IN_FLIGHT": strconv.Itoa(perHook),
		"WAGATE_WEBHOOK_TIMEOUT":       timeout.String(),
		"WAGATE_RETRY_SCHEDULE":        "1m",
	}))
	hung := newHungReceiver(t)
	healthy := newCountingReceiver(t)
	c, _ := newClient(t, m.URL(), m.AdminToken, "hung")
	hungID := registerWebhook(t, c, map[string]any{"webhook_url": hung.srv.URL + "/hook", "max_retries": 1})
	registerWebhook(t, c, map[string]any{"webhook_url": healthy.url(), "max_retries": 1})
	session := linkedSandbox(t, c, "u1", "5511999999999")

	start := time.Now()
	var ids []string
	for b := range events / 50 {
		batch := make([]string, 50)
		for i := range batch {
			batch[i] = fmt.Sprintf("h-%d-%d", b, i)
		}
		inject(t, c, session, batch...)
		ids = append(ids, batch...)
	}
	// Were the hung receiver allowed to take every worker, each of its
	// deliveries would hold one for the whole timeout: the healthy
	// receiver would wait about events×timeout/workers = 50 s. A quarter
	// of that is generous for a loaded machine and still proves the point.
	blocked := time.Duration(events) * timeout / workers
	waitFor(t, "the healthy receiver's events", blocked/4, func() bool { return healthy.missing(ids) == 0 })
	took := time.Since(start)
	_, maxOpen, requests := hung.stats()
	t.Logf("healthy receiver got %d events in %v; the hung one had %d requests, at most %d at once", events, took.Round(time.Millisecond), requests, maxOpen)
	if maxOpen > perHook {
		t.Errorf("the hung receiver had %d deliveries open at once; WAGATE_WEBHOOK_MAX_IN_FLIGHT is %d", maxOpen, perHook)
	}
	if maxOpen == 0 {
		t.Error("the hung receiver was never called")
	}

	// The hung deliveries end as timeouts, and keep their budget.
	waitFor(t, "a timed-out attempt recorded", 4*timeout, func() bool {
		for _, ev := range listEvents(t, c, hungID, "") {
			if ev["attempts"].(float64) >= 1 {
				return true
			}
		}
		return false
	})
	for _, ev := range listEvents(t, c, hungID, "") {
		if ev["status"] == "failed" {
			t.Fatalf("a hung delivery failed with retries left: %v", ev)
		}
		if ev["attempts"].(float64) >= 1 {
			full := getJSON(t, c, "/api/webhooks/events/"+ev["id"].(string))
			a := full["attempt_log"].([]any)[0].(map[string]any)
			if a["status_code"].(float64) != 0 || a["error"] == "" {
				t.Errorf("hung attempt logged as %v", a)
			}
			if d := time.Duration(a["duration_ms"].(float64)) * time.Millisecond; d < timeout-100*time.Millisecond || d > timeout+2*time.Second {
				t.Errorf("hung attempt took %v; the timeout is %v", d, timeout)
			}
		}
	}
	open, _, _ := hung.stats()
	if open > perHook {
		t.Errorf("%d deliveries open on the hung receiver", open)
	}
}
