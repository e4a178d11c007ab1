package store_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/clients"
	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// The outbox benchmarks: Ingest (the fan-out to N webhooks), Claim and
// Complete, in batches of benchBatch as the delivery engine makes them.
// They run on SQLite, and on PostgreSQL when WAGATE_TEST_POSTGRES_URL
// names a server (scripts/test.sh -run '^$' -bench . ./internal/store/
// starts one); without it they say so in the output.

const benchBatch = 500

// benchDialects runs fn per dialect that can run here.
func benchDialects(b *testing.B, fn func(b *testing.B, dialect string)) {
	for _, d := range testdb.Dialects {
		if d == store.Postgres && os.Getenv(testdb.EnvPostgres) == "" {
			// Printed, not logged: a parent benchmark's log shows only with -v.
			fmt.Fprintf(os.Stderr, "%s/postgres: not run: %s is not set; scripts/test.sh -run '^$' -bench . ./internal/store/ runs it\n", b.Name(), testdb.EnvPostgres)
			continue
		}
		b.Run(d, func(b *testing.B) { fn(b, d) })
	}
}

type benchOutbox struct {
	db     *store.DB
	target delivery.Target
	lease  delivery.Lease
	n      int
}

// newBenchOutbox opens a migrated store with one client, one session and
// hooks webhooks subscribed to its messages.
func newBenchOutbox(b *testing.B, dialect string, hooks int) *benchOutbox {
	b.Helper()
	db := testdb.Open(b, dialect, store.Options{})
	ctx := context.Background()
	c, _, err := clients.NewService(db).Create(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	session := "22222222-2222-2222-2222-222222222222"
	phone := "5511999999999"
	exec := func(q string, args ...any) {
		if _, err := db.SQL().Exec(q, args...); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO whatsapp_connections (id, client_id, user_id, phone_number, session_status, engine, created_at, updated_at)
		VALUES ($1, $2, 'u1', $3, 'connected', 'sandbox', 0, 0)`, session, c.ID, phone)
	for i := range hooks {
		exec(`INSERT INTO webhooks (id, client_id, phone_number, url, max_retries, events, secret_enc, active, created_at, updated_at)
			VALUES ($1, $2, $3, 'http://127.0.0.1:9/x', 5, '["message"]', $4, $5, 0, 0)`,
			fmt.Sprintf("hook-%03d", i), c.ID, phone, []byte("sealed"), true)
	}
	return &benchOutbox{
		db:     db,
		target: delivery.Target{ClientID: c.ID, SessionID: session, PhoneNumber: phone},
		lease:  delivery.Lease{Owner: "bench-node", Until: time.Now().Add(time.Hour)},
	}
}

// batch returns benchBatch new message events with realistic payloads.
func (o *benchOutbox) batch(b *testing.B) []delivery.NewEvent {
	now := time.Now()
	evs := make([]delivery.NewEvent, benchBatch)
	for i := range evs {
		o.n++
		id := delivery.NewID()
		in := events.Inbound{Type: events.TypeMessage, MessageID: "BENCH" + strconv.Itoa(o.n), From: "5511988887777",
			To: "5511999999999", Timestamp: now, Kind: "text", Content: "wagate benchmark message, forty bytes..",
			Metadata: map[string]any{"chat": "5511988887777@s.whatsapp.net", "is_group": false, "sandbox": true}}
		payload, err := events.BuildPayload(id, o.target.ClientID, o.target.SessionID, o.target.PhoneNumber, in)
		if err != nil {
			b.Fatal(err)
		}
		evs[i] = delivery.NewEvent{ID: id, Type: in.Type, DedupeKey: in.Key(), Payload: payload, CreatedAt: now}
	}
	return evs
}

// BenchmarkIngest stores batches of events and fans each out to N
// webhooks, leased as the engine does when it has room.
func BenchmarkIngest(b *testing.B) {
	benchDialects(b, func(b *testing.B, dialect string) {
		for _, hooks := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("webhooks=%d", hooks), func(b *testing.B) {
				o := newBenchOutbox(b, dialect, hooks)
				ctx := context.Background()
				stored := 0
				for b.Loop() {
					b.StopTimer()
					evs := o.batch(b)
					b.StartTimer()
					n, jobs, err := o.db.Ingest(ctx, o.target, evs, o.lease)
					if err != nil || n != len(evs) || len(jobs) != len(evs)*hooks {
						b.Fatalf("ingest: %d events, %d jobs, %v", n, len(jobs), err)
					}
					stored += n
				}
				b.ReportMetric(float64(stored)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(stored*hooks)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	})
}

// BenchmarkClaim leases due rows (the poller's query, payloads included)
// from a backlog of 20,000 unleased rows.
func BenchmarkClaim(b *testing.B) {
	benchDialects(b, func(b *testing.B, dialect string) {
		o := newBenchOutbox(b, dialect, 1)
		ctx := context.Background()
		const backlog = 20000
		for range backlog / benchBatch {
			if _, _, err := o.db.Ingest(ctx, o.target, o.batch(b), delivery.Lease{}); err != nil {
				b.Fatal(err)
			}
		}
		left, claimed := backlog, 0
		for b.Loop() {
			if left < benchBatch {
				b.StopTimer()
				if _, err := o.db.ReleaseOwner(ctx, o.lease.Owner); err != nil {
					b.Fatal(err)
				}
				left = backlog
				b.StartTimer()
			}
			jobs, err := o.db.Claim(ctx, o.lease, benchBatch, nil, nil)
			if err != nil || len(jobs) != benchBatch || len(jobs[0].Payload) == 0 {
				b.Fatalf("claim: %d jobs, %v", len(jobs), err)
			}
			left -= len(jobs)
			claimed += len(jobs)
		}
		b.ReportMetric(float64(claimed)/b.Elapsed().Seconds(), "rows/s")
	})
}

// BenchmarkComplete writes back batches of successful results: the rows,
// their attempts and the webhook's streak, as the result writer does.
func BenchmarkComplete(b *testing.B) {
	benchDialects(b, func(b *testing.B, dialect string) {
		o := newBenchOutbox(b, dialect, 1)
		ctx := context.Background()
		done := 0
		for b.Loop() {
			b.StopTimer()
			_, jobs, err := o.db.Ingest(ctx, o.target, o.batch(b), o.lease)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			results := make([]delivery.Result, len(jobs))
			for i, j := range jobs {
				results[i] = delivery.Result{Job: j, Outcome: delivery.OutcomeDelivered, StartedAt: now,
					Duration: 300 * time.Microsecond, StatusCode: 204}
			}
			b.StartTimer()
			if _, err := o.db.Complete(ctx, results, 10, 24*time.Hour); err != nil {
				b.Fatal(err)
			}
			done += len(results)
		}
		b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "results/s")
	})
}
