package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/wagate/wagate/internal/testdb"
)

// TestDeliveryEndToEnd follows one inbound sandbox message to a real
// receiver and checks the seed's payload and a signature that the official
// Standard Webhooks library accepts, on both databases.
func TestDeliveryEndToEnd(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			m := startServer(t, dialect, pipelineEnv(nil))
			c, clientID := newClient(t, m, "Acme")
			rc := newReceiver(t, nil)
			hookID, secret := registerWebhook(t, c, map[string]any{
				"phone_number": "+55 11 99999-9999", "webhook_url": rc.URL(), "max_retries": 3,
				"headers": map[string]string{"X-Api-Key": "k-123"},
			})
			if !strings.HasPrefix(secret, "whsec_") {
				t.Fatalf("secret %q", secret)
			}
			session := linkedSandbox(t, c, "user-uuid-123", "5511999999999")
			ids := inject(t, c, session, map[string]any{"from": "5511888888888", "type": "text", "content": "Hello from WhatsApp!", "message_id": "msg_abc123"})
			if len(ids) != 1 || ids[0] != "msg_abc123" {
				t.Fatalf("ids %v", ids)
			}
			waitFor(t, "the delivery", 10*time.Second, func() bool { return len(rc.deliveries()) >= 1 })
			d := rc.deliveries()[0]

			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(d.Body, d.Header); err != nil {
				t.Fatalf("official verifier rejected the delivery: %v", err)
			}
			if got := d.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("content-type %q", got)
			}
			if ua := d.Header.Get("User-Agent"); !strings.HasPrefix(ua, "wagate/") {
				t.Errorf("user-agent %q", ua)
			}
			if d.Header.Get("X-Api-Key") != "k-123" {
				t.Errorf("custom header missing: %v", d.Header)
			}
			var p map[string]any
			if err := json.Unmarshal(d.Body, &p); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"event": "message", "client_id": float64(clientID), "session_id": session, "phone_number": "5511999999999",
				"message_id": "msg_abc123", "from": "5511888888888", "type": "text", "content": "Hello from WhatsApp!",
			}
			for k, v := range want {
				if p[k] != v {
					t.Errorf("payload %s = %v, want %v", k, p[k], v)
				}
			}
			if p["event_id"] != d.Header.Get("webhook-id") || p["event_id"] == "" {
				t.Errorf("event_id %v vs webhook-id %q", p["event_id"], d.Header.Get("webhook-id"))
			}
			if _, err := time.Parse(time.RFC3339, p["timestamp"].(string)); err != nil || !strings.HasSuffix(p["timestamp"].(string), "Z") {
				t.Errorf("timestamp %v", p["timestamp"])
			}
			if _, ok := p["metadata"].(map[string]any); !ok {
				t.Errorf("metadata %v", p["metadata"])
			}
			if strings.Contains(string(d.Body), secret) || strings.Contains(string(d.Body), "k-123") {
				t.Error("a secret leaked into the payload")
			}

			// The events API shows it delivered, newest first, with its attempt.
			var evs []map[string]any
			waitFor(t, "delivered status", 5*time.Second, func() bool {
				evs = listEvents(t, c, hookID, "?status=delivered")
				return len(evs) == 1
			})
			ev := evs[0]
			if ev["event_type"] != "message" || ev["attempts"].(float64) != 1 || ev["last_status_code"].(float64) != 204 || ev["delivered_at"] == nil {
				t.Fatalf("event %v", ev)
			}
			full := getJSON(t, c, "/api/webhooks/events/"+ev["id"].(string))
			if log := full["attempt_log"].([]any); len(log) != 1 || log[0].(map[string]any)["status_code"].(float64) != 204 {
				t.Fatalf("attempt log %v", full["attempt_log"])
			}

			// A test event goes through the same pipeline.
			if r := c.do("POST", "/api/webhooks/"+hookID+"/test", nil); r.Status != http.StatusAccepted {
				t.Fatalf("test event: %d %s", r.Status, r.Body)
			}
			waitFor(t, "the test event", 10*time.Second, func() bool { return len(rc.deliveries()) >= 2 })
			if !strings.Contains(string(rc.deliveries()[1].Body), `"event":"webhook.test"`) {
				t.Fatalf("test event body %s", rc.deliveries()[1].Body)
			}

			// Another client sees none of it.
			other, _ := newClient(t, m, "Other")
			for _, path := range []string{"/api/webhooks/" + hookID + "/events", "/api/webhooks/events/" + ev["id"].(string)} {
				expectError(t, other.do("GET", path, nil), 404, "NOT_FOUND")
			}
			expectError(t, other.do("POST", "/api/webhooks/events/"+ev["id"].(string)+"/retry", nil), 404, "NOT_FOUND")
			expectError(t, other.do("POST", "/api/webhooks/"+hookID+"/recover", map[string]any{"since": "2020-01-01T00:00:00Z"}), 404, "NOT_FOUND")
			expectError(t, other.do("POST", "/api/webhooks/"+hookID+"/test", nil), 404, "NOT_FOUND")
		})
	}
}

