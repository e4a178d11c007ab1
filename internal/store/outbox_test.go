package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/clients"
	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

type outboxFixture struct {
	ids      delivery.IDGen
	db       *store.DB
	clk      *clock
	clientID int64
	session  string
}

func newOutbox(t *testing.T, dialect string) *outboxFixture {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	db := testdb.Open(t, dialect, store.Options{Now: clk.now})
	c, _, err := clients.NewService(db).Create(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	f := &outboxFixture{db: db, clk: clk, clientID: c.ID, session: "11111111-1111-1111-1111-111111111111"}
	f.execT(t, `INSERT INTO whatsapp_connections (id, client_id, user_id, phone_number, session_status, engine, created_at, updated_at)
		VALUES ($1, $2, 'u1', '5511999999999', 'connected', 'sandbox', 0, 0)`, f.session, c.ID)
	return f
}

func (f *outboxFixture) execT(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := f.db.SQL().Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// hook inserts a webhook row directly; the store test needs no secrets.
func (f *outboxFixture) hook(t *testing.T, id, phone, events string, active bool) {
	t.Helper()
	f.execT(t, `INSERT INTO webhooks (id, client_id, phone_number, url, max_retries, events, secret_enc, active, created_at, updated_at)
		VALUES ($1, $2, $3, 'http://127.0.0.1:9/x', 3, $4, $5, $6, 0, 0)`, id, f.clientID, phone, events, []byte("sealed"), active)
}

func (f *outboxFixture) events(n int, typ, prefix string) []delivery.NewEvent {
	out := make([]delivery.NewEvent, n)
	for i := range out {
		out[i] = delivery.NewEvent{ID: f.ids.New(f.clk.now()), Type: typ, DedupeKey: fmt.Sprintf("%s-%d", prefix, i),
			Payload: []byte(fmt.Sprintf(`{"n":%d}`, i)), CreatedAt: f.clk.now()}
	}
	return out
}

func TestOutboxIngestAndFanout(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h-all", "", `["*"]`, true)
		f.hook(t, "h-msg", "5511999999999", `["message"]`, true)
		f.hook(t, "h-other-phone", "5511000000000", `["*"]`, true)
		f.hook(t, "h-ack", "", `["message.ack"]`, true)
		f.hook(t, "h-off", "", `["*"]`, false)
		target := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		lease := delivery.Lease{Owner: "node-a", Until: f.clk.now().Add(time.Minute)}

		evs := f.events(450, "message", "k") // more than one chunk
		n, jobs, err := f.db.Ingest(ctx, target, evs, lease)
		if err != nil {
			t.Fatal(err)
		}
		if n != 450 || len(jobs) != 900 {
			t.Fatalf("stored %d, jobs %d; want 450 and 900 (h-all, h-msg)", n, len(jobs))
		}
		for _, j := range jobs {
			if j.WebhookID != "h-all" && j.WebhookID != "h-msg" {
				t.Fatalf("fanned out to %s", j.WebhookID)
			}
			if len(j.Payload) == 0 || j.ClientID != f.clientID {
				t.Fatalf("job %+v", j)
			}
		}
		// A redelivery of the same keys stores nothing; new keys in the same
		// batch still go through.
		again := f.events(450, "message", "k")
		again = append(again, f.events(1, "message", "new")...)
		n, jobs, err = f.db.Ingest(ctx, target, again, lease)
		if err != nil || n != 1 || len(jobs) != 2 {
			t.Fatalf("redelivery: stored %d jobs %d err %v", n, len(jobs), err)
		}
		// Events without a key are never deduplicated.
		noKey := []delivery.NewEvent{{ID: delivery.NewID(), Type: "session.status", Payload: []byte(`{}`), CreatedAt: f.clk.now()},
			{ID: delivery.NewID(), Type: "session.status", Payload: []byte(`{}`), CreatedAt: f.clk.now()}}
		if n, jobs, err = f.db.Ingest(ctx, target, noKey, lease); err != nil || n != 2 || len(jobs) != 2 {
			t.Fatalf("keyless: %d %d %v", n, len(jobs), err)
		}
		// Leased rows are not claimable until the lease ends or is released.
		got, err := f.db.Claim(ctx, delivery.Lease{Owner: "node-b", Until: f.clk.now().Add(time.Minute)}, 10, nil, nil)
		if err != nil || len(got) != 0 {
			t.Fatalf("claimed leased rows: %d %v", len(got), err)
		}
		if n, err := f.db.ReleaseOwner(ctx, "node-a"); err != nil || n != 904 {
			t.Fatalf("release: %d %v", n, err)
		}
		got, err = f.db.Claim(ctx, delivery.Lease{Owner: "node-b", Until: f.clk.now().Add(time.Minute)}, 1000, []string{"h-msg"}, nil)
		if err != nil || len(got) != 453 {
			t.Fatalf("claim skipping h-msg: %d %v", len(got), err)
		}
		for _, j := range got {
			if j.WebhookID != "h-all" || len(j.Payload) == 0 {
				t.Fatalf("claimed %+v", j)
			}
		}
		st, err := f.db.OutboxStats(ctx)
		// Rows a node holds are not due: 453 were just claimed.
		if err != nil || st.Pending != 904 || st.Due != 451 || st.Failed != 0 {
			t.Fatalf("stats %+v %v", st, err)
		}
	})
}

