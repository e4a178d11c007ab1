package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/app"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// EnvEvents sizes the bursts: small by default so `make test` stays quick,
// 20000 under `make reliability`.
const EnvEvents = "WAGATE_RELIABILITY_EVENTS"

func burstSize(t *testing.T) int {
	t.Helper()
	v := os.Getenv(EnvEvents)
	if v == "" {
		return 3000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 {
		t.Fatalf("%s=%q: want an integer >= 100", EnvEvents, v)
	}
	return n
}

// adminToken is the fixed admin token of the child processes.
const adminToken = "admin-token-for-the-reliability-suite"

// baseEnv lets webhooks reach loopback receivers and lifts the rate limit
// that a burst would otherwise hit.
func baseEnv(t testing.TB, extra map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{
		"WAGATE_DATA_DIR":            t.TempDir(),
		"WAGATE_ADMIN_TOKEN":         adminToken,
		"WAGATE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8,::1/128",
		"WAGATE_RETRY_SCHEDULE":      "200ms,400ms,800ms",
		"WAGATE_ENGINE":              "sandbox",
		"WAGATE_SANDBOX":             "true",
		"WAGATE_RATE_LIMIT":          "100000",
		"WAGATE_RATE_BURST":          "100000",
		"WAGATE_LOG_LEVEL":           "warn",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// startServer runs wagate in this process on 127.0.0.1:0 and stops it at
// cleanup.
func startServer(t testing.TB, env map[string]string) *app.Main {
	t.Helper()
	vars := map[string]string{"WAGATE_ADDR": "127.0.0.1:0"}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] }, "")
	if err != nil {
		t.Fatal(err)
	}
	log := testdb.Logger(t)
	if _, fuzz := t.(*testing.F); fuzz {
		// A fuzz target's server lives on in the fuzz function, where f.Log
		// may not be called.
		log = slog.New(slog.DiscardHandler)
	}
	m := &app.Main{Config: cfg, Log: log}
	if err := m.Start(context.Background()); err != nil {
		m.Close(context.Background())
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

// httpClient bounds every call the suite makes, so a wedged server fails
// the test instead of hanging it.
var httpClient = &http.Client{Timeout: 60 * time.Second}

// apiClient calls a running server with a bearer token.
type apiClient struct {
	t     testing.TB
	base  string
	token string
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

func (c apiClient) do(method, path string, body any, hdr ...string) response {
	c.t.Helper()
	r, err := c.try(method, path, body, hdr...)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// try is do for goroutines other than the test's: it returns the error.
func (c apiClient) try(method, path string, body any, hdr ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return response{}, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// envelopeError says what is wrong with an error answer, or "" when it is
// the documented envelope {"statusCode","message","error","code"} matching
// its status.
func envelopeError(status int, body []byte) string {
	var e struct {
		StatusCode *int    `json:"statusCode"`
		Message    *string `json:"message"`
		Error      *string `json:"error"`
		Code       *string `json:"code"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Sprintf("not JSON (%v): %.200q", err, body)
	}
	switch {
	case e.StatusCode == nil || *e.StatusCode != status:
		return fmt.Sprintf("statusCode is not %d: %.200s", status, body)
	case e.Message == nil || *e.Message == "":
		return fmt.Sprintf("no message: %.200s", body)
	case e.Error == nil || *e.Error != http.StatusText(status):
		return fmt.Sprintf("error is not %q: %.200s", http.StatusText(status), body)
	case e.Code == nil || *e.Code == "":
		return fmt.Sprintf("no code: %.200s", body)
	}
	return ""
}

func getJSON(t testing.TB, c apiClient, path string) map[string]any {
	t.Helper()
	r := c.do("GET", path, nil)
	if r.Status != 200 {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	return r.json(t)
}

// newClient creates a client through the admin API.
func newClient(t testing.TB, base, admin, name string) (apiClient, int64) {
	t.Helper()
	a := apiClient{t: t, base: base, token: admin}
	r := a.do("POST", "/api/admin/clients", map[string]any{"name": name})
	if r.Status != http.StatusCreated {
		t.Fatalf("create client: %d %s", r.Status, r.Body)
	}
	body := r.json(t)
	return apiClient{t: t, base: base, token: body["token"].(string)}, int64(body["id"].(float64))
}

// registerWebhook registers a webhook for the client and returns its id.
func registerWebhook(t testing.TB, c apiClient, body map[string]any) string {
	t.Helper()
	r := c.do("POST", "/api/webhooks/register", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("register webhook: %d %s", r.Status, r.Body)
	}
	return r.json(t)["id"].(string)
}

// linkedSandbox connects a sandbox session, scans it, and returns its id.
func linkedSandbox(t testing.TB, c apiClient, user, phone string) string {
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

// inject injects text messages with these ids and fails unless accepted.
func inject(t testing.TB, c apiClient, session string, ids ...string) {
	t.Helper()
	r := c.do("POST", "/api/whatsapp/sessions/"+session+"/sandbox/messages", batchBody(ids))
	if r.Status != http.StatusAccepted {
		t.Fatalf("inject: %d %s", r.Status, r.Body)
	}
}

func batchBody(ids []string) []byte {
	msgs := make([]map[string]any, len(ids))
	for i, id := range ids {
		msgs[i] = map[string]any{"from": "5511888888888", "type": "text", "content": "x", "message_id": id}
	}
	b, _ := json.Marshal(map[string]any{"messages": msgs})
	return b
}

// listEvents lists every event of a webhook, following the cursor.
func listEvents(t testing.TB, c apiClient, webhookID, status string) []map[string]any {
	t.Helper()
	all, err := tryListEvents(c, webhookID, status)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// anyEvents reports whether a webhook has an event with this status; one
// small page, cheap enough to poll.
func anyEvents(t testing.TB, c apiClient, webhookID, status string) bool {
	t.Helper()
	r := c.do("GET", "/api/webhooks/"+webhookID+"/events?limit=1&status="+status, nil)
	if r.Status != 200 {
		t.Fatalf("events: %d %s", r.Status, r.Body)
	}
	return len(r.json(t)["data"].([]any)) > 0
}

// waitRecorded waits until none of a webhook's events is pending, which
// means every result was written; diag explains a timeout.
func waitRecorded(t testing.TB, c apiClient, webhookID string, d time.Duration, diag func()) {
	t.Helper()
	deadline := time.Now().Add(d)
	for anyEvents(t, c, webhookID, "pending") {
		if time.Now().After(deadline) {
			diag()
			t.Fatalf("events still pending %v after the receiver got them all", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tryListEvents(c apiClient, webhookID, status string) ([]map[string]any, error) {
	var all []map[string]any
	cursor := ""
	for range 1000 {
		q := "?limit=500"
		if status != "" {
			q += "&status=" + status
		}
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		r, err := c.try("GET", "/api/webhooks/"+webhookID+"/events"+q, nil)
		if err != nil {
			return nil, err
		}
		if r.Status != 200 {
			return nil, fmt.Errorf("events: %d %s", r.Status, r.Body)
		}
		var page struct {
			Data       []map[string]any `json:"data"`
			NextCursor *string          `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Data...)
		if page.NextCursor == nil {
			return all, nil
		}
		cursor = *page.NextCursor
	}
	return nil, fmt.Errorf("events: too many pages")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Child processes ------------------------------------------------------------

// wagateBinary builds cmd/wagate once per test binary.
var wagateBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "wagate-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "wagate")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/wagate/wagate/cmd/wagate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// process is wagate running as a child process, so a test can SIGKILL it
// or change the world under it.
type process struct {
	t    testing.TB
	cmd  *exec.Cmd
	env  []string
	addr string
	log  *os.File
	exit chan struct{} // closed when the current child exits
}

func startProcess(t testing.TB, env map[string]string) *process {
	t.Helper()
	if _, err := wagateBinary(); err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, addr: freeAddr(t)}
	env["WAGATE_ADDR"] = p.addr
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	var err error
	p.log, err = os.Create(filepath.Join(t.TempDir(), "wagate.log"))
	if err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			// The delivery engine's lines first: they are drowned out by
			// request errors in an outage.
			b, _ := os.ReadFile(p.log.Name())
			var engine []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "component=delivery") || strings.Contains(l, "panic") {
					engine = append(engine, l)
				}
			}
			t.Logf("delivery engine log (last 40 lines):\n%s", strings.Join(engine[max(0, len(engine)-40):], "\n"))
			t.Logf("server log (last 8 KiB):\n%s", b[max(0, len(b)-8192):])
		}
		p.log.Close()
	})
	return p
}

