package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/clients"
	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sessions"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
	"github.com/wagate/wagate/internal/webhooks"
)

// hookSource serves one webhook to the engine; its secret is fixed, since
// what is tested here is the path of the jobs, not the signature.
type hookSource struct{ wh webhooks.Webhook }

func (h hookSource) ForDelivery(ctx context.Context, id string) (webhooks.Webhook, error) {
	return h.wh, nil
}

// jobCounter records the engine's Jobs metric by path.
type jobCounter struct {
	mu   sync.Mutex
	jobs map[string]int
}

func (c *jobCounter) Attempt(string, string, time.Duration) {}
func (c *jobCounter) Delivered(time.Duration)               {}
func (c *jobCounter) WebhookDisabled(string)                {}
func (c *jobCounter) Inbound(string, int)                   {}
func (c *jobCounter) Jobs(path string, n int) {
	c.mu.Lock()
	c.jobs[path] += n
	c.mu.Unlock()
}
func (c *jobCounter) get(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[path]
}

// A burst larger than the dispatcher's capacity, on a real SQLite store
// and a slow receiver on loopback: with backpressure every row is leased
// when stored and handed over in memory, none goes through the pollers;
// without it (RoomWait of a nanosecond) the surplus is claimed back.
func TestBackpressureKeepsRowsOutOfPollers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		roomWait time.Duration
		claimed  bool
	}{
		{"wait for room", time.Minute, false},
		{"no wait", time.Nanosecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := testdb.Open(t, store.SQLite, store.Options{})
			c, _, err := clients.NewService(db).Create(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			sess := sessions.Session{ID: "22222222-2222-2222-2222-222222222222", ClientID: c.ID, PhoneNumber: "5511999999999"}
			if _, err := db.SQL().Exec(`INSERT INTO whatsapp_connections (id, client_id, user_id, phone_number, session_status, engine, created_at, updated_at)
				VALUES ($1, $2, 'u1', $3, 'connected', 'sandbox', 0, 0)`, sess.ID, c.ID, sess.PhoneNumber); err != nil {
				t.Fatal(err)
			}
			var got atomic.Int64
			// Without the wait, the receiver holds every request until all
			// batches are stored, so the dispatcher surely overflows.
			gate := make(chan struct{})
			if !tc.claimed {
				close(gate)
			}
			rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-gate
				time.Sleep(2 * time.Millisecond)
				got.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer rcv.Close()
			wh := webhooks.Webhook{ID: "h1", ClientID: c.ID, URL: rcv.URL, MaxRetries: 3, Events: []string{"*"}, Active: true,
				Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
			if _, err := db.SQL().Exec(`INSERT INTO webhooks (id, client_id, phone_number, url, max_retries, events, secret_enc, active, created_at, updated_at)
				VALUES ($1, $2, '', $3, 3, '["*"]', $4, $5, 0, 0)`, wh.ID, c.ID, wh.URL, []byte("sealed"), true); err != nil {
				t.Fatal(err)
			}
			met := &jobCounter{jobs: map[string]int{}}
			e := delivery.New(delivery.Config{
				Store: db, Webhooks: hookSource{wh}, Log: testdb.Logger(t), Metrics: met, NodeID: "n1",
				Workers: 8, MaxInFlightPerWebhook: 8, Capacity: 40, ParkLimit: 40,
				RoomWait: tc.roomWait, IngestConcurrency: 1, PollInterval: 20 * time.Millisecond,
			})
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer e.Close(ctx)
			const batches, per = 10, 20
			var wg sync.WaitGroup
			for b := 0; b < batches; b++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					evs := make([]events.Inbound, per)
					for i := range evs {
						evs[i] = events.Inbound{Type: events.TypeMessage, MessageID: fmt.Sprintf("m-%d-%d", b, i), Kind: "text",
							Content: "hi", Timestamp: time.Now()}
					}
					if _, err := e.Publish(ctx, sess, evs); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if tc.claimed {
				close(gate)
			}
			deadline := time.Now().Add(30 * time.Second)
			for got.Load() < batches*per && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := got.Load(); n != batches*per {
				t.Fatalf("delivered %d of %d", n, batches*per)
			}
			handed, claimed := met.get("handed"), met.get("claimed")
			if tc.claimed {
				if claimed == 0 {
					t.Fatalf("without waiting, no job was claimed (handed %d): the test does not overflow the dispatcher", handed)
				}
				return
			}
			if handed != batches*per || claimed != 0 || met.get("stored") != 0 {
				t.Fatalf("handed %d, claimed %d, stored for the pollers %d; want all %d handed", handed, claimed, met.get("stored"), batches*per)
			}
		})
	}
}
