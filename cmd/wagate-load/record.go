package main

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Messages are numbered 0, 1, 2... in injection order; the number is in the
// message id, so the receiver finds a delivery's slot without a map.
const (
	blockBits = 16
	blockSize = 1 << blockBits
	blockMask = blockSize - 1
)

// series is an array of int64 indexed by message number, allocated in
// blocks on first write, safe for concurrent use. Unset entries read 0.
type series struct {
	blocks []atomic.Pointer[[blockSize]int64]
}

func newSeries(capacity int) *series {
	return &series{blocks: make([]atomic.Pointer[[blockSize]int64], (capacity+blockSize-1)/blockSize)}
}

func (s *series) block(i int) *[blockSize]int64 {
	p := &s.blocks[i>>blockBits]
	if b := p.Load(); b != nil {
		return b
	}
	p.CompareAndSwap(nil, new([blockSize]int64))
	return p.Load()
}

func (s *series) set(i int, v int64) { atomic.StoreInt64(&s.block(i)[i&blockMask], v) }

// setFirst stores v unless a value is already there; false means it was.
func (s *series) setFirst(i int, v int64) bool {
	return atomic.CompareAndSwapInt64(&s.block(i)[i&blockMask], 0, v)
}

func (s *series) get(i int) int64 {
	b := s.blocks[i>>blockBits].Load()
	if b == nil {
		return 0
	}
	return atomic.LoadInt64(&b[i&blockMask])
}

// recorder holds the send time of every injected message and the arrival
// time of every delivery, in nanoseconds since base (monotonic clock).
type recorder struct {
	base     time.Time
	capacity int
	k        int // webhooks per session: deliveries expected per message
	sent     *series
	arrived  []*series // by the webhook's slot within its session

	next        atomic.Int64 // next message number
	firsts      atomic.Int64 // first arrivals
	duplicates  atomic.Int64
	unexpected  atomic.Int64 // deliveries of messages this run did not accept
	lastArrival atomic.Int64

	mu       sync.Mutex
	requests []reqSample
}

// reqSample is one inject request: when it was due (paced runs), when it
// was sent and how long the server took to accept it.
type reqSample struct {
	due, sent, took int64
	n               int
	ok              bool
}

// sendFailed marks messages whose inject request failed: no delivery is
// expected for them.
const sendFailed = -1

func newRecorder(capacity, k int) *recorder {
	r := &recorder{base: time.Now(), capacity: capacity, k: k, sent: newSeries(capacity)}
	for range k {
		r.arrived = append(r.arrived, newSeries(capacity))
	}
	return r
}

// now is the time since base, never 0 (0 means unset).
func (r *recorder) now() int64 { return int64(time.Since(r.base)) + 1 }

// claim reserves n message numbers below limit; it returns fewer (or none)
// at the limit.
func (r *recorder) claim(n, limit int) (first, got int) {
	limit = min(limit, r.capacity)
	for {
		cur := r.next.Load()
		if int(cur) >= limit {
			return int(cur), 0
		}
		got = min(n, limit-int(cur))
		if r.next.CompareAndSwap(cur, cur+int64(got)) {
			return int(cur), got
		}
	}
}

// arrive records a delivery of message seq to the webhook in slot k.
func (r *recorder) arrive(k, seq int, at int64) {
	if seq < 0 || seq >= int(r.next.Load()) || k < 0 || k >= r.k {
		r.unexpected.Add(1)
		return
	}
	if !r.arrived[k].setFirst(seq, at) {
		r.duplicates.Add(1)
		return
	}
	if r.sent.get(seq) == sendFailed {
		r.unexpected.Add(1)
	}
	r.firsts.Add(1)
	for {
		last := r.lastArrival.Load()
		if at <= last || r.lastArrival.CompareAndSwap(last, at) {
			break
		}
	}
}

func (r *recorder) addRequest(s reqSample) {
	r.mu.Lock()
	r.requests = append(r.requests, s)
	r.mu.Unlock()
}

// window is the measured part of a run, in recorder time.
type window struct {
	from, to int64
}

// tally is what the recorder saw, computed once the run is drained.
type tally struct {
	injected, accepted, failed   int // messages
	expected, delivered, lost    int // deliveries
	measured                     int // deliveries of messages sent in the window
	sentInWindow                 int // messages accepted that were sent in the window
	inWindow                     int // deliveries (of any message) that arrived in the window
	latencies                    []int64
	lastArrival                  int64
	perSecond                    []int
	maxLatencyPerSecond          []int64 // by the arrival's second in the window
	injectTook, injectLag        []int64
	requestsOK, requestsFailed   int
	firstMeasuredSent, lastSent  int64
	duplicates, unexpectedArrive int64
}

func (r *recorder) tally(w window) tally {
	var t tally
	t.injected = int(r.next.Load())
	t.duplicates, t.unexpectedArrive = r.duplicates.Load(), r.unexpected.Load()
	t.lastArrival = r.lastArrival.Load()
	secs := int((w.to-w.from)/int64(time.Second)) + 1
	if w.to > w.from {
		t.perSecond = make([]int, secs)
		t.maxLatencyPerSecond = make([]int64, secs)
	}
	for seq := 0; seq < t.injected; seq++ {
		sent := r.sent.get(seq)
		if sent == sendFailed || sent == 0 {
			t.failed++
			continue
		}
		t.accepted++
		measured := sent >= w.from && sent <= w.to
		if measured {
			t.sentInWindow++
			if t.firstMeasuredSent == 0 || sent < t.firstMeasuredSent {
				t.firstMeasuredSent = sent
			}
		}
		t.lastSent = max(t.lastSent, sent)
		for k := range r.k {
			t.expected++
			at := r.arrived[k].get(seq)
			if at == 0 {
				t.lost++
				continue
			}
			t.delivered++
			if at >= w.from && at < w.to {
				t.inWindow++
				if i := int((at - w.from) / int64(time.Second)); i < len(t.perSecond) {
					t.perSecond[i]++
				}
			}
			if measured {
				t.measured++
				t.latencies = append(t.latencies, at-sent)
				if i := int((at - w.from) / int64(time.Second)); at >= w.from && i < len(t.maxLatencyPerSecond) {
					t.maxLatencyPerSecond[i] = max(t.maxLatencyPerSecond[i], at-sent)
				}
			}
		}
	}
	slices.Sort(t.latencies)
	r.mu.Lock()
	for _, s := range r.requests {
		if !s.ok {
			t.requestsFailed++
			continue
		}
		t.requestsOK++
		if s.sent >= w.from && s.sent <= w.to {
			t.injectTook = append(t.injectTook, s.took)
			if s.due > 0 {
				t.injectLag = append(t.injectLag, max(s.sent-s.due, 0))
			}
		}
	}
	r.mu.Unlock()
	slices.Sort(t.injectTook)
	slices.Sort(t.injectLag)
	// The last second is usually partial: drop it from the per-second view.
	if len(t.perSecond) > 1 && (w.to-w.from)%int64(time.Second) != 0 {
		t.perSecond = t.perSecond[:len(t.perSecond)-1]
	}
	return t
}

// percentile of a sorted slice (nearest rank); 0 when empty.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