func (p *process) base() string { return "http://" + p.addr }

func (p *process) start() {
	p.t.Helper()
	bin, _ := wagateBinary()
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exit := make(chan struct{})
	p.exit = exit
	cmd := p.cmd
	go func() { cmd.Wait(); close(exit) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := httpClient.Get(p.base() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-exit:
			p.t.Fatalf("wagate exited before becoming ready: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("wagate did not become ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exited reports whether the current child has exited.
func (p *process) exited() bool {
	select {
	case <-p.exit:
		return true
	default:
		return false
	}
}

func (p *process) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exit
		p.cmd = nil
	}
}

// Receivers -------------------------------------------------------------------

// countingReceiver is a webhook endpoint on loopback that counts deliveries
// per message id. It can be taken down (connections refused) and brought
// back on the same port, or made to answer 503.
type countingReceiver struct {
	mu      sync.Mutex
	seen    map[string]int
	calls   int  // every request, whatever its body
	failing bool // answer 503
	addr    string
	srv     *http.Server
}

func newCountingReceiver(t testing.TB) *countingReceiver {
	t.Helper()
	rc := &countingReceiver{seen: map[string]int{}, addr: freeAddr(t)}
	rc.up(t)
	t.Cleanup(rc.down)
	return rc
}

func (rc *countingReceiver) url() string { return "http://" + rc.addr + "/hook" }

func (rc *countingReceiver) up(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	// The port was just released by down(); retry briefly in case the
	// kernel has not let go of it yet.
	for range 50 {
		if ln, err = net.Listen("tcp", rc.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(rc.serve)}
	rc.mu.Lock()
	rc.srv = srv
	rc.mu.Unlock()
	go srv.Serve(ln)
}

func (rc *countingReceiver) serve(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.calls++
	rc.mu.Unlock()
	b, err := io.ReadAll(r.Body)
	var p struct {
		MessageID string `json:"message_id"`
	}
	// A body cut short (the sender died mid-request) counts as nothing.
	if err == nil && json.Unmarshal(b, &p) == nil && p.MessageID != "" {
		rc.mu.Lock()
		failing := rc.failing
		if !failing {
			rc.seen[p.MessageID]++
		}
		rc.mu.Unlock()
		if failing {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *countingReceiver) setFailing(v bool) {
	rc.mu.Lock()
	rc.failing = v
	rc.mu.Unlock()
}

func (rc *countingReceiver) down() {
	rc.mu.Lock()
	srv := rc.srv
	rc.srv = nil
	rc.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// snapshot copies the counts.
func (rc *countingReceiver) snapshot() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]int, len(rc.seen))
	for k, v := range rc.seen {
		out[k] = v
	}
	return out
}

// total counts every request received.
func (rc *countingReceiver) total() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.calls
}

// missing counts the ids never received.
func (rc *countingReceiver) missing(ids []string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, id := range ids {
		if rc.seen[id] == 0 {
			n++
		}
	}
	return n
}

// duplicates sums the deliveries beyond the first of every id, and the
// highest count of one id.
func duplicates(seen map[string]int) (dups, most int) {
	for _, n := range seen {
		dups += n - 1
		most = max(most, n)
	}
	return dups, most
}

// Bursts -----------------------------------------------------------------------

// injector sends batches of inbound sandbox messages and keeps the ids of
// those acknowledged with 202: only they are promised to be delivered.
type injector struct {
	base, token, session string
	batch                int

	mu       sync.Mutex
	accepted []string
	failures map[string]int // non-202 answers by status and reason
	bad      []string       // answers that are not the error envelope
	next     int            // next batch number
}

func newInjector(base, token, session string, batch int) *injector {
	return &injector{base: base, token: token, session: session, batch: batch, failures: map[string]int{}}
}

func (in *injector) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.accepted)
}

