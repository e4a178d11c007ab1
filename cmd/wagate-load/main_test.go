package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// runTool runs the command as a user would and decodes its JSON report.
func runTool(t *testing.T, args ...string) *report {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append(args, "--json"), &out, &errOut)
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("exit %d, no JSON report: %v\nstdout: %s\nstderr: %s", code, err, out.String(), errOut.String())
	}
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
	return &rep
}

// checkRuns asserts every run delivered every event once, signed.
func checkRuns(t *testing.T, rep *report, modes int, events int) {
	t.Helper()
	if len(rep.Runs) != modes {
		t.Fatalf("%d runs, want %d", len(rep.Runs), modes)
	}
	for _, r := range rep.Runs {
		if r.Accepted != events || r.Delivered != r.Expected || r.Expected != events*2 || r.Lost != 0 || r.Duplicates != 0 {
			t.Errorf("%s: accepted %d, expected %d, delivered %d, lost %d, duplicates %d", r.Mode,
				r.Accepted, r.Expected, r.Delivered, r.Lost, r.Duplicates)
		}
		if r.SigChecked == 0 || r.SigErrors != 0 {
			t.Errorf("%s: %d signatures checked, %d bad (%s)", r.Mode, r.SigChecked, r.SigErrors, r.SigError)
		}
		if r.Latency.Samples == 0 || r.Latency.P50 <= 0 || r.Latency.Max < r.Latency.P99 {
			t.Errorf("%s: latency %+v", r.Mode, r.Latency)
		}
		if r.ResultsStoredS == nil || r.Durable <= 0 {
			t.Errorf("%s: results not confirmed stored: %s", r.Mode, r.StoredNote)
		}
		if r.PeakRSSMB == nil || *r.PeakRSSMB <= 0 {
			t.Errorf("%s: no peak RSS", r.Mode)
		}
	}
}

// TestModesSQLite pushes a small paced load through each in-process mode
// and a spawned wagate on SQLite, with two webhooks per session, a hanging
// webhook and a small pending backlog.
func TestModesSQLite(t *testing.T) {
	rep := runTool(t, "--mode", "spawn,inprocess,harness,nodurable", "--sessions", "3", "--webhooks-per-session", "2",
		"--rate", "2000", "--events", "600", "--warmup", "0", "--batch", "50", "--hang-webhooks", "1",
		"--pending", "300", "--webhook-timeout", "2s", "--drain-timeout", "20s", "--verify-every", "7")
	checkRuns(t, rep, 4, 600)
	for _, r := range rep.Runs {
		if r.HangRequests == 0 {
			t.Errorf("%s: the hanging receiver got no request", r.Mode)
		}
	}
}

// TestModesPostgres does the same on PostgreSQL for the in-process modes.
func TestModesPostgres(t *testing.T) {
	dbURL := testdb.PostgresURL(t)
	rep := runTool(t, "--mode", "inprocess,harness", "--db", store.Postgres, "--database-url", dbURL, "--pg-reuse",
		"--sessions", "2", "--webhooks-per-session", "2", "--events", "400", "--warmup", "0", "--batch", "100",
		"--drain-timeout", "20s")
	checkRuns(t, rep, 2, 400)
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", "http://10.0.0.1:8080", "--admin-token", "x"}, "only loopback"},
		{[]string{"--mode", "spawn", "--cpuprofile", "x"}, "in-process mode"},
		{[]string{"--db", "postgres"}, "--database-url"},
		{[]string{"--batch", "1001"}, "--batch"},
		{[]string{"--mode", "nope"}, "unknown mode"},
		{[]string{"--webhooks-per-session", "91"}, "--webhooks-per-session"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	o, err := parseFlags([]string{"--url", "http://127.0.0.1:8080", "--admin-token", "x"}, io.Discard)
	if err != nil || len(o.modes) != 1 || o.modes[0] != modeURL {
		t.Fatalf("--url: %+v %v", o, err)
	}
	if err := checkLoopbackURL("postgres://postgres@/db?host=/tmp/pg&port=5432"); err != nil {
		t.Errorf("unix socket URL refused: %v", err)
	}
	if err := checkLoopbackURL("postgres://u@127.0.0.1/db?host=db.example.com"); err == nil {
		t.Error("a remote host= parameter was accepted")
	}
}

func TestPercentile(t *testing.T) {
	v := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]int64{50: 5, 90: 9, 99: 10, 100: 10, 1: 1} {
		if got := percentile(v, p); got != want {
			t.Errorf("p%g = %d, want %d", p, got, want)
		}
	}
}