// TestRetriesThenSuccess: a receiver failing twice gets the event on the
// third attempt, and all three attempts are listed.
func TestRetriesThenSuccess(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			m := startServer(t, dialect, pipelineEnv(nil))
			c, _ := newClient(t, m, "Acme")
			rc := newReceiver(t, func(call int, w http.ResponseWriter, r *http.Request) {
				if call <= 2 {
					http.Error(w, "down for maintenance", http.StatusInternalServerError)
					return
				}
				w.WriteHeader(200)
			})
			hookID, _ := registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "max_retries": 3})
			session := linkedSandbox(t, c, "u1", "5511999999999")
			inject(t, c, session, textMsg("5511888888888", "hi"))
			var ev map[string]any
			waitFor(t, "delivery on the third attempt", 15*time.Second, func() bool {
				evs := listEvents(t, c, hookID, "")
				if len(evs) == 1 && evs[0]["status"] == "delivered" {
					ev = evs[0]
					return true
				}
				return false
			})
			if ev["attempts"].(float64) != 3 {
				t.Fatalf("attempts %v", ev["attempts"])
			}
			full := getJSON(t, c, "/api/webhooks/events/"+ev["id"].(string))
			log := full["attempt_log"].([]any)
			if len(log) != 3 {
				t.Fatalf("attempt log %v", log)
			}
			for i, want := range []float64{500, 500, 200} {
				a := log[i].(map[string]any)
				if a["status_code"].(float64) != want || a["attempt"].(float64) != float64(i+1) {
					t.Fatalf("attempt %d: %v", i+1, a)
				}
			}
			if !strings.Contains(log[0].(map[string]any)["response_body"].(string), "down for maintenance") {
				t.Fatalf("response body not kept: %v", log[0])
			}
			if len(rc.deliveries()) != 3 {
				t.Fatalf("receiver calls %d", len(rc.deliveries()))
			}
			ids := map[string]bool{}
			for _, d := range rc.deliveries() {
				ids[d.Header.Get("webhook-id")] = true
			}
			if len(ids) != 1 {
				t.Fatalf("webhook-id changed across attempts: %v", ids)
			}
		})
	}
}

