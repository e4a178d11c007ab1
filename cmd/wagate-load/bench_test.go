package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"

	"github.com/wagate/wagate/internal/testdb"
)

// BenchmarkPipeline pushes b.N inbound events through the whole pipeline
// in this process: the sandbox API, storage, the delivery engine, signed
// POSTs to a loopback receiver and the results written back. One op is one
// event; the clock stops when every result is stored.
//
//	inprocess=sqlite   wagate's own app.Main on SQLite
//	durable=sqlite     the benchmark harness with the real store (SQLite)
//	durable=postgres   the same on PostgreSQL (needs WAGATE_TEST_POSTGRES_URL)
//	nodurable          the harness with the outbox in memory: durability off
//
// The sub-benchmarks run one after the other in the same run, so the
// durable figures and the limit without durability sit side by side.
func BenchmarkPipeline(b *testing.B) {
	pg := os.Getenv(testdb.EnvPostgres)
	for _, tc := range []struct{ name, mode, db string }{
		{"inprocess=sqlite", modeInProcess, "sqlite"},
		{"durable=sqlite", modeHarness, "sqlite"},
		{"durable=postgres", modeHarness, "postgres"},
		{"nodurable", modeNoDurable, "sqlite"},
	} {
		if tc.db == "postgres" && pg == "" {
			// Printed, not logged: a parent benchmark's log shows only with -v.
			fmt.Fprintf(os.Stderr, "%s/%s: not run: %s is not set; scripts/test.sh -run '^$' -bench Pipeline ./cmd/wagate-load/ runs it\n",
				b.Name(), tc.name, testdb.EnvPostgres)
			continue
		}
		b.Run(tc.name, func(b *testing.B) {
			args := []string{"--mode", tc.mode, "--db", tc.db, "--events", strconv.Itoa(max(b.N, 1)), "--warmup", "0",
				"--sessions", "10", "--batch", "500", "--concurrency", "4"}
			if tc.db == "postgres" {
				args = append(args, "--database-url", pg)
			}
			o, err := parseFlags(args, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			t, err := startTarget(ctx, tc.mode, o, &builder{}, log)
			if err != nil {
				b.Fatal(err)
			}
			defer t.stop(context.Background())
			l, err := prepare(ctx, o, t, log)
			defer l.close(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			l.inject(ctx)
			l.drain(ctx)
			l.waitStored(ctx)
			b.StopTimer()
			res := l.result(tc.mode, 1)
			if res.failed() || res.ResultsStoredS == nil {
				b.Fatalf("accepted %d, delivered %d of %d, %d duplicates, %d inject errors (%s); results stored: %s",
					res.Accepted, res.Delivered, res.Expected, res.Duplicates, res.InjectFailed, res.FirstInjectError, res.StoredNote)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