func (in *injector) ids() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.accepted...)
}

// send injects one batch and reports whether it was accepted; err is a
// transport error (server gone).
func (in *injector) send() (bool, error) {
	in.mu.Lock()
	b := in.next
	in.next++
	in.mu.Unlock()
	ids := make([]string, in.batch)
	for i := range ids {
		ids[i] = fmt.Sprintf("m-%d-%d", b, i)
	}
	req, _ := http.NewRequest("POST", in.base+"/api/whatsapp/sessions/"+in.session+"/sandbox/messages", bytes.NewReader(batchBody(ids)))
	req.Header.Set("Authorization", "Bearer "+in.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		in.mu.Lock()
		in.failures["no answer"]++
		in.mu.Unlock()
		return false, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case err != nil:
		return false, err
	case resp.StatusCode == http.StatusAccepted:
		in.accepted = append(in.accepted, ids...)
		return true, nil
	default:
		var e struct {
			Code string `json:"code"`
		}
		json.Unmarshal(body, &e)
		in.failures[strconv.Itoa(resp.StatusCode)+" "+e.Code]++
		if msg := envelopeError(resp.StatusCode, body); msg != "" && len(in.bad) < 10 {
			in.bad = append(in.bad, msg)
		}
		return false, nil
	}
}

// run sends batches until target messages are accepted, ctx ends, or the
// server is gone (stopOnError), and closes the returned channel then.
func (in *injector) run(ctx context.Context, target int, stopOnError bool) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil && in.count() < target {
			ok, err := in.send()
			if err != nil && stopOnError {
				return
			}
			if !ok {
				time.Sleep(20 * time.Millisecond) // the server is failing: do not spin
			}
		}
	}()
	return done
}

