package delivery

import "sync"

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
}

func newDispatcher(perHook, parkLimit, capacity int) *dispatcher {
	d := &dispatcher{parked: map[string]*fifo{}, active: map[string]int{}, perHook: perHook, parkLimit: parkLimit, capacity: capacity}
	d.cond = sync.NewCond(&d.mu)
	return d
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
	if woke == 1 {
		d.cond.Signal()
	} else if woke > 1 {
		d.cond.Broadcast()
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

// done frees the job's slot and promotes the webhook's next parked job. It
// reports when the webhook's queue has just dropped below half its limit,
// so pollers that skipped it can claim for it again.
func (d *dispatcher) done(webhookID string) (drained bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queued--
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
	}
	return false
}

// roomFor is how many more jobs of a webhook the dispatcher will hold.
func (d *dispatcher) roomFor(webhookID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.queued >= d.capacity {
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

// saturated lists webhooks whose queue is at least half full, which pollers
// should not claim for: their jobs would only wait, or be given back.
func (d *dispatcher) saturated() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for id, q := range d.parked {
		if q.len() >= d.parkLimit/2 {
			out = append(out, id)
		}
	}
	return out
}

// close stops handing out jobs and returns those not started.
func (d *dispatcher) close() []Job {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.cond.Broadcast()
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
