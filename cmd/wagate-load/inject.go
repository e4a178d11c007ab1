package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// injector sends inbound sandbox messages through the public API, in
// batches round-robin over the sessions.
type injector struct {
	api      *api
	rec      *recorder
	sessions []*loadSession
	prefix   string // message ids are prefix + number
	content  string
	batch    int
	limit    int // messages this run may inject

	rr       atomic.Uint64
	errMu    sync.Mutex
	firstErr string
	errCount int
}

func newInjector(a *api, rec *recorder, f *fleet, prefix string, o *options, limit int) *injector {
	const text = "wagate-load message, the quick brown fox jumps over the lazy dog. "
	content := strings.Repeat(text, o.contentSize/len(text)+1)[:o.contentSize]
	return &injector{api: a, rec: rec, sessions: f.sessions, prefix: prefix, content: content, batch: o.batch, limit: limit}
}

// job is one inject request: messages first..first+n-1 to one session.
type job struct {
	first, n int
	due      int64 // when the pacer wanted it sent; 0 when unpaced
}

// paced injects rate events per second, every tick, until stopAfter has
// passed or the limit is reached. Batches go through a queue to
// concurrency senders, so a slow answer does not stall the pacing; if the
// queue fills, the lag shows in the report (inject lag).
func (in *injector) paced(ctx context.Context, rate float64, tick, stopAfter time.Duration, concurrency int) {
	queue := make(chan job, 4096)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for j := range queue {
				in.send(ctx, &buf, j)
			}
		}()
	}
	start := time.Now()
	t := time.NewTicker(tick)
	scheduled := 0
loop:
	for {
		elapsed := time.Since(start)
		if elapsed >= stopAfter {
			break
		}
		due := int(rate*elapsed.Seconds()) - scheduled
		for due > 0 {
			first, n := in.rec.claim(min(due, in.batch), in.limit)
			if n == 0 {
				break loop
			}
			select {
			case queue <- job{first: first, n: n, due: in.rec.now()}:
			case <-ctx.Done():
				break loop
			}
			due -= n
			scheduled += n
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			break loop
		}
	}
	t.Stop()
	close(queue)
	wg.Wait()
}

// flat injects as fast as the server accepts, with concurrency requests
// in flight, until stopAfter has passed or the limit is reached.
func (in *injector) flat(ctx context.Context, stopAfter time.Duration, concurrency int) {
	deadline := time.Now().Add(stopAfter)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for ctx.Err() == nil && time.Now().Before(deadline) {
				first, n := in.rec.claim(in.batch, in.limit)
				if n == 0 {
					return
				}
				in.send(ctx, &buf, job{first: first, n: n})
			}
		}()
	}
	wg.Wait()
}

// send posts one batch to the next session. The send time of every
// message in it is taken just before the request leaves: a batch's
// messages share it.
func (in *injector) send(ctx context.Context, buf *bytes.Buffer, j job) {
	s := in.sessions[int(in.rr.Add(1)-1)%len(in.sessions)]
	buf.Reset()
	buf.WriteString(`{"messages":[`)
	for i := range j.n {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"from":"5511988887777","type":"text","content":"`)
		buf.WriteString(in.content)
		buf.WriteString(`","message_id":"`)
		buf.WriteString(in.prefix)
		buf.WriteString(strconv.Itoa(j.first + i))
		buf.WriteString(`"}`)
	}
	buf.WriteString(`]}`)
	sent := in.rec.now()
	for i := range j.n {
		in.rec.sent.set(j.first+i, sent)
	}
	err := in.api.post(ctx, s.path, s.client.token, buf.Bytes())
	took := in.rec.now() - sent
	if err != nil {
		for i := range j.n {
			in.rec.sent.set(j.first+i, sendFailed)
		}
		in.errMu.Lock()
		in.errCount++
		if in.firstErr == "" {
			in.firstErr = err.Error()
		}
		in.errMu.Unlock()
	} else {
		s.sent.Add(int64(j.n))
	}
	in.rec.addRequest(reqSample{due: j.due, sent: sent, took: took, n: j.n, ok: err == nil})
}
