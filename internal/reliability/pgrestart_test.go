package reliability_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/testdb"
)

// readiness polls /readyz and remembers every answer.
type readiness struct {
	mu    sync.Mutex
	polls []readyPoll
}

type readyPoll struct {
	at     time.Time
	status int // 0: no answer
	bad    string
}

func watchReadiness(ctx context.Context, base string) *readiness {
	rd := &readiness{}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		for ctx.Err() == nil {
			p := readyPoll{at: time.Now()}
			if resp, err := client.Get(base + "/readyz"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				p.status = resp.StatusCode
				if p.status != 200 {
					p.bad = envelopeError(p.status, b)
				}
			}
			rd.mu.Lock()
			rd.polls = append(rd.polls, p)
			rd.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return rd
}

// between returns the polls started in [from, to].
func (rd *readiness) between(from, to time.Time) []readyPoll {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	var out []readyPoll
	for _, p := range rd.polls {
		if !p.at.Before(from) && !p.at.After(to) {
			out = append(out, p)
		}
	}
	return out
}

// EnvPGOutage sets how long TestPostgresRestart keeps PostgreSQL down
// (default 2s). Past about a minute the result writer gives up on its
// batches, which tests what becomes of their rows.
const EnvPGOutage = "WAGATE_RELIABILITY_PG_OUTAGE"

// TestPostgresRestart crashes PostgreSQL (immediate stop) in the middle of
// a burst and starts it again two seconds later (EnvPGOutage). wagate must ride it out
// without a restart: /readyz says not ready during the outage and ready
// after, failed requests answer the error envelope, and every message
// acknowledged with 202 is delivered, once.
func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	n := max(burstSize(t)/3, 1000)
	outage := 2 * time.Second
	if v := os.Getenv(EnvPGOutage); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a duration", EnvPGOutage, v)
		}
		outage = d
	}
	pg := testdb.StartCluster(t)
	p := startProcess(t, baseEnv(t, map[string]string{"DATABASE_URL": pg.URL()}))
	rc := newCountingReceiver(t)
	c, _ := newClient(t, p.base(), adminToken, "pg-restart")
	hook := registerWebhook(t, c, map[string]any{"webhook_url": rc.url(), "max_retries": 10})
	session := linkedSandbox(t, c, "u1", "5511999999999")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rd := watchReadiness(ctx, p.base())
	in := newInjector(p.base(), c.token, session, 100)
	done := in.run(ctx, n, false)
	waitFor(t, "a third of the burst", 5*time.Minute, func() bool { return in.count() >= n/3 })

	stoppedAt := time.Now()
	pg.Stop()
	before := in.count()
	time.Sleep(outage)
	outageEnd := time.Now()
	pg.Start()
	startedAt := time.Now()
	t.Logf("PostgreSQL down for %v after %d accepted messages", startedAt.Sub(stoppedAt).Round(time.Millisecond), before)

	waitFor(t, "/readyz ready again", 30*time.Second, func() bool {
		for _, p := range rd.between(startedAt, time.Now()) {
			if p.status == 200 {
				return true
			}
		}
		return false
	})
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("the burst did not finish after the restart: %d of %d accepted", in.count(), n)
	}
	all := in.ids()
	waitDelivered(t, rc, all, 2*time.Minute, func() { logOutbox(t, map[string]string{"DATABASE_URL": pg.URL()}, hook) })
	if p.exited() {
		t.Fatal("wagate exited during the outage")
	}

	// /readyz: not ready while PostgreSQL was down (a poll may have begun
	// just before the stop), 503 with the envelope.
	notReady := 0
	for _, poll := range rd.between(stoppedAt.Add(200*time.Millisecond), outageEnd) {
		if poll.status != 200 {
			notReady++
		}
	}
	if notReady == 0 {
		t.Error("/readyz never said not ready while PostgreSQL was down")
	}
	for _, poll := range rd.between(stoppedAt, time.Now()) {
		if poll.status == 0 {
			t.Errorf("/readyz did not answer at %v", poll.at.Sub(stoppedAt))
		} else if poll.status != 200 && (poll.status != 503 || poll.bad != "") {
			t.Errorf("/readyz answered %d: %s", poll.status, poll.bad)
		}
	}

	// Failed injections: 5xx with the envelope; never a 4xx, which would
	// tell the caller its request or token was wrong, nor a dropped
	// connection.
	in.mu.Lock()
	t.Logf("injections refused during the outage: %v", in.failures)
	for k := range in.failures {
		if k[0] != '5' {
			t.Errorf("an injection during the outage answered %s", k)
		}
	}
	for _, b := range in.bad {
		t.Errorf("an injection during the outage answered without the error envelope: %s", b)
	}
	in.mu.Unlock()

	final := rc.snapshot()
	dups, most := duplicates(final)
	t.Logf("%d accepted messages delivered; %d duplicates", len(all), dups)
	// wagate did not crash, so in a short outage every result must be
	// recorded once: a lost result would leave its row pending (below), or
	// be a duplicate here. A long outage may make the writer give results
	// up, and their deliveries repeat: at most what it can hold unwritten.
	if outage < 30*time.Second && dups != 0 {
		t.Errorf("%d duplicate deliveries, though wagate never stopped", dups)
	}
	if dups > unrecordedBound || most > 2 {
		t.Errorf("%d duplicate deliveries, one message %d times", dups, most)
	}
	if failed := listEvents(t, c, hook, "failed"); len(failed) != 0 {
		t.Errorf("%d events failed: %v", len(failed), failed[0])
	}
	waitRecorded(t, c, hook, 30*time.Second+outage, func() { logOutbox(t, map[string]string{"DATABASE_URL": pg.URL()}, hook) })
}
