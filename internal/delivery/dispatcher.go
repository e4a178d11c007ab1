package delivery

import (
	"context"
	"sync"
	"time"
)

// stallAfter is how long a webhook may keep every in-flight slot without
// finishing one before it counts as stalled: its new rows are then left in
// the database (deferred) instead of being parked in memory behind it.
const stallAfter = time.Second

// dispatcher holds the jobs this node has leased and hands them to workers,
// capping the in-flight deliveries per webhook so that one slow or dead
// endpoint cannot occupy every worker. Jobs over a webhook's cap wait in
// its own queue; a worker that finishes one of its jobs promotes the next.
// A webhook's queue is bounded too (parkLimit), so a dead endpoint cannot
// fill the memory that the others need: jobs past it are given back.
type dispatcher struct {
	mu        sync.Mutex
	cond      *sync.Cond
	ready     fifo
	parked    map[string]*fifo
	active    map[string]int // per webhook: jobs in ready plus in flight
	queued    int            // every job held: ready, parked and in flight
	perHook   int
	parkLimit int
	capacity  int
	closed    bool
	// progress is, per webhook with jobs held, when its receiver last
	// answered (or when it got its first job): stalled webhooks are found
	// by it. A timeout is not progress.
	progress map[string]time.Time
	now      func() time.Time
	// deferMin and deferMax bound deferFor.
	deferMin, deferMax time.Duration
	// Publishers waiting for room (waitRoom) are woken by closing freed
	// once need jobs fit.
	freed chan struct{}
	need  int
}

func newDispatcher(perHook, parkLimit, capacity int) *dispatcher {
	d := &dispatcher{parked: map[string]*fifo{}, active: map[string]int{}, perHook: perHook, parkLimit: parkLimit,
		capacity: capacity, progress: map[string]time.Time{}, now: time.Now, freed: make(chan struct{})}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// waitRoom waits until n more jobs fit (at most the capacity), the context
// ends or limit passes, and reports whether they fit. Publishers call it
// before storing a batch, so that a burst the workers cannot keep up with
// is slowed at the door instead of being stored unleased and read back by
// the pollers, which costs the database a second write of every row.
func (d *dispatcher) waitRoom(ctx context.Context, n int, limit time.Duration) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	n = min(n, d.capacity)
	for {
		d.mu.Lock()
		if d.closed || d.capacity-d.queued >= n {
			d.mu.Unlock()
			return !d.closed
		}
		if d.need == 0 || n < d.need {
			d.need = n
		}
		ch := d.freed
		d.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(limit)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-timer.C:
			return false
		}
	}
}

// release wakes room waiters if the smallest of their needs fits; d.mu held.
func (d *dispatcher) release() {
	if d.need > 0 && d.capacity-d.queued >= d.need {
		close(d.freed)
		d.freed, d.need = make(chan struct{}), 0
	}
}

// room reports how many more jobs the dispatcher should take.
func (d *dispatcher) room() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0
	}
	return d.capacity - d.queued
}

// push adds jobs and returns those it would not hold (their webhook's queue
// is full), which the caller gives back. It returns false, taking none,
// once closed.
func (d *dispatcher) push(jobs []Job) (overflow []Job, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, false
	}
	woke := 0
	for _, j := range jobs {
		if _, ok := d.progress[j.WebhookID]; !ok {
			d.progress[j.WebhookID] = d.now()
		}
		if d.active[j.WebhookID] < d.perHook {
			d.queued++
			d.active[j.WebhookID]++
			d.ready.push(j)
			woke++
			continue
		}
		q := d.parked[j.WebhookID]
		if q == nil {
			q = &fifo{}
			d.parked[j.WebhookID] = q
		}
		if q.len() >= d.parkLimit {
			overflow = append(overflow, j)
			continue
		}
		d.queued++
		q.push(j)
	}
	// One wake-up per ready job: a Broadcast would wake every idle worker
	// to fight over d.mu for a single job.
	for range woke {
		d.cond.Signal()
	}
	return overflow, true
}

