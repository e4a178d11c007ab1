package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/store"
)

// Since migration 0007, PostgreSQL has no foreign keys from events to
// their client and session, nor from outbox rows to their event and
// webhook: the store's delete paths and Ingest keep those references. These
// tests hold both dialects to the same result.

// orphanChecks count the rows whose parent is gone, for every reference
// of the schema.
var orphanChecks = []struct{ name, query string }{
	{"events without client", `SELECT COUNT(*) FROM events x WHERE NOT EXISTS (SELECT 1 FROM clients p WHERE p.id = x.client_id)`},
	{"events without session", `SELECT COUNT(*) FROM events x WHERE x.session_id IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM whatsapp_connections p WHERE p.id = x.session_id)`},
	{"outbox rows without event", `SELECT COUNT(*) FROM whatsapp_webhook_events x WHERE NOT EXISTS (SELECT 1 FROM events p WHERE p.id = x.event_id)`},
	{"outbox rows without webhook", `SELECT COUNT(*) FROM whatsapp_webhook_events x WHERE NOT EXISTS (SELECT 1 FROM webhooks p WHERE p.id = x.webhook_id)`},
	{"outbox rows without client", `SELECT COUNT(*) FROM whatsapp_webhook_events x WHERE NOT EXISTS (SELECT 1 FROM clients p WHERE p.id = x.client_id)`},
	{"attempts without outbox row", `SELECT COUNT(*) FROM delivery_attempts x
		WHERE NOT EXISTS (SELECT 1 FROM whatsapp_webhook_events p WHERE p.id = x.webhook_event_id)`},
	{"sessions without client", `SELECT COUNT(*) FROM whatsapp_connections x WHERE NOT EXISTS (SELECT 1 FROM clients p WHERE p.id = x.client_id)`},
	{"webhooks without client", `SELECT COUNT(*) FROM webhooks x WHERE NOT EXISTS (SELECT 1 FROM clients p WHERE p.id = x.client_id)`},
	{"tokens without client", `SELECT COUNT(*) FROM client_tokens x WHERE NOT EXISTS (SELECT 1 FROM clients p WHERE p.id = x.client_id)`},
	{"media refs without session", `SELECT COUNT(*) FROM media_refs x WHERE NOT EXISTS (SELECT 1 FROM whatsapp_connections p WHERE p.id = x.session_id)`},
	{"idempotency keys without session", `SELECT COUNT(*) FROM outbound_messages x
		WHERE NOT EXISTS (SELECT 1 FROM whatsapp_connections p WHERE p.id = x.session_id)`},
}

