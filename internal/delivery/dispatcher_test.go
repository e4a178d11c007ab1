package delivery

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func jobsFor(hook string, n int) []Job {
	out := make([]Job, n)
	for i := range out {
		out[i] = Job{ID: hook + "-" + string(rune('a'+i)), WebhookID: hook}
	}
	return out
}

func TestDispatcherCapsPerWebhook(t *testing.T) {
	t.Parallel()
	d := newDispatcher(2, 3, 100)
	if over, ok := d.push(jobsFor("slow", 6)); !ok || len(over) != 1 {
		t.Fatalf("overflow %d %v: want the sixth job back (2 ready + 3 parked)", len(over), ok)
	}
	d.push(jobsFor("fast", 1))
	// Only two of slow's jobs are ready; fast's is not stuck behind the rest.
	var got []string
	for i := 0; i < 3; i++ {
		j, ok := d.next()
		if !ok {
			t.Fatal("closed")
		}
		got = append(got, j.WebhookID)
	}
	if got[0] != "slow" || got[1] != "slow" || got[2] != "fast" {
		t.Fatalf("order %v", got)
	}
	if s, st := d.saturated(); len(s) != 1 || s[0] != "slow" || len(st) != 0 {
		t.Fatalf("saturated %v, stalled %v", s, st)
	}
	if r := d.room(); r != 94 {
		t.Fatalf("room %d", r)
	}
	// Finishing one slow job promotes the next parked one.
	d.done("slow", true)
	j, _ := d.next()
	if j.WebhookID != "slow" {
		t.Fatalf("promoted %v", j)
	}
	d.done("fast", true)
	if s, _ := d.saturated(); len(s) != 1 { // 2 parked >= 3/2
		t.Fatalf("saturated after fast done %v", s)
	}
	left := d.close()
	if len(left) != 2 { // two slow jobs never started
		t.Fatalf("left %d", len(left))
	}
	if _, ok := d.next(); ok {
		t.Fatal("next after close")
	}
	if _, ok := d.push(jobsFor("x", 1)); ok {
		t.Fatal("push after close")
	}
}

func TestFIFOReuse(t *testing.T) {
	t.Parallel()
	var f fifo
	for round := 0; round < 3; round++ {
		for i := 0; i < 3000; i++ {
			f.push(Job{Attempts: i})
		}
		for i := 0; i < 3000; i++ {
			if j := f.pop(); j.Attempts != i {
				t.Fatalf("pop %d = %d", i, j.Attempts)
			}
		}
		if f.len() != 0 {
			t.Fatal("not empty")
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	s := []time.Duration{time.Second, 10 * time.Second}
	cases := []struct {
		n    int
		rnd  float64
		want time.Duration
	}{
		{1, 0.5, time.Second},
		{1, 0, 800 * time.Millisecond},
		{1, 1, 1200 * time.Millisecond},
		{2, 0.5, 10 * time.Second},
		{9, 0.5, 10 * time.Second}, // the last step repeats
		{0, 0.5, time.Second},
	}
	for _, c := range cases {
		if got := backoff(s, c.n, func() float64 { return c.rnd }); got != c.want {
			t.Errorf("backoff(%d, %v) = %v, want %v", c.n, c.rnd, got, c.want)
		}
	}
	for i := 0; i < 1000; i++ {
		d := backoff(DefaultSchedule, 1, jitterRand)
		if d < 4*time.Second || d > 6*time.Second {
			t.Fatalf("jitter out of ±20%%: %v", d)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := func(v string) http.Header { return http.Header{"Retry-After": []string{v}} }
	cases := []struct {
		status int
		h      http.Header
		want   time.Duration
		ok     bool
	}{
		{429, h("30"), 30 * time.Second, true},
		{503, h("30"), 30 * time.Second, true},
		{500, h("30"), 0, false},
		{429, http.Header{}, 0, false},
		{429, h("0"), time.Second, true},    // bounded below
		{429, h("999999"), time.Hour, true}, // bounded above
		{429, h("soon"), 0, false},          // unparsable
		{429, h(now.Add(2 * time.Minute).Format(http.TimeFormat)), 2 * time.Minute, true},
	}
	for _, c := range cases {
		got, ok := retryAfter(c.status, c.h, now)
		if got != c.want || ok != c.ok {
			t.Errorf("retryAfter(%d, %v) = %v %v, want %v %v", c.status, c.h, got, ok, c.want, c.ok)
		}
	}
}

// A webhook whose in-flight slots all stay taken for stallAfter is
// stalled: it gets no more room (its rows are deferred) and pollers skip it.
func TestDispatcherStalledWebhook(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := newDispatcher(2, 10, 100)
	d.now = func() time.Time { return now }
	d.deferMin, d.deferMax = 10*time.Second, 5*time.Minute
	d.push(jobsFor("hung", 2))
	d.push(jobsFor("ok", 2))
	for i := 0; i < 4; i++ {
		d.next()
	}
	if r := d.roomFor("hung"); r != 10 {
		t.Fatalf("room before the stall %d; want the park limit", r)
	}
	now = now.Add(stallAfter)
	d.done("ok", true) // ok makes progress, hung does not
	if r := d.roomFor("hung"); r != -1 {
		t.Fatalf("room of a stalled webhook %d; want -1", r)
	}
	if r := d.roomFor("ok"); r <= 0 {
		t.Fatalf("room of a healthy webhook %d", r)
	}
	if busy, st := d.saturated(); len(busy) != 0 || len(st) != 1 || st[0] != "hung" {
		t.Fatalf("busy %v, stalled %v; want hung stalled", busy, st)
	}
	if got := d.deferFor("hung"); got != d.deferMin {
		t.Fatalf("deferral after a second's stall %v; want the minimum %v", got, d.deferMin)
	}
	now = now.Add(time.Hour)
	if got := d.deferFor("hung"); got != d.deferMax {
		t.Fatalf("deferral after an hour's stall %v; want the maximum %v", got, d.deferMax)
	}
	d.push(jobsFor("hung", 1)) // a parked job: the timed-out one's slot goes to it
	d.done("hung", false)      // a timeout is not progress
	if r := d.roomFor("hung"); r != -1 {
		t.Fatalf("room after a timeout %d; want still stalled", r)
	}
	d.done("hung", true) // an answer is
	if r := d.roomFor("hung"); r <= 0 {
		t.Fatalf("room after an answer %d", r)
	}
}

// waitRoom blocks a publisher until finished jobs free enough room, and
// gives up after its limit.
func TestDispatcherWaitRoom(t *testing.T) {
	t.Parallel()
	d := newDispatcher(100, 100, 10)
	d.push(jobsFor("h", 10))
	if d.waitRoom(context.Background(), 1, time.Millisecond) {
		t.Fatal("room reported while full")
	}
	got := make(chan bool)
	go func() { got <- d.waitRoom(context.Background(), 3, time.Minute) }()
	for i := 0; i < 3; i++ {
		d.next()
		d.done("h", true)
	}
	if !<-got {
		t.Fatal("waiter not woken once 3 slots were free")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d.push(jobsFor("h", 3))
	if d.waitRoom(ctx, 1, time.Minute) {
		t.Fatal("room reported to a cancelled waiter")
	}
}