// next blocks until a job is ready; ok is false once closed.
func (d *dispatcher) next() (Job, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.ready.len() == 0 && !d.closed {
		d.cond.Wait()
	}
	if d.closed {
		return Job{}, false
	}
	return d.ready.pop(), true
}

// done frees the job's slot and promotes the webhook's next parked job;
// answered tells whether the receiver answered at all. It reports when the
// webhook's queue has just dropped below half its limit, so pollers that
// skipped it can claim for it again.
func (d *dispatcher) done(webhookID string, answered bool) (drained bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queued--
	if answered {
		d.progress[webhookID] = d.now()
	}
	d.release()
	if q := d.parked[webhookID]; q != nil && q.len() > 0 {
		d.ready.push(q.pop())
		drained = q.len() == d.parkLimit/2-1
		if q.len() == 0 {
			delete(d.parked, webhookID)
		}
		d.cond.Signal()
		return drained
	}
	if d.active[webhookID]--; d.active[webhookID] <= 0 {
		delete(d.active, webhookID)
		delete(d.progress, webhookID)
	}
	return false
}

// stalled reports a webhook whose in-flight slots are all taken and whose
// receiver has not answered for stallAfter: hung, or very slow. d.mu held.
func (d *dispatcher) stalled(webhookID string) bool {
	return d.active[webhookID] >= d.perHook && d.now().Sub(d.progress[webhookID]) >= stallAfter
}

// deferFor is how long a stalled webhook's rows are pushed ahead: as long
// as it has been stalled, within [deferMin, deferMax], so that a receiver
// hung for hours costs each of its rows a rewrite every few minutes, not
// every few seconds.
func (d *dispatcher) deferFor(webhookID string) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.progress[webhookID]
	if !ok {
		return d.deferMin
	}
	return min(max(d.now().Sub(at), d.deferMin), d.deferMax)
}

// roomFor is how many more jobs of a webhook the dispatcher will hold, or
// -1 when the webhook is stalled: its jobs would only wait behind it.
func (d *dispatcher) roomFor(webhookID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0
	}
	if d.stalled(webhookID) {
		return -1
	}
	if d.queued >= d.capacity {
		return 0
	}
	n := d.perHook - d.active[webhookID]
	if q := d.parked[webhookID]; q != nil {
		n = d.parkLimit - q.len()
	} else {
		n += d.parkLimit
	}
	return min(n, d.capacity-d.queued)
}

// saturated lists the webhooks pollers should not claim for, since their
// jobs would only wait or be given back: busy ones, whose queue is at least
// half full but moving, and stalled ones.
func (d *dispatcher) saturated() (busy, stalled []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.active {
		if d.stalled(id) {
			stalled = append(stalled, id)
		} else if q := d.parked[id]; q != nil && q.len() >= d.parkLimit/2 {
			busy = append(busy, id)
		}
	}
	return busy, stalled
}

// close stops handing out jobs and returns those not started.
func (d *dispatcher) close() []Job {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.cond.Broadcast()
	close(d.freed)
	d.freed = make(chan struct{})
	var left []Job
	for d.ready.len() > 0 {
		left = append(left, d.ready.pop())
	}
	for _, q := range d.parked {
		for q.len() > 0 {
			left = append(left, q.pop())
		}
	}
	d.parked = map[string]*fifo{}
	return left
}

// fifo is a slice queue that reuses its backing array.
type fifo struct {
	items []Job
	head  int
}

func (f *fifo) len() int { return len(f.items) - f.head }

func (f *fifo) push(j Job) {
	if f.head > 0 && f.head == len(f.items) {
		f.items, f.head = f.items[:0], 0
	}
	f.items = append(f.items, j)
}

func (f *fifo) pop() Job {
	j := f.items[f.head]
	f.items[f.head] = Job{}
	f.head++
	if f.head > 1024 && f.head*2 > len(f.items) {
		n := copy(f.items, f.items[f.head:])
		f.items, f.head = f.items[:n], 0
	}
	return j
}