func (f *outboxFixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.SQL().QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (f *outboxFixture) noOrphans(t *testing.T, after string) {
	t.Helper()
	for _, c := range orphanChecks {
		if n := f.count(t, c.query); n != 0 {
			t.Errorf("after %s: %d %s", after, n, c.name)
		}
	}
}

// tenant is one client's rows in the integrity fixture.
type tenant struct {
	id       int64
	sessions []string
	hooks    []string
}

// addTenant adds a client (or, with id, uses f's) with sessions and
// webhooks, and stores events of each session and session-less ones: each
// fanned out to every webhook, half delivered (with attempts), one with a
// media reference, and an idempotency key per session.
func (f *outboxFixture) addTenant(t *testing.T, name string, id int64, sessions ...string) tenant {
	t.Helper()
	ctx := context.Background()
	if id == 0 {
		c, err := f.db.CreateClient(ctx, name, "hash-"+name, "wg_"+name)
		if err != nil {
			t.Fatal(err)
		}
		id = c.ID
	}
	tn := tenant{id: id}
	for _, s := range sessions {
		f.execT(t, `INSERT INTO whatsapp_connections (id, client_id, user_id, phone_number, session_status, engine, created_at, updated_at)
			VALUES ($1, $2, $1, '5511999999999', 'connected', 'sandbox', 0, 0)`, s, id)
		tn.sessions = append(tn.sessions, s)
	}
	for i := range 2 {
		h := fmt.Sprintf("%s-hook-%d", name, i)
		f.execT(t, `INSERT INTO webhooks (id, client_id, phone_number, url, max_retries, events, secret_enc, active, created_at, updated_at)
			VALUES ($1, $2, '', 'http://127.0.0.1:9/x', 3, '["*"]', $3, $4, 0, 0)`, h, id, []byte("sealed"), true)
		tn.hooks = append(tn.hooks, h)
	}
	lease := delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)}
	for _, s := range append([]string{""}, sessions...) {
		evs := f.events(4, "message", name+s)
		if s != "" {
			evs[0].Media = &events.MediaRef{MessageID: "M-" + s, Ref: []byte("sealed")}
			if _, err := f.db.ClaimOutbound(ctx, s, "key-"+s, "hash", f.clk.now()); err != nil {
				t.Fatal(err)
			}
		}
		_, jobs, err := f.db.Ingest(ctx, delivery.Target{ClientID: id, SessionID: s, PhoneNumber: "5511999999999"}, evs, lease)
		if err != nil || len(jobs) != 8 {
			t.Fatalf("ingest for %s/%q: %d jobs, %v", name, s, len(jobs), err)
		}
		var res []delivery.Result
		for _, j := range jobs[:4] {
			res = append(res, delivery.Result{Job: j, Outcome: delivery.OutcomeDelivered, StartedAt: f.clk.now(), StatusCode: 200})
		}
		if _, err := f.db.Complete(ctx, res, 100, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	return tn
}

// rowsOf counts a client's events, outbox rows and attempts.
func (f *outboxFixture) rowsOf(t *testing.T, client int64) [3]int {
	t.Helper()
	return [3]int{
		f.count(t, `SELECT COUNT(*) FROM events WHERE client_id = $1`, client),
		f.count(t, `SELECT COUNT(*) FROM whatsapp_webhook_events WHERE client_id = $1`, client),
		f.count(t, `SELECT COUNT(*) FROM delivery_attempts a JOIN whatsapp_webhook_events r ON r.id = a.webhook_event_id
			WHERE r.client_id = $1`, client),
	}
}

// TestDeleteLeavesNoOrphans: deleting a webhook, a session or a client
// deletes what depends on it, and nothing of another client.
func TestDeleteLeavesNoOrphans(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.execT(t, `DELETE FROM whatsapp_connections WHERE id = $1`, f.session)
		a := f.addTenant(t, "a", f.clientID, "a-s1", "a-s2")
		b := f.addTenant(t, "b", 0, "b-s1")
		f.noOrphans(t, "setup")
		// 3 event sources (none, s1, s2) x 4 events, 2 webhooks, 4 delivered per source.
		if got := f.rowsOf(t, a.id); got != [3]int{12, 24, 12} {
			t.Fatalf("client a has %v events, rows, attempts", got)
		}
		others := f.rowsOf(t, b.id)

		if err := f.db.DeleteWebhook(ctx, b.id, a.hooks[0]); !errs.Is(err, errs.NotFound) {
			t.Fatalf("another client's webhook: %v", err)
		}
		if err := f.db.DeleteWebhook(ctx, a.id, a.hooks[0]); err != nil {
			t.Fatal(err)
		}
		if n := f.count(t, `SELECT COUNT(*) FROM whatsapp_webhook_events WHERE webhook_id = $1`, a.hooks[0]); n != 0 {
			t.Fatalf("%d rows of the deleted webhook", n)
		}
		if err := f.db.DeleteWebhook(ctx, a.id, a.hooks[0]); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleted twice: %v", err)
		}
		f.noOrphans(t, "DeleteWebhook")
		if got := f.rowsOf(t, a.id); got[0] != 12 || got[1] != 12 {
			t.Fatalf("client a after DeleteWebhook: %v", got)
		}

		if err := f.db.DeleteSession(ctx, a.sessions[0]); err != nil {
			t.Fatal(err)
		}
		if n := f.count(t, `SELECT COUNT(*) FROM events WHERE session_id = $1`, a.sessions[0]); n != 0 {
			t.Fatalf("%d events of the deleted session", n)
		}
		if err := f.db.DeleteSession(ctx, a.sessions[0]); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleted twice: %v", err)
		}
		f.noOrphans(t, "DeleteSession")
		// The session-less events and those of the other session stay.
		if got := f.rowsOf(t, a.id); got[0] != 8 || got[1] != 8 {
			t.Fatalf("client a after DeleteSession: %v", got)
		}

		if err := f.db.DeleteClient(ctx, a.id); err != nil {
			t.Fatal(err)
		}
		if got := f.rowsOf(t, a.id); got != [3]int{} {
			t.Fatalf("client a after DeleteClient: %v", got)
		}
		for _, q := range []string{`SELECT COUNT(*) FROM whatsapp_connections WHERE client_id = $1`,
			`SELECT COUNT(*) FROM webhooks WHERE client_id = $1`, `SELECT COUNT(*) FROM client_tokens WHERE client_id = $1`} {
			if n := f.count(t, q, a.id); n != 0 {
				t.Fatalf("%s: %d", q, n)
			}
		}
		if err := f.db.DeleteClient(ctx, a.id); !errs.Is(err, errs.NotFound) {
			t.Fatalf("deleted twice: %v", err)
		}
		f.noOrphans(t, "DeleteClient")
		if got := f.rowsOf(t, b.id); got != others {
			t.Fatalf("client b had %v events, rows, attempts; now %v", others, got)
		}
	})
}