// TestGoneDisables: 410 fails the event and disables the webhook; PATCH
// re-enables it and recover delivers what failed.
func TestGoneDisablesAndRecover(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", pipelineEnv(nil))
	c, _ := newClient(t, m, "Acme")
	gone := true
	rc := newReceiver(t, func(call int, w http.ResponseWriter, r *http.Request) {
		if gone {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(200)
	})
	hookID, _ := registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "max_retries": 5})
	session := linkedSandbox(t, c, "u1", "5511999999999")
	start := time.Now().UTC().Add(-time.Minute)
	inject(t, c, session, textMsg("5511888888888", "one"))
	waitFor(t, "the 410", 10*time.Second, func() bool {
		evs := listEvents(t, c, hookID, "?status=failed")
		return len(evs) == 1
	})
	waitFor(t, "the webhook disabled", 5*time.Second, func() bool {
		return getJSON(t, c, "/api/webhooks/"+hookID)["active"] == false
	})
	if reason, _ := getJSON(t, c, "/api/webhooks/"+hookID)["disabled_reason"].(string); !strings.Contains(reason, "410") {
		t.Fatalf("disabled_reason %q", reason)
	}
	// While disabled, new events are not queued for it.
	inject(t, c, session, textMsg("5511888888888", "two"))
	time.Sleep(200 * time.Millisecond)
	if n := len(listEvents(t, c, hookID, "")); n != 1 {
		t.Fatalf("events queued for a disabled webhook: %d", n)
	}
	gone = false
	if r := c.do("PATCH", "/api/webhooks/"+hookID, map[string]any{"active": true}); r.Status != 200 {
		t.Fatalf("re-enable: %d %s", r.Status, r.Body)
	}
	r := c.do("POST", "/api/webhooks/"+hookID+"/recover", map[string]any{"since": start.Format(time.RFC3339)})
	if r.Status != http.StatusAccepted || r.json(t)["requeued"].(float64) != 1 {
		t.Fatalf("recover: %d %s", r.Status, r.Body)
	}
	waitFor(t, "recovered delivery", 10*time.Second, func() bool {
		evs := listEvents(t, c, hookID, "?status=delivered")
		return len(evs) == 1
	})
	expectError(t, c.do("POST", "/api/webhooks/"+hookID+"/recover", map[string]any{}), 400, "")
	expectError(t, c.do("POST", "/api/webhooks/"+hookID+"/recover", map[string]any{"since": "yesterday"}), 400, "")
}

// TestRetryAfterHonoured: a 429 with Retry-After schedules the next attempt
// that far out instead of the 100 ms schedule.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", pipelineEnv(nil))
	c, _ := newClient(t, m, "Acme")
	rc := newReceiver(t, func(call int, w http.ResponseWriter, r *http.Request) {
		if call == 1 {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(200)
	})
	hookID, _ := registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "max_retries": 3})
	session := linkedSandbox(t, c, "u1", "5511999999999")
	inject(t, c, session, textMsg("5511888888888", "hi"))
	var ev map[string]any
	waitFor(t, "the first attempt", 10*time.Second, func() bool {
		evs := listEvents(t, c, hookID, "")
		if len(evs) == 1 && evs[0]["attempts"].(float64) == 1 {
			ev = evs[0]
			return true
		}
		return false
	})
	full := getJSON(t, c, "/api/webhooks/events/"+ev["id"].(string))
	started, _ := time.Parse(time.RFC3339Nano, full["attempt_log"].([]any)[0].(map[string]any)["started_at"].(string))
	next, _ := time.Parse(time.RFC3339Nano, ev["next_attempt_at"].(string))
	if gap := next.Sub(started); gap < 2900*time.Millisecond || gap > 4*time.Second {
		t.Fatalf("next attempt %v after the 429, want about 3s", gap)
	}
	waitFor(t, "the delivery after Retry-After", 15*time.Second, func() bool {
		return len(listEvents(t, c, hookID, "?status=delivered")) == 1
	})
}

// TestRetryEndpoint: an event that failed with no retries left is retried
// by the seed's endpoint with a fresh budget.
func TestRetryEndpoint(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", pipelineEnv(nil))
	c, _ := newClient(t, m, "Acme")
	fail := true
	rc := newReceiver(t, func(call int, w http.ResponseWriter, r *http.Request) {
		if fail {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	})
	hookID, _ := registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "max_retries": 0})
	session := linkedSandbox(t, c, "u1", "5511999999999")
	inject(t, c, session, textMsg("5511888888888", "hi"))
	var ev map[string]any
	waitFor(t, "failed", 10*time.Second, func() bool {
		evs := listEvents(t, c, hookID, "?status=failed")
		if len(evs) == 1 {
			ev = evs[0]
			return true
		}
		return false
	})
	if ev["attempts"].(float64) != 1 || ev["last_status_code"].(float64) != 500 {
		t.Fatalf("failed event %v", ev)
	}
	fail = false
	r := c.do("POST", "/api/webhooks/events/"+ev["id"].(string)+"/retry", nil)
	// The requeued event may already be delivered when the answer is read.
	if st := r.json(t)["status"]; r.Status != http.StatusAccepted || st != "pending" && st != "delivered" {
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
	waitFor(t, "delivered after retry", 10*time.Second, func() bool {
		return len(listEvents(t, c, hookID, "?status=delivered")) == 1
	})
	expectError(t, c.do("POST", "/api/webhooks/events/nope/retry", nil), 404, "NOT_FOUND")
	expectError(t, c.do("GET", "/api/webhooks/"+hookID+"/events?status=lost", nil), 400, "")
	expectError(t, c.do("GET", "/api/webhooks/"+hookID+"/events?limit=0", nil), 400, "")
	expectError(t, c.do("GET", "/api/webhooks/"+hookID+"/events?cursor=zzz", nil), 400, "")
}

