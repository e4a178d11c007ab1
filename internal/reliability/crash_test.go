package reliability_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// The delivery engine's sizes that bound what a SIGKILL can leave sent but
// unrecorded (internal/delivery/engine.go): results are written by one
// writer in batches of BatchSize, from a channel of 4×BatchSize.
const (
	resultBatch = 500             // delivery.Config.BatchSize default
	resultQueue = 4 * resultBatch // cap(Engine.results)
	crashWorker = 64              // WAGATE_WORKERS, set explicitly below
)

// unrecordedBound is the most deliveries that a receiver can have got, at the
// moment of a SIGKILL, without their result being committed: each of them
// is sent again after the restart, and nothing else is.
//
//   - attempts in flight: one per worker busy with a POST;
//   - results a worker finished but could not yet hand over, blocked on the
//     full results channel: one per worker too; a worker is either posting
//     or blocked, so these two together are at most WAGATE_WORKERS;
//   - results waiting in the channel: at most its capacity, 4×BatchSize;
//   - the batch the writer is committing: at most BatchSize.
//
// Jobs leased and held in memory but not yet posted are taken back at the
// restart (ReleaseOwner) and sent once: they are not duplicates.
const unrecordedBound = crashWorker + resultQueue + resultBatch

// TestCrashDuringBurst SIGKILLs wagate in the middle of a burst of inbound
// messages, restarts it on the same database, and checks that every
// acknowledged message reaches the receiver, and that the only duplicates
// are deliveries the receiver had got but wagate had not recorded yet.
func TestCrashDuringBurst(t *testing.T) {
	t.Parallel()
	n := burstSize(t)
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			env := baseEnv(t, map[string]string{"WAGATE_WORKERS": strconv.Itoa(crashWorker)})
			if dialect == store.Postgres {
				env["DATABASE_URL"] = testdb.PostgresURL(t)
			}
			p := startProcess(t, env)
			rc := newCountingReceiver(t)
			c, _ := newClient(t, p.base(), adminToken, "crash")
			hook := registerWebhook(t, c, map[string]any{"webhook_url": rc.url(), "max_retries": 10})
			session := linkedSandbox(t, c, "u1", "5511999999999")

			// The kill lands once a third of the burst is acknowledged, with
			// deliveries in full flow. Only batches whose 202 arrived count.
			in := newInjector(p.base(), c.token, session, 250)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			started := time.Now()
			done := in.run(ctx, n, true)
			waitFor(t, "a third of the burst", 5*time.Minute, func() bool { return in.count() >= n/3 })
			waitFor(t, "deliveries under way", time.Minute, func() bool { return len(rc.snapshot()) > 0 })
			p.kill()
			<-done
			// Requests already on the wire still reach the receiver's handler.
			time.Sleep(500 * time.Millisecond)
			atKill := rc.snapshot()
			recorded := deliveredRows(t, env, hook)
			unrecorded := len(atKill) - recorded
			t.Logf("killed after %v: %d accepted, %d received, %d recorded as delivered, %d sent but unrecorded",
				time.Since(started).Round(time.Millisecond), in.count(), len(atKill), recorded, unrecorded)
			if unrecorded < 0 {
				t.Fatalf("%d rows are delivered but the receiver got only %d messages", recorded, len(atKill))
			}
			if unrecorded > unrecordedBound {
				t.Errorf("%d deliveries were sent but unrecorded at the kill; the engine's design allows at most %d", unrecorded, unrecordedBound)
			}

			p.start()
			restarted := time.Now()
			<-in.run(ctx, n, true)
			if in.count() < n {
				t.Fatalf("only %d of %d messages accepted after the restart", in.count(), n)
			}
			all := in.ids()
			waitDelivered(t, rc, all, 5*time.Minute, func() { logOutbox(t, env, hook) })
			final := rc.snapshot()
			dups, most := duplicates(final)
			t.Logf("%d accepted messages delivered %v after the restart; %d duplicates", len(all), time.Since(restarted).Round(time.Millisecond), dups)
			if dups > unrecorded {
				t.Errorf("%d duplicates, but only %d deliveries were unrecorded at the kill", dups, unrecorded)
			}
			if most > 2 {
				t.Errorf("a message was delivered %d times; one kill allows at most twice", most)
			}
			waitRecorded(t, c, hook, time.Minute, func() { logOutbox(t, env, hook) })
			if failed := listEvents(t, c, hook, "failed"); len(failed) != 0 {
				t.Errorf("%d events failed: %v", len(failed), failed[0])
			}
			if st := getJSON(t, c, "/api/whatsapp/sessions/"+session); st["status"] != "connected" {
				t.Fatalf("session after the restart: %v", st)
			}
		})
	}
}