// TestIngestAfterDelete: events of a deleted session or client are not
// stored, and the caller learns why.
func TestIngestAfterDelete(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h1", "", `["*"]`, true)
		target := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		if err := f.db.DeleteSession(ctx, f.session); err != nil {
			t.Fatal(err)
		}
		if n, _, err := f.db.Ingest(ctx, target, f.events(2, "message", "k"), delivery.Lease{}); !errs.Is(err, errs.NotFound) || n != 0 {
			t.Fatalf("ingest into a deleted session: %d %v", n, err)
		}
		target.SessionID = ""
		if err := f.db.DeleteClient(ctx, f.clientID); err != nil {
			t.Fatal(err)
		}
		if n, _, err := f.db.Ingest(ctx, target, f.events(2, "message", "k"), delivery.Lease{}); !errs.Is(err, errs.NotFound) || n != 0 {
			t.Fatalf("ingest for a deleted client: %d %v", n, err)
		}
		if n := f.count(t, `SELECT COUNT(*) FROM events`); n != 0 {
			t.Fatalf("%d events stored", n)
		}
	})
}

// TestDeleteRacingIngest deletes a webhook, then a session, then the
// client while events of them are being stored: on PostgreSQL the
// deletes and ingests overlap, and what the deletes leave must still have
// its parents.
func TestDeleteRacingIngest(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h1", "", `["*"]`, true)
		f.hook(t, "h2", "", `["*"]`, true)
		second := "22222222-2222-2222-2222-222222222222"
		f.execT(t, `INSERT INTO whatsapp_connections (id, client_id, user_id, phone_number, session_status, engine, created_at, updated_at)
			VALUES ($1, $2, 'u2', '5511999999999', 'connected', 'sandbox', 0, 0)`, second, f.clientID)
		var idMu sync.Mutex
		batch := func(prefix string) []delivery.NewEvent {
			idMu.Lock()
			defer idMu.Unlock()
			evs := make([]delivery.NewEvent, 20)
			for i := range evs {
				evs[i] = delivery.NewEvent{ID: delivery.NewID(), Type: "message", DedupeKey: fmt.Sprintf("%s-%d", prefix, i),
					Payload: []byte(`{}`), CreatedAt: f.clk.now()}
			}
			return evs
		}
		// race runs ingesters for sessions until del has returned and each
		// has stored a batch after it, or has been told its target is gone.
		race := func(what string, del func() error, sessions ...string) {
			t.Helper()
			var wg sync.WaitGroup
			deleted := make(chan struct{})
			stored := make(chan int, 100)
			for g, s := range sessions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					target := delivery.Target{ClientID: f.clientID, SessionID: s, PhoneNumber: "5511999999999"}
					lease := delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)}
					for i, after := 0, false; ; i++ {
						select {
						case <-deleted:
							after = true
						default:
						}
						n, _, err := f.db.Ingest(ctx, target, batch(fmt.Sprintf("%s-%d-%d", what, g, i)), lease)
						if errs.Is(err, errs.NotFound) {
							return
						}
						if err != nil {
							t.Errorf("%s: ingest: %v", what, err)
							return
						}
						stored <- n
						if after {
							return
						}
					}
				}()
			}
			for range 3 * len(sessions) {
				<-stored // the ingests are under way
			}
			if err := del(); err != nil {
				t.Errorf("%s: %v", what, err)
			}
			close(deleted)
			go func() {
				for range stored {
				}
			}()
			wg.Wait()
			close(stored)
			f.noOrphans(t, what)
		}
		race("DeleteWebhook", func() error { return f.db.DeleteWebhook(ctx, f.clientID, "h1") }, f.session, second, "")
		race("DeleteSession", func() error { return f.db.DeleteSession(ctx, f.session) }, f.session, second)
		race("DeleteClient", func() error { return f.db.DeleteClient(ctx, f.clientID) }, second, "")
		if got := f.rowsOf(t, f.clientID); got != [3]int{} {
			t.Fatalf("after DeleteClient: %v events, rows, attempts", got)
		}
	})
}