// Outbox ---------------------------------------------------------------------

// deliveredRows counts a webhook's delivered rows, reading the database of
// a stopped wagate directly.
func deliveredRows(t *testing.T, env map[string]string, webhookID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, env["DATABASE_URL"], env["WAGATE_DATA_DIR"], testdb.Logger(t), store.Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM whatsapp_webhook_events WHERE webhook_id = $1 AND status = 'delivered'`,
		webhookID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitDelivered waits until the receiver has every id; on timeout it tells
// how many are missing and runs diag to show why.
func waitDelivered(t *testing.T, rc *countingReceiver, ids []string, d time.Duration, diag func()) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		missing := rc.missing(ids)
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			diag()
			t.Fatalf("%d of %d accepted messages not delivered after %v", missing, len(ids), d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logOutbox shows the state of a webhook's rows, grouped, to tell a stuck
// row from a slow one. It reads the database beside the running wagate.
func logOutbox(t *testing.T, env map[string]string, webhookID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, env["DATABASE_URL"], env["WAGATE_DATA_DIR"], testdb.Logger(t), store.Options{MaxOpenConns: 1})
	if err != nil {
		t.Log(err)
		return
	}
	defer db.Close()
	rows, err := db.SQL().QueryContext(ctx, `SELECT status, lease_owner, attempts, MIN(next_attempt_at), MAX(next_attempt_at), COUNT(*)
		FROM whatsapp_webhook_events WHERE webhook_id = $1 GROUP BY status, lease_owner, attempts ORDER BY COUNT(*) DESC LIMIT 10`, webhookID)
	if err != nil {
		t.Log(err)
		return
	}
	defer rows.Close()
	now := time.Now().UnixMilli()
	for rows.Next() {
		var status, owner string
		var attempts, lo, hi, n int64
		if err := rows.Scan(&status, &owner, &attempts, &lo, &hi, &n); err != nil {
			t.Log(err)
			return
		}
		t.Logf("%d %s rows with %d attempts, lease_owner %q: next_attempt_at from now%+dms to now%+dms", n, status, attempts, owner, lo-now, hi-now)
	}
}
