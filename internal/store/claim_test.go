package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/delivery"
)

// A stalled webhook's new rows are stored deferred, and a claim pushes
// the due rows of a stalled webhook it meets ahead instead of stepping
// over them at every poll.
func TestOutboxDeferSaturated(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newOutbox(t, dialect)
		ctx := context.Background()
		f.hook(t, "h-ok", "", `["*"]`, true)
		f.hook(t, "h-stuck", "", `["*"]`, true)
		target := delivery.Target{ClientID: f.clientID, SessionID: f.session, PhoneNumber: "5511999999999"}
		const deferFor = 10 * time.Second
		lease := func() delivery.Lease {
			return delivery.Lease{Owner: "node-a", Until: f.clk.now().Add(time.Minute), Defer: deferFor,
				Room: func(id string) int {
					if id == "h-stuck" {
						return -1
					}
					return 3
				}}
		}
		_, jobs, err := f.db.Ingest(ctx, target, f.events(5, "message", "a"), lease())
		if err != nil || len(jobs) != 10 {
			t.Fatalf("ingest: %d jobs, %v", len(jobs), err)
		}
		var leased, deferred, due int
		for _, j := range jobs {
			switch {
			case j.Leased:
				leased++
				if j.WebhookID != "h-ok" {
					t.Fatalf("leased a stalled webhook's row: %+v", j)
				}
			case j.Deferred:
				deferred++
				if j.WebhookID != "h-stuck" {
					t.Fatalf("deferred %+v", j)
				}
			default:
				due++
			}
		}
		if leased != 3 || due != 2 || deferred != 5 {
			t.Fatalf("leased %d, due %d, deferred %d; want 3, 2 (no room left) and 5", leased, due, deferred)
		}
		claim := func(limit int, stalled ...string) []delivery.Job {
			t.Helper()
			got, err := f.db.Claim(ctx, delivery.Lease{Owner: "node-b", Until: f.clk.now().Add(time.Minute), Defer: deferFor}, limit, nil, stalled)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		if got := claim(100); len(got) != 2 || got[0].WebhookID != "h-ok" {
			t.Fatalf("claimed %d rows before the deferral ended; want h-ok's 2 due rows", len(got))
		}
		f.clk.advance(deferFor)
		if got := claim(100, "h-stuck"); len(got) != 0 {
			t.Fatalf("claimed %d rows of a stalled webhook", len(got))
		}
		// The stalled webhook's rows met were pushed ahead: none is due now.
		if st, err := f.db.OutboxStats(ctx); err != nil || st.Due != 0 {
			t.Fatalf("stats after skipping: %+v %v", st, err)
		}
		f.clk.advance(deferFor)
		if got := claim(100); len(got) != 5 || got[0].WebhookID != "h-stuck" {
			t.Fatalf("claimed %d rows once the webhook is not skipped; want 5", len(got))
		}

		// Rows of a stalled webhook older than everyone else's: a bounded
		// window per pass still reaches the rows behind them.
		stuckOnly := delivery.Target{ClientID: f.clientID, WebhookID: "h-stuck"}
		if _, _, err := f.db.Ingest(ctx, stuckOnly, f.events(30, "message", "b"), delivery.Lease{}); err != nil {
			t.Fatal(err)
		}
		f.clk.advance(time.Millisecond)
		okOnly := delivery.Target{ClientID: f.clientID, WebhookID: "h-ok"}
		if _, _, err := f.db.Ingest(ctx, okOnly, f.events(5, "message", "c"), delivery.Lease{}); err != nil {
			t.Fatal(err)
		}
		got := claim(5, "h-stuck")
		if len(got) != 5 {
			t.Fatalf("claimed %d of h-ok's 5 rows behind 30 of a stalled webhook", len(got))
		}
		for _, j := range got {
			if j.WebhookID != "h-ok" || len(j.Payload) == 0 {
				t.Fatalf("claimed %+v", j)
			}
		}
	})
}