// TestIngestNullsAndDuplicates: a session-less event and an event without
// a dedupe key store NULL there (so neither is ever a duplicate), and
// duplicates within a batch or of stored events are skipped.
func TestIngestNullsAndDuplicates(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h1", "", `["*"]`, true)
		withSession := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		noSession := delivery.Target{ClientID: f.clientID, PhoneNumber: "5511999999999"}
		ev := func(key string) delivery.NewEvent {
			return delivery.NewEvent{ID: f.ids.New(f.clk.now()), Type: "message", DedupeKey: key,
				Payload: []byte(`{"key":"` + key + `"}`), CreatedAt: f.clk.now()}
		}
		type stored struct {
			client          int64
			session, key    sql.NullString
			typ, payload    string
			created, outbox int64
		}
		read := func(id string) stored {
			t.Helper()
			var s stored
			if err := f.db.SQL().QueryRow(`SELECT client_id, session_id, dedupe_key, event_type, payload, created_at,
				(SELECT COUNT(*) FROM whatsapp_webhook_events WHERE event_id = $1) FROM events WHERE id = $1`, id).Scan(
				&s.client, &s.session, &s.key, &s.typ, &s.payload, &s.created, &s.outbox); err != nil {
				t.Fatalf("event %s: %v", id, err)
			}
			return s
		}

		keyed, keyless := ev("k1"), ev("")
		n, jobs, err := f.db.Ingest(ctx, withSession, []delivery.NewEvent{keyed, keyless}, delivery.Lease{})
		if err != nil || n != 2 || len(jobs) != 2 {
			t.Fatalf("ingest: %d %d %v", n, len(jobs), err)
		}
		got := read(keyed.ID)
		if got.client != f.clientID || got.session.String != f.session || got.key.String != "k1" || got.typ != "message" ||
			got.payload != `{"key":"k1"}` || got.created != f.clk.now().UnixMilli() || got.outbox != 1 {
			t.Fatalf("keyed event: %+v", got)
		}
		if got := read(keyless.ID); got.key.Valid || !got.session.Valid {
			t.Fatalf("keyless event: session %v, key %v; want the session and NULL", got.session, got.key)
		}

		// Without a session both are NULL: the same key twice is stored twice.
		a, b := ev("k1"), ev("k1")
		if n, jobs, err := f.db.Ingest(ctx, noSession, []delivery.NewEvent{a}, delivery.Lease{}); err != nil || n != 1 || len(jobs) != 1 {
			t.Fatalf("session-less: %d %d %v", n, len(jobs), err)
		}
		if n, _, err := f.db.Ingest(ctx, noSession, []delivery.NewEvent{b}, delivery.Lease{}); err != nil || n != 1 {
			t.Fatalf("session-less again: %d %v", n, err)
		}
		for _, id := range []string{a.ID, b.ID} {
			if got := read(id); got.session.Valid || got.key.String != "k1" || got.outbox != 1 {
				t.Fatalf("session-less event: session %v, key %v, %d rows", got.session, got.key, got.outbox)
			}
		}

		// With a session: a stored key, and a key twice in one batch, are
		// stored once; only what was stored is fanned out.
		dup1, dup2, stale, fresh := ev("k2"), ev("k2"), ev("k1"), ev("k3")
		n, jobs, err = f.db.Ingest(ctx, withSession, []delivery.NewEvent{dup1, stale, dup2, fresh}, delivery.Lease{})
		if err != nil || n != 2 || len(jobs) != 2 || jobs[0].EventID != dup1.ID || jobs[1].EventID != fresh.ID {
			t.Fatalf("duplicates: stored %d, jobs %+v, %v", n, jobs, err)
		}
		for _, id := range []string{dup2.ID, stale.ID} {
			var one int
			if err := f.db.SQL().QueryRow(`SELECT 1 FROM events WHERE id = $1`, id).Scan(&one); err != sql.ErrNoRows {
				t.Fatalf("duplicate %s stored: %v", id, err)
			}
		}
		if n := f.count(t, `SELECT COUNT(*) FROM events`); n != 6 {
			t.Fatalf("%d events, want 6", n)
		}
	})
}

