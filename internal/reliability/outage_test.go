package reliability_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// TestReceiverOutage takes two receivers down (connections refused, then
// 503s) while events arrive, and watches the events API throughout: an
// event is marked failed only once its retries are spent, the retries
// follow the schedule, and once the receiver is back everything with
// retries left is delivered, once.
func TestReceiverOutage(t *testing.T) {
	t.Parallel()
	schedule := []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 1200 * time.Millisecond}
	const events, patientRetries, impatientRetries = 40, 8, 2
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			env := baseEnv(t, map[string]string{"WAGATE_RETRY_SCHEDULE": "300ms,600ms,1200ms"})
			if dialect == store.Postgres {
				env["DATABASE_URL"] = testdb.PostgresURL(t)
			}
			m := startServer(t, env)
			c, _ := newClient(t, m.URL(), m.AdminToken, "outage")
			patientRC, impatientRC := newCountingReceiver(t), newCountingReceiver(t)
			// The patient webhook's budget outlasts the outage; the
			// impatient one's does not.
			patient := registerWebhook(t, c, map[string]any{"webhook_url": patientRC.url(), "max_retries": patientRetries})
			impatient := registerWebhook(t, c, map[string]any{"webhook_url": impatientRC.url(), "max_retries": impatientRetries})
			session := linkedSandbox(t, c, "u1", "5511999999999")

			patientRC.down()
			impatientRC.down()
			downAt := time.Now()
			ids := make([]string, events)
			for i := range ids {
				ids[i] = fmt.Sprintf("out-%d", i)
			}
			inject(t, c, session, ids...)

			// Watch the failed lists for the whole test.
			var mu sync.Mutex
			var violations []string
			note := func(v string) {
				mu.Lock()
				violations = append(violations, v)
				mu.Unlock()
			}
			stop := make(chan struct{})
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					failed, err := tryListEvents(c, patient, "failed")
					if err != nil {
						note(err.Error())
						return
					}
					for _, ev := range failed {
						note(fmt.Sprintf("patient event %v failed after %v attempts", ev["id"], ev["attempts"]))
					}
					if failed, err = tryListEvents(c, impatient, "failed"); err != nil {
						note(err.Error())
						return
					}
					for _, ev := range failed {
						if ev["attempts"].(float64) != impatientRetries+1 {
							note(fmt.Sprintf("impatient event %v failed after %v attempts, want %d", ev["id"], ev["attempts"], impatientRetries+1))
						}
					}
				}
			}()
			var once sync.Once
			stopWatching := func() { once.Do(func() { close(stop); <-watched }) }
			defer stopWatching()

			// Refused for 1.5 s, then 503 for 2 s, then up.
			time.Sleep(time.Until(downAt.Add(1500 * time.Millisecond)))
			patientRC.setFailing(true)
			impatientRC.setFailing(true)
			patientRC.up(t)
			impatientRC.up(t)
			time.Sleep(time.Until(downAt.Add(3500 * time.Millisecond)))
			patientRC.setFailing(false)
			impatientRC.setFailing(false)
			upAt := time.Now()

			waitFor(t, "the patient webhook's events delivered", time.Minute, func() bool {
				return len(listEvents(t, c, patient, "delivered")) == events
			})
			waitFor(t, "the impatient webhook's events failed", time.Minute, func() bool {
				return len(listEvents(t, c, impatient, "failed")) == events
			})
			stopWatching()
			mu.Lock()
			for _, v := range violations[:min(len(violations), 10)] {
				t.Error(v)
			}
			mu.Unlock()

			if missing := patientRC.missing(ids); missing != 0 {
				t.Errorf("%d messages never reached the patient receiver", missing)
			}
			if dups, _ := duplicates(patientRC.snapshot()); dups != 0 {
				t.Errorf("%d duplicate deliveries without any crash", dups)
			}
			if got := len(impatientRC.snapshot()); got != 0 {
				t.Errorf("the impatient receiver got %d messages after its events failed", got)
			}

			// Every attempt, as the events API logs it, follows the schedule.
			perEvent, byStatus := map[int]int{}, map[int]int{}
			for _, ev := range listEvents(t, c, patient, "") {
				full := getJSON(t, c, "/api/webhooks/events/"+ev["id"].(string))
				checkAttempts(t, full, schedule, patientRetries, downAt, upAt, true)
				log := full["attempt_log"].([]any)
				perEvent[len(log)]++
				for _, a := range log {
					byStatus[int(a.(map[string]any)["status_code"].(float64))]++
				}
			}
			// The first attempts are refused for sure; when the 503s are met
			// depends on the machine's load, so they are only reported.
			t.Logf("patient webhook: events by attempts %v, attempts by status %v (0: refused)", perEvent, byStatus)
			if byStatus[0] == 0 {
				t.Error("no attempt was refused: the outage was not exercised")
			}
			for _, ev := range listEvents(t, c, impatient, "") {
				full := getJSON(t, c, "/api/webhooks/events/"+ev["id"].(string))
				checkAttempts(t, full, schedule, impatientRetries, downAt, upAt, false)
			}
		})
	}
}

