package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// receiver is a real webhook endpoint on loopback that records deliveries.
// respond decides each answer; nil answers 204.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []delivery
	calls   int
	respond func(call int, w http.ResponseWriter, r *http.Request)
	arrived chan struct{}
}

type delivery struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

func newReceiver(t *testing.T, respond func(call int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond, arrived: make(chan struct{}, 1)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.calls++
		call := rc.calls
		rc.mu.Unlock()
		if rc.respond != nil {
			rc.respond(call, w, r)
		} else {
			w.WriteHeader(http.StatusNoContent)
		}
		rc.mu.Lock()
		rc.got = append(rc.got, delivery{Header: r.Header.Clone(), Body: b, At: time.Now()})
		rc.mu.Unlock()
		select {
		case rc.arrived <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) URL() string { return rc.srv.URL + "/hook" }

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pipelineEnv lets webhooks reach loopback receivers and retries fast.
func pipelineEnv(extra map[string]string) map[string]string {
	env := map[string]string{
		"WAGATE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8,::1/128",
		"WAGATE_RETRY_SCHEDULE":      "100ms,100ms,100ms",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// registerWebhook registers url for the client and returns id and secret.
func registerWebhook(t *testing.T, c apiClient, body map[string]any) (string, string) {
	t.Helper()
	r := c.do("POST", "/api/webhooks/register", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("register webhook: %d %s", r.Status, r.Body)
	}
	m := r.json(t)
	return m["id"].(string), m["secret"].(string)
}

// linkedSandbox connects a sandbox session for the client, scans it, and
// returns its id.
func linkedSandbox(t *testing.T, c apiClient, user, phone string) string {
	t.Helper()
	r := c.do("POST", "/api/whatsapp/connect", map[string]any{"user_id": user, "phone_number": phone, "engine": "sandbox"})
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("connect: %d %s", r.Status, r.Body)
	}
	id := r.json(t)["session_id"].(string)
	if r := c.do("POST", "/api/whatsapp/sessions/"+id+"/sandbox/scan", nil); r.Status >= 300 {
		t.Fatalf("scan: %d %s", r.Status, r.Body)
	}
	return id
}

// inject sends inbound sandbox messages and returns their ids.
func inject(t *testing.T, c apiClient, session string, msgs ...map[string]any) []string {
	t.Helper()
	r := c.do("POST", "/api/whatsapp/sessions/"+session+"/sandbox/messages", map[string]any{"messages": msgs})
	if r.Status != http.StatusAccepted {
		t.Fatalf("inject: %d %s", r.Status, r.Body)
	}
	var out struct {
		MessageIDs []string `json:"message_ids"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	return out.MessageIDs
}

func textMsg(from, text string) map[string]any {
	return map[string]any{"from": from, "type": "text", "content": text}
}

// events lists a webhook's events through the API.
func listEvents(t *testing.T, c apiClient, webhookID, query string) []map[string]any {
	t.Helper()
	r := c.do("GET", "/api/webhooks/"+webhookID+"/events"+query, nil)
	if r.Status != 200 {
		t.Fatalf("events: %d %s", r.Status, r.Body)
	}
	var page struct {
		Data []map[string]any `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatal(err)
	}
	return page.Data
}

func getJSON(t *testing.T, c apiClient, path string) map[string]any {
	t.Helper()
	r := c.do("GET", path, nil)
	if r.Status != 200 {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	return r.json(t)
}