// TestIngestRowColumns: every column of a new outbox row, leased, deferred
// or due now as the lease's room says.
func TestIngestRowColumns(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		for _, h := range []string{"h-room", "h-full", "h-stalled"} {
			f.hook(t, h, "", `["*"]`, true)
		}
		now := f.clk.now()
		room := map[string]int{"h-room": 1, "h-full": 0, "h-stalled": -1}
		lease := delivery.Lease{Owner: "node-a", Until: now.Add(time.Minute), Defer: 30 * time.Second,
			Room: func(id string) int { return room[id] }}
		evs := f.events(2, "message.ack", "k")
		_, jobs, err := f.db.Ingest(ctx, delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}, evs, lease)
		if err != nil || len(jobs) != 6 {
			t.Fatalf("ingest: %d jobs, %v", len(jobs), err)
		}
		for _, j := range jobs {
			// The first event's job takes h-room's only place.
			leased := j.WebhookID == "h-room" && j.EventID == evs[0].ID
			owner, next := "", now
			switch {
			case leased:
				owner, next = "node-a", lease.Until
			case j.WebhookID == "h-stalled":
				next = now.Add(lease.Defer)
			}
			if j.Leased != leased {
				t.Errorf("job of %s for event %s: leased %v", j.WebhookID, j.EventID, j.Leased)
			}
			var got struct {
				event, hook, typ, status, owner string
				client, attempts, next, created int64
				updated, code                   int64
				lastErr                         string
				delivered                       sql.NullInt64
			}
			if err := f.db.SQL().QueryRow(`SELECT event_id, webhook_id, event_type, client_id, status, attempts, next_attempt_at,
				lease_owner, last_status_code, last_error, delivered_at, created_at, updated_at
				FROM whatsapp_webhook_events WHERE id = $1`, j.ID).Scan(&got.event, &got.hook, &got.typ, &got.client, &got.status,
				&got.attempts, &got.next, &got.owner, &got.code, &got.lastErr, &got.delivered, &got.created, &got.updated); err != nil {
				t.Fatal(err)
			}
			if got.event != j.EventID || got.hook != j.WebhookID || got.typ != "message.ack" || got.client != f.clientID ||
				got.status != "pending" || got.attempts != 0 || got.next != next.UnixMilli() || got.owner != owner ||
				got.code != 0 || got.lastErr != "" || got.delivered.Valid || got.created != now.UnixMilli() || got.updated != now.UnixMilli() {
				t.Errorf("row of %s for event %s: %+v; want owner %q, next %d", j.WebhookID, j.EventID, got, owner, next.UnixMilli())
			}
		}
	})
}