// TestRotationSignsWithBoth: after a rotation, deliveries carry both
// signatures, so receivers holding either secret accept them.
func TestRotationSignsWithBoth(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", pipelineEnv(nil))
	c, _ := newClient(t, m, "Acme")
	rc := newReceiver(t, nil)
	hookID, oldSecret := registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "max_retries": 1})
	session := linkedSandbox(t, c, "u1", "5511999999999")
	// A first delivery puts the webhook in the engine's cache; the rotation
	// must reach the next delivery at once all the same.
	inject(t, c, session, textMsg("5511888888888", "before"))
	waitFor(t, "first delivery", 10*time.Second, func() bool { return len(rc.deliveries()) == 1 })
	if n := len(strings.Fields(rc.deliveries()[0].Header.Get("webhook-signature"))); n != 1 {
		t.Fatalf("%d signatures before rotation", n)
	}
	r := c.do("POST", "/api/webhooks/"+hookID+"/rotate-secret", nil)
	if r.Status >= 300 {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	newSecret := r.json(t)["secret"].(string)
	inject(t, c, session, textMsg("5511888888888", "after"))
	waitFor(t, "delivery", 10*time.Second, func() bool { return len(rc.deliveries()) == 2 })
	d := rc.deliveries()[1]
	if sigs := strings.Fields(d.Header.Get("webhook-signature")); len(sigs) != 2 {
		t.Fatalf("want two signatures, got %q", d.Header.Get("webhook-signature"))
	}
	for _, s := range []string{oldSecret, newSecret} {
		wh, _ := standardwebhooks.NewWebhook(s)
		if err := wh.Verify(d.Body, d.Header); err != nil {
			t.Fatalf("secret %s…: %v", s[:10], err)
		}
	}
}

// TestAutoDisableAlerts: a webhook failing continuously past the threshold
// is disabled and the operator's alert webhook is told.
func TestAutoDisableAlerts(t *testing.T) {
	t.Parallel()
	alerts := newReceiver(t, nil)
	m := startServer(t, "sqlite", pipelineEnv(map[string]string{
		"WAGATE_RETRY_SCHEDULE":        "10ms",
		"WAGATE_WEBHOOK_DISABLE_AFTER": "50ms",
		"WAGATE_ALERT_WEBHOOK_URL":     alerts.URL(),
	}))
	c, _ := newClient(t, m, "Acme")
	rc := newReceiver(t, func(call int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) })
	hookID, _ := registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "max_retries": 25})
	session := linkedSandbox(t, c, "u1", "5511999999999")
	inject(t, c, session, textMsg("5511888888888", "a"), textMsg("5511888888888", "b"))
	waitFor(t, "the operator alert", 20*time.Second, func() bool { return len(alerts.deliveries()) >= 1 })
	var a map[string]any
	if err := json.Unmarshal(alerts.deliveries()[0].Body, &a); err != nil {
		t.Fatal(err)
	}
	if a["event"] != "webhook.disabled" || a["webhook_id"] != hookID || a["consecutive_failures"].(float64) < 10 {
		t.Fatalf("alert %v", a)
	}
	wh := getJSON(t, c, "/api/webhooks/"+hookID)
	if wh["active"] != false {
		t.Fatalf("webhook still active: %v", wh)
	}
	// Disabled means no more attempts.
	n := len(rc.deliveries())
	time.Sleep(300 * time.Millisecond)
	if len(rc.deliveries()) > n+int(m.Config.MaxInFlightPerHook) {
		t.Fatalf("attempts continued after disable: %d → %d", n, len(rc.deliveries()))
	}
}