// checkAttempts checks one event's attempt log against the schedule: the
// attempts are numbered 1..n; every failure happened while the receiver was
// down; each retry waited its backoff (±20% jitter) and not much longer
// (the poller runs every 500 ms; the rest is slack for a loaded machine);
// a delivered event ends with its one success, a failed one spent exactly
// its budget.
func checkAttempts(t *testing.T, ev map[string]any, schedule []time.Duration, maxRetries int, downAt, upAt time.Time, delivered bool) {
	t.Helper()
	const ms = time.Millisecond // stored times are in milliseconds
	log := ev["attempt_log"].([]any)
	n := len(log)
	if int(ev["attempts"].(float64)) != n {
		t.Errorf("event %v: attempts %v but %d logged", ev["id"], ev["attempts"], n)
		return
	}
	if want := map[bool]string{true: "delivered", false: "failed"}[delivered]; ev["status"] != want {
		t.Errorf("event %v: status %v, want %s", ev["id"], ev["status"], want)
	}
	if n < 2 || n > maxRetries+1 || (!delivered && n != maxRetries+1) {
		t.Errorf("event %v: %d attempts with max_retries %d", ev["id"], n, maxRetries)
		return
	}
	var prev time.Time
	for i, raw := range log {
		a := raw.(map[string]any)
		started, err := time.Parse(time.RFC3339Nano, a["started_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		status := int(a["status_code"].(float64))
		last := i == n-1
		switch {
		case int(a["attempt"].(float64)) != i+1:
			t.Errorf("event %v: attempt %d is numbered %v", ev["id"], i+1, a["attempt"])
		case started.Before(downAt.Add(-ms)):
			t.Errorf("event %v: attempt %d started %v before the event existed", ev["id"], i+1, downAt.Sub(started))
		case last && delivered && (status < 200 || status > 299):
			t.Errorf("event %v: last attempt answered %d", ev["id"], status)
		case (!last || !delivered) && status != 0 && status != 503:
			t.Errorf("event %v: failed attempt %d answered %d (%v)", ev["id"], i+1, status, a["error"])
		case (!last || !delivered) && started.After(upAt.Add(100*ms)):
			t.Errorf("event %v: attempt %d failed %v after the receiver was back", ev["id"], i+1, started.Sub(upAt))
		}
		if i > 0 {
			wait := schedule[min(i-1, len(schedule)-1)]
			gap := started.Sub(prev)
			lo, hi := time.Duration(float64(wait)*0.8)-2*ms, time.Duration(float64(wait)*1.2)+500*ms+1500*ms
			if gap < lo || gap > hi {
				t.Errorf("event %v: retry %d came %v after the previous attempt; the schedule says %v ±20%%", ev["id"], i, gap, wait)
			}
		}
		prev = started
	}
}