// TestCompleteWritesEveryColumn: a batch of results writes each row's new
// state and one attempt per result.
func TestCompleteWritesEveryColumn(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h1", "", `["*"]`, true)
		target := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		_, jobs, err := f.db.Ingest(ctx, target, f.events(3, "message", "k"), delivery.Lease{Owner: "n", Until: f.clk.now().Add(time.Minute)})
		if err != nil || len(jobs) != 3 {
			t.Fatalf("ingest: %d %v", len(jobs), err)
		}
		started := f.clk.now().Add(-2 * time.Second)
		f.clk.advance(time.Second)
		results := []delivery.Result{
			{Job: jobs[0], Outcome: delivery.OutcomeDelivered, StartedAt: started, Duration: 1500 * time.Millisecond,
				StatusCode: 204, ResponseBody: "ok"},
			{Job: jobs[1], Outcome: delivery.OutcomeRetry, StartedAt: started, Duration: 20 * time.Millisecond, StatusCode: 500,
				ResponseBody: "bad \xff byte", Error: "endpoint answered 500", NextAttemptAt: started.Add(time.Minute)},
			{Job: jobs[2], Outcome: delivery.OutcomeFailed, StartedAt: started, Duration: 3 * time.Millisecond, StatusCode: 400,
				Error: "endpoint answered 400"},
		}
		if _, err := f.db.Complete(ctx, results, 100, time.Hour); err != nil {
			t.Fatal(err)
		}
		type row struct {
			status, owner, lastErr string
			attempts, code, next   int64
			delivered              sql.NullInt64
			updated                int64
		}
		type attempt struct {
			n, started, duration, code int64
			body, err                  string
		}
		check := func(j delivery.Job, wantRow row, wantAttempts []attempt) {
			t.Helper()
			var got row
			if err := f.db.SQL().QueryRow(`SELECT status, lease_owner, last_error, attempts, last_status_code, next_attempt_at,
				delivered_at, updated_at FROM whatsapp_webhook_events WHERE id = $1`, j.ID).Scan(&got.status, &got.owner,
				&got.lastErr, &got.attempts, &got.code, &got.next, &got.delivered, &got.updated); err != nil {
				t.Fatal(err)
			}
			if got != wantRow {
				t.Errorf("row %s: %+v, want %+v", j.ID, got, wantRow)
			}
			rows, err := f.db.SQL().Query(`SELECT attempt, started_at, duration_ms, status_code, response_body, error
				FROM delivery_attempts WHERE webhook_event_id = $1 ORDER BY attempt`, j.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var all []attempt
			for rows.Next() {
				var a attempt
				if err := rows.Scan(&a.n, &a.started, &a.duration, &a.code, &a.body, &a.err); err != nil {
					t.Fatal(err)
				}
				all = append(all, a)
			}
			if fmt.Sprint(all) != fmt.Sprint(wantAttempts) {
				t.Errorf("attempts of %s: %+v, want %+v", j.ID, all, wantAttempts)
			}
		}
		st, now := started.UnixMilli(), f.clk.now().UnixMilli()
		check(jobs[0], row{status: "delivered", attempts: 1, code: 204, next: st,
			delivered: sql.NullInt64{Int64: st + 1500, Valid: true}, updated: now},
			[]attempt{{1, st, 1500, 204, "ok", ""}})
		check(jobs[1], row{status: "pending", lastErr: "endpoint answered 500", attempts: 1, code: 500,
			next: started.Add(time.Minute).UnixMilli(), updated: now},
			[]attempt{{1, st, 20, 500, "bad \uFFFD byte", "endpoint answered 500"}})
		check(jobs[2], row{status: "failed", lastErr: "endpoint answered 400", attempts: 1, code: 400, next: st, updated: now},
			[]attempt{{1, st, 3, 400, "", "endpoint answered 400"}})

		// The retried row's second attempt (the job as a claim returns it).
		f.clk.advance(2 * time.Minute)
		retry := jobs[1]
		retry.Attempts = 1
		again := f.clk.now()
		if _, err := f.db.Complete(ctx, []delivery.Result{{Job: retry, Outcome: delivery.OutcomeDelivered, StartedAt: again,
			Duration: time.Millisecond, StatusCode: 200}}, 100, time.Hour); err != nil {
			t.Fatal(err)
		}
		check(jobs[1], row{status: "delivered", lastErr: "", attempts: 2, code: 200, next: again.UnixMilli(),
			delivered: sql.NullInt64{Int64: again.UnixMilli() + 1, Valid: true}, updated: again.UnixMilli()},
			[]attempt{{1, st, 20, 500, "bad \uFFFD byte", "endpoint answered 500"}, {2, again.UnixMilli(), 1, 200, "", ""}})
	})
}

// TestMigration0007: the lease-owner index is gone on both dialects; on
// PostgreSQL the hot path's foreign keys are too, but not the attempts'.
func TestMigration0007(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		index := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'wwe_lease_owner'`
		if dialect == store.Postgres {
			index = `SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'wwe_lease_owner'`
		}
		if n := f.count(t, index); n != 0 {
			t.Fatal("wwe_lease_owner still exists")
		}
		if dialect != store.Postgres {
			return
		}
		rows, err := f.db.SQL().Query(`SELECT conrelid::regclass::text || '->' || confrelid::regclass::text FROM pg_constraint
			WHERE contype = 'f' AND conrelid::regclass::text IN ('events', 'whatsapp_webhook_events', 'delivery_attempts') ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var fks []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			fks = append(fks, s)
		}
		if fmt.Sprint(fks) != "[delivery_attempts->whatsapp_webhook_events]" {
			t.Fatalf("foreign keys: %v", fks)
		}
	})
}
