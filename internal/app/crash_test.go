package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

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

// process is wagate running as a child process, so a test can SIGKILL it.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	env  []string
	addr string
	log  *os.File
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startProcess(t *testing.T, env map[string]string) *process {
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
			b, _ := os.ReadFile(p.log.Name())
			t.Logf("server log (last 4 KiB):\n%s", tail(b, 4096))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (p *process) start() {
	p.t.Helper()
	bin, _ := wagateBinary()
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("wagate did not become ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *process) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		p.cmd = nil
	}
}

// countingReceiver records which message ids arrived and how often. It can
// be stopped and started again on the same port.
type countingReceiver struct {
	mu   sync.Mutex
	seen map[string]int
	addr string
	srv  *http.Server
}

func newCountingReceiver(t *testing.T) *countingReceiver {
	t.Helper()
	rc := &countingReceiver{seen: map[string]int{}, addr: freeAddr(t)}
	rc.up(t)
	t.Cleanup(rc.down)
	return rc
}

func (rc *countingReceiver) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", rc.addr)
	if err != nil {
		t.Fatal(err)
	}
	rc.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p struct {
			MessageID string `json:"message_id"`
		}
		json.Unmarshal(b, &p)
		rc.mu.Lock()
		rc.seen[p.MessageID]++
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go rc.srv.Serve(ln)
}

func (rc *countingReceiver) down() {
	if rc.srv != nil {
		rc.srv.Close()
		rc.srv = nil
	}
}

func (rc *countingReceiver) missing(ids []string) (missing int, dups int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, id := range ids {
		switch n := rc.seen[id]; {
		case n == 0:
			missing++
		case n > 1:
			dups += n - 1
		}
	}
	return
}

// TestCrashLosesNothing SIGKILLs wagate in the middle of a burst, restarts
// it on the same database, and checks every acknowledged message reaches
// the receiver; then takes the receiver down for a while and checks the
// retries deliver everything once it is back.
func TestCrashLosesNothing(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				"WAGATE_DATA_DIR":            t.TempDir(),
				"WAGATE_ADMIN_TOKEN":         "admin-token-for-the-crash-test",
				"WAGATE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
				"WAGATE_RETRY_SCHEDULE":      "200ms,400ms,800ms",
				"WAGATE_ENGINE":              "sandbox",
				"WAGATE_RATE_LIMIT":          "100000",
				"WAGATE_RATE_BURST":          "100000",
				"WAGATE_LOG_LEVEL":           "warn",
			}
			if dialect == store.Postgres {
				env["DATABASE_URL"] = testdb.PostgresURL(t)
			}
			p := startProcess(t, env)
			rc := newCountingReceiver(t)
			base := func() string { return "http://" + p.addr }
			admin := apiClient{t: t, base: base(), token: env["WAGATE_ADMIN_TOKEN"]}
			r := admin.do("POST", "/api/admin/clients", map[string]any{"name": "crash"})
			c := apiClient{t: t, base: base(), token: r.json(t)["token"].(string)}
			registerWebhook(t, c, map[string]any{"webhook_url": "http://" + rc.addr + "/hook", "max_retries": 10})
			session := linkedSandbox(t, c, "u1", "5511999999999")

			// The burst: batches of 100 from a goroutine; the kill lands in
			// the middle. Only batches whose 202 arrived count as accepted.
			var mu sync.Mutex
			var accepted []string
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			burst := func(from, batches int) <-chan struct{} {
				done := make(chan struct{})
				go func() {
					defer close(done)
					for b := from; b < from+batches && ctx.Err() == nil; b++ {
						msgs := make([]map[string]any, 100)
						ids := make([]string, 100)
						for i := range msgs {
							ids[i] = fmt.Sprintf("m-%d-%d", b, i)
							msgs[i] = map[string]any{"from": "5511888888888", "type": "text", "content": "x", "message_id": ids[i]}
						}
						body, _ := json.Marshal(map[string]any{"messages": msgs})
						req, _ := http.NewRequest("POST", base()+"/api/whatsapp/sessions/"+session+"/sandbox/messages", strings.NewReader(string(body)))
						req.Header.Set("Authorization", "Bearer "+c.token)
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							return // the server died under us
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusAccepted {
							mu.Lock()
							accepted = append(accepted, ids...)
							mu.Unlock()
						}
					}
				}()
				return done
			}
			done := burst(0, 40)
			waitFor(t, "part of the burst", 30*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(accepted) >= 1000
			})
			p.kill()
			<-done
			mu.Lock()
			before := len(accepted)
			mu.Unlock()
			t.Logf("killed after %d accepted messages", before)

			p.start()
			<-burst(100, 10)
			mu.Lock()
			all := append([]string(nil), accepted...)
			mu.Unlock()
			waitFor(t, "every accepted message delivered after the restart", 90*time.Second, func() bool {
				m, _ := rc.missing(all)
				return m == 0
			})
			_, dups := rc.missing(all)
			t.Logf("%d messages delivered, %d duplicates (deliveries in flight at the kill)", len(all), dups)

			// The receiver goes down for a while, then comes back.
			rc.down()
			<-burst(200, 5)
			time.Sleep(time.Second) // several attempts fail meanwhile
			rc.up(t)
			mu.Lock()
			all = append([]string(nil), accepted...)
			mu.Unlock()
			waitFor(t, "delivery once the receiver is back", 90*time.Second, func() bool {
				m, _ := rc.missing(all)
				return m == 0
			})
			st := getJSON(t, c, "/api/whatsapp/sessions/"+session)
			if st["status"] != "connected" {
				t.Fatalf("session after restart: %v", st)
			}
		})
	}
}