func TestOutboxCompleteAndDisable(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h1", "", `["*"]`, true)
		f.hook(t, "h2", "", `["*"]`, true)
		target := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		lease := delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)}
		_, jobs, err := f.db.Ingest(ctx, target, f.events(12, "message", "k"), lease)
		if err != nil {
			t.Fatal(err)
		}
		var h1, h2 []delivery.Job
		for _, j := range jobs {
			if j.WebhookID == "h1" {
				h1 = append(h1, j)
			} else {
				h2 = append(h2, j)
			}
		}
		now := f.clk.now()
		var results []delivery.Result
		// h1: everything delivered. h2: 11 failures in a row, then one release.
		for _, j := range h1 {
			results = append(results, delivery.Result{Job: j, Outcome: delivery.OutcomeDelivered, StartedAt: now, Duration: 5 * time.Millisecond, StatusCode: 200})
		}
		for i, j := range h2[:11] {
			out := delivery.OutcomeRetry
			if i == 10 {
				out = delivery.OutcomeFailed
			}
			results = append(results, delivery.Result{Job: j, Outcome: out, StartedAt: now, StatusCode: 500,
				ResponseBody: "boom", Error: "endpoint answered 500", NextAttemptAt: now.Add(time.Second)})
		}
		results = append(results, delivery.Result{Job: h2[11], Outcome: delivery.OutcomeRelease})
		// Not failing long enough yet: no disable.
		disabled, err := f.db.Complete(ctx, results, 10, time.Hour)
		if err != nil || len(disabled) != 0 {
			t.Fatalf("complete: %v %v", disabled, err)
		}
		delivered, _, err := f.db.ListEvents(ctx, delivery.ListQuery{ClientID: f.clientID, WebhookID: "h1", Status: "delivered", Limit: 100})
		if err != nil || len(delivered) != 12 || delivered[0].DeliveredAt == nil || delivered[0].Attempts != 1 {
			t.Fatalf("delivered: %d %v", len(delivered), err)
		}
		failed, _, _ := f.db.ListEvents(ctx, delivery.ListQuery{ClientID: f.clientID, WebhookID: "h2", Status: "failed", Limit: 100})
		pending, _, _ := f.db.ListEvents(ctx, delivery.ListQuery{ClientID: f.clientID, WebhookID: "h2", Status: "pending", Limit: 100})
		if len(failed) != 1 || len(pending) != 11 {
			t.Fatalf("h2 failed %d pending %d", len(failed), len(pending))
		}
		it, err := f.db.GetEvent(ctx, f.clientID, failed[0].ID)
		if err != nil || len(it.AttemptLog) != 1 || it.AttemptLog[0].ResponseBody != "boom" || it.LastStatusCode != 500 {
			t.Fatalf("event %+v %v", it, err)
		}
		var streak int
		f.db.SQL().QueryRow(`SELECT consecutive_failures FROM webhooks WHERE id = 'h2'`).Scan(&streak)
		if streak != 11 {
			t.Fatalf("streak %d", streak)
		}
		// An hour later one more failure disables it.
		f.clk.advance(2 * time.Hour)
		retry := pending[0]
		claimed, err := f.db.Claim(ctx, delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)}, 100, nil, nil)
		if err != nil || len(claimed) != 11 {
			t.Fatalf("claim after backoff: %d %v", len(claimed), err)
		}
		disabled, err = f.db.Complete(ctx, []delivery.Result{{Job: claimed[0], Outcome: delivery.OutcomeRetry, StartedAt: f.clk.now(), StatusCode: 502, NextAttemptAt: f.clk.now()}}, 10, time.Hour)
		if err != nil || len(disabled) != 1 || disabled[0].WebhookID != "h2" || disabled[0].ConsecutiveFailures != 12 {
			t.Fatalf("disable: %+v %v", disabled, err)
		}
		// Disabled webhooks' rows are not claimed.
		if err := f.db.SQL().QueryRow(`SELECT 1`).Err(); err != nil {
			t.Fatal(err)
		}
		if n, _ := f.db.ReleaseOwner(ctx, "n"); n == 0 {
			t.Fatal("nothing to release")
		}
		if claimed, _ := f.db.Claim(ctx, delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)}, 100, nil, nil); len(claimed) != 0 {
			t.Fatalf("claimed %d rows of a disabled webhook", len(claimed))
		}
		// A success resets the streak of h1 (already 0) and 410 disables at once.
		_ = retry
		_, jobs, _ = f.db.Ingest(ctx, target, f.events(1, "message", "gone"), lease)
		disabled, err = f.db.Complete(ctx, []delivery.Result{{Job: jobs[0], Outcome: delivery.OutcomeFailed, StartedAt: f.clk.now(), StatusCode: 410, DisableReason: "endpoint answered 410 Gone"}}, 10, time.Hour)
		if err != nil || len(disabled) != 1 || disabled[0].Reason != "endpoint answered 410 Gone" {
			t.Fatalf("410: %+v %v", disabled, err)
		}
	})
}

