package main

import (
	"container/heap"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/webhooks"
)

// memStore is a delivery.Store that keeps the outbox in memory: the
// "durability switched off" variant of the benchmark harness. It does what
// store.DB does for the delivery engine (fan-out to matching webhooks,
// dedupe, leases, claims of due rows oldest first, results) without any
// I/O. Delivered and failed rows are dropped, so memory stays bounded by
// what is pending. Nothing survives the process, and it does not take part
// in the events API (listing, retry, recover): this is for measurement only.
type memStore struct {
	// The events API (list, get, retry, recover) is not served: those
	// methods are the nil interface's and panic, which the API answers 500.
	// Embedding keeps the harness building when they change.
	delivery.Store

	// fanout reads the webhooks an event goes to from wagate's database,
	// with the same query store.DB runs in every Ingest.
	fanout interface {
		FanoutWebhooks(ctx context.Context, t delivery.Target) ([]webhooks.Webhook, error)
	}
	now func() time.Time

	mu        sync.Mutex
	seen      map[string]struct{} // session + dedupe key
	rows      map[string]*memRow  // pending rows by id
	queue     rowHeap             // pending rows by next_attempt_at
	delivered int64
	failed    int64
}

// memRow is a pending row. As in store.DB, next is when it is due: its
// next attempt, or while leased the end of the lease, so a row whose node
// never reports back is claimable again once the lease ends.
type memRow struct {
	job        delivery.Job
	next       time.Time
	leaseOwner string
	index      int // in queue
}

func newMemStore(db *store.DB, now func() time.Time) *memStore {
	return &memStore{fanout: db, now: now, seen: map[string]struct{}{}, rows: map[string]*memRow{}}
}

var _ delivery.Store = (*memStore)(nil)

func (m *memStore) Ingest(ctx context.Context, t delivery.Target, evs []delivery.NewEvent, lease delivery.Lease) (int, []delivery.Job, error) {
	hooks, err := m.fanout.FanoutWebhooks(ctx, t)
	if err != nil {
		return 0, nil, err
	}
	now := m.now()
	// As store.DB: leased, deferred or due by the lease's rule.
	leased := lease.Placer()
	var jobs []delivery.Job
	m.mu.Lock()
	defer m.mu.Unlock()
	stored := 0
	for _, ev := range evs {
		if ev.DedupeKey != "" {
			k := t.SessionID + "\x00" + ev.DedupeKey
			if _, dup := m.seen[k]; dup {
				continue
			}
			m.seen[k] = struct{}{}
		}
		stored++
		for _, h := range hooks {
			if !h.Matches(ev.Type) {
				continue
			}
			j := delivery.Job{ID: delivery.NewID(), EventID: ev.ID, WebhookID: h.ID, ClientID: t.ClientID,
				EventType: ev.Type, Payload: ev.Payload, CreatedAt: ev.CreatedAt}
			j.Leased, j.Deferred = leased(h.ID)
			r := &memRow{job: j, next: now}
			if j.Leased {
				r.leaseOwner, r.next = lease.Owner, lease.Until
			} else if j.Deferred {
				r.next = now.Add(lease.Deferral(r.job.WebhookID))
			}
			m.rows[j.ID] = r
			heap.Push(&m.queue, r)
			jobs = append(jobs, j)
		}
	}
	return stored, jobs, nil
}

func (m *memStore) Claim(ctx context.Context, lease delivery.Lease, limit int, skip, stalled []string) ([]delivery.Job, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var jobs []delivery.Job
	var claimed, skipped []*memRow
	for len(jobs) < limit && m.queue.Len() > 0 && !m.queue[0].next.After(now) {
		r := heap.Pop(&m.queue).(*memRow)
		if slices.Contains(stalled, r.job.WebhookID) {
			// As store.DB: pushed ahead rather than stepped over again.
			if lease.Deferral(r.job.WebhookID) > 0 {
				r.next = now.Add(lease.Deferral(r.job.WebhookID))
			}
			skipped = append(skipped, r)
			continue
		}
		if slices.Contains(skip, r.job.WebhookID) {
			skipped = append(skipped, r)
			continue
		}
		r.leaseOwner, r.next = lease.Owner, lease.Until
		claimed = append(claimed, r)
		j := r.job
		j.Leased = true
		jobs = append(jobs, j)
	}
	for _, r := range append(claimed, skipped...) {
		heap.Push(&m.queue, r)
	}
	return jobs, nil
}

func (m *memStore) Complete(ctx context.Context, results []delivery.Result, minFailures int, disableAfter time.Duration) ([]delivery.Disabled, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, res := range results {
		r := m.rows[res.Job.ID]
		if r == nil {
			continue
		}
		switch res.Outcome {
		case delivery.OutcomeDelivered, delivery.OutcomeFailed:
			delete(m.rows, res.Job.ID)
			heap.Remove(&m.queue, r.index)
			if res.Outcome == delivery.OutcomeDelivered {
				m.delivered++
			} else {
				m.failed++
			}
		case delivery.OutcomeRetry:
			r.job.Attempts++
			r.leaseOwner, r.next = "", res.NextAttemptAt
			heap.Fix(&m.queue, r.index)
		case delivery.OutcomeRelease:
			r.leaseOwner, r.next = "", now
			heap.Fix(&m.queue, r.index)
		}
	}
	return nil, nil
}

func (m *memStore) ReleaseOwner(ctx context.Context, owner string) (int64, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, r := range m.rows {
		if r.leaseOwner == owner {
			r.leaseOwner, r.next = "", now
			heap.Fix(&m.queue, r.index)
			n++
		}
	}
	return n, nil
}

func (m *memStore) RenewLeases(ctx context.Context, owner string, until time.Time, ids []string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, id := range ids {
		if r, ok := m.rows[id]; ok && r.leaseOwner == owner { // rows holds pending rows only
			r.next = until
			heap.Fix(&m.queue, r.index)
			n++
		}
	}
	return n, nil
}

func (m *memStore) Prune(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	return 0, nil
}

func (m *memStore) OutboxStats(ctx context.Context) (delivery.Stats, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := delivery.Stats{Pending: int64(len(m.rows)), Failed: m.failed}
	for _, r := range m.rows {
		if !r.next.After(now) {
			st.Due++
		}
	}
	if m.queue.Len() > 0 && !m.queue[0].next.After(now) {
		st.OldestDueAge = now.Sub(m.queue[0].next)
	}
	return st, nil
}

// rowHeap orders pending rows by when they are due.
type rowHeap []*memRow

func (h rowHeap) Len() int           { return len(h) }
func (h rowHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h rowHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *rowHeap) Push(x any) {
	r := x.(*memRow)
	r.index = len(*h)
	*h = append(*h, r)
}
func (h *rowHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	r.index = -1
	*h = old[:len(old)-1]
	return r
}