func TestOutboxRequeueRecoverPagePrune(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h1", "", `["*"]`, true)
		target := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		_, jobs, err := f.db.Ingest(ctx, target, f.events(5, "message", "k"), delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		var res []delivery.Result
		for _, j := range jobs {
			res = append(res, delivery.Result{Job: j, Outcome: delivery.OutcomeFailed, StartedAt: f.clk.now(), StatusCode: 500})
		}
		if _, err := f.db.Complete(ctx, res, 100, time.Hour); err != nil {
			t.Fatal(err)
		}
		// Pages of 2, newest first, then the end.
		var seen []string
		var cursor string
		for page := 0; ; page++ {
			items, next, err := f.db.ListEvents(ctx, delivery.ListQuery{ClientID: f.clientID, WebhookID: "h1", Limit: 2, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				seen = append(seen, it.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if len(seen) != 5 || seen[0] != jobs[4].ID || seen[4] != jobs[0].ID {
			t.Fatalf("pages %v", seen)
		}
		// Scoped to the client.
		if _, _, err := f.db.ListEvents(ctx, delivery.ListQuery{ClientID: f.clientID + 1, WebhookID: "h1", Limit: 2}); !errs.Is(err, errs.NotFound) {
			t.Fatalf("other client list: %v", err)
		}
		if _, err := f.db.GetEvent(ctx, f.clientID+1, jobs[0].ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("other client get: %v", err)
		}
		if _, err := f.db.Requeue(ctx, f.clientID+1, jobs[0].ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("other client requeue: %v", err)
		}
		if wh, err := f.db.Requeue(ctx, f.clientID, jobs[0].ID); err != nil || wh != "h1" {
			t.Fatalf("requeue: %v %v", wh, err)
		}
		it, _ := f.db.GetEvent(ctx, f.clientID, jobs[0].ID)
		if it.Status != delivery.StatusPending || it.Attempts != 1 {
			t.Fatalf("requeued %+v", it)
		}
		claimed, _ := f.db.Claim(ctx, delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)}, 10, nil, nil)
		if len(claimed) != 1 || claimed[0].BudgetBase != 1 || claimed[0].Attempts != 1 {
			t.Fatalf("claimed %+v", claimed)
		}
		if n, err := f.db.Recover(ctx, f.clientID, "h1", f.clk.now().Add(-time.Hour)); err != nil || n != 4 {
			t.Fatalf("recover: %d %v", n, err)
		}
		if _, err := f.db.Recover(ctx, f.clientID+1, "h1", time.Time{}); !errs.Is(err, errs.NotFound) {
			t.Fatalf("other client recover: %v", err)
		}
		// Prune keeps pending rows and young rows.
		if n, err := f.db.Prune(ctx, f.clk.now().Add(time.Hour), 100); err != nil || n != 0 {
			t.Fatalf("prune of pending rows: %d %v", n, err)
		}
		_, more, _ := f.db.Ingest(ctx, target, f.events(3, "message", "old"), delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)})
		res = res[:0]
		for _, j := range more {
			res = append(res, delivery.Result{Job: j, Outcome: delivery.OutcomeDelivered, StartedAt: f.clk.now(), StatusCode: 200})
		}
		f.db.Complete(ctx, res, 100, time.Hour)
		if n, err := f.db.Prune(ctx, f.clk.now().Add(-time.Hour), 100); err != nil || n != 0 {
			t.Fatalf("prune young rows: %d %v", n, err)
		}
		if n, err := f.db.Prune(ctx, f.clk.now().Add(time.Hour), 100); err != nil || n != 3 {
			t.Fatalf("prune: %d %v", n, err)
		}
		var events int
		f.db.SQL().QueryRow(`SELECT COUNT(*) FROM events`).Scan(&events)
		if events != 5 {
			t.Fatalf("events left %d, want the 5 with pending rows", events)
		}
	})
}

// eachDialect runs fn on every dialect, for tests that open their own store.
func eachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	t.Helper()
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}
