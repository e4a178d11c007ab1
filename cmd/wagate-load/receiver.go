package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/webhooksig"
)

// receiver is the webhook endpoint of a run, on loopback. Deliveries to
// /ok/{webhook} are answered 204 at once and their arrival recorded;
// requests to /hang/{n} are held until the sender gives up (its timeout)
// or the receiver closes. One delivery in verifyEvery has its signature
// checked with webhooksig, as a receiver would.
type receiver struct {
	rec         *recorder
	idPrefix    []byte // `"message_id":"` + this run's id prefix
	verifyEvery int64

	srv  *http.Server
	ln   net.Listener
	stop chan struct{}

	mu        sync.RWMutex
	verifiers map[int]*webhooksig.Verifier // by webhook number
	checked   map[int]bool                 // webhooks whose first delivery was verified

	requests   atomic.Int64
	sigChecked atomic.Int64
	sigErrors  atomic.Int64
	badRequest atomic.Int64
	hung       atomic.Int64
	lastSigErr atomic.Value // string
}

// startReceiver listens on 127.0.0.1 on a free port.
func startReceiver(rec *recorder, msgPrefix string, verifyEvery int) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rv := &receiver{
		rec:         rec,
		idPrefix:    []byte(`"message_id":"` + msgPrefix),
		verifyEvery: int64(verifyEvery),
		ln:          ln,
		stop:        make(chan struct{}),
		verifiers:   map[int]*webhooksig.Verifier{},
		checked:     map[int]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ok/{n}", rv.deliver)
	mux.HandleFunc("POST /hang/{n}", rv.hang)
	rv.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go rv.srv.Serve(ln)
	return rv, nil
}

func (rv *receiver) base() string { return "http://" + rv.ln.Addr().String() }

// okURL is the URL of measured webhook n (n = session*k + slot).
func (rv *receiver) okURL(n int) string { return rv.base() + "/ok/" + strconv.Itoa(n) }

func (rv *receiver) hangURL(n int) string { return rv.base() + "/hang/" + strconv.Itoa(n) }

// addSecret registers the signing secret of measured webhook n.
func (rv *receiver) addSecret(n int, secret string) error {
	v, err := webhooksig.NewVerifier(secret)
	if err != nil {
		return err
	}
	rv.mu.Lock()
	rv.verifiers[n] = v
	rv.mu.Unlock()
	return nil
}

func (rv *receiver) deliver(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	at := rv.rec.now()
	w.WriteHeader(http.StatusNoContent)
	n, perr := strconv.Atoi(r.PathValue("n"))
	if err != nil || perr != nil {
		rv.badRequest.Add(1)
		return
	}
	count := rv.requests.Add(1)
	rv.maybeVerify(n, count, r.Header, body)
	seq, ok := rv.seqOf(body)
	if !ok {
		rv.badRequest.Add(1)
		return
	}
	rv.rec.arrive(n%rv.rec.k, seq, at)
}

// seqOf finds this run's message number in a payload. The top-level
// message_id is the first match: the fields before it hold no free text,
// and a quote inside a JSON string is escaped, so the pattern cannot
// match inside one.
func (rv *receiver) seqOf(body []byte) (int, bool) {
	i := bytes.Index(body, rv.idPrefix)
	if i < 0 {
		return 0, false
	}
	rest := body[i+len(rv.idPrefix):]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return 0, false
	}
	seq, err := strconv.Atoi(string(rest[:end]))
	return seq, err == nil
}

func (rv *receiver) maybeVerify(n int, count int64, h http.Header, body []byte) {
	rv.mu.RLock()
	v := rv.verifiers[n]
	first := !rv.checked[n]
	rv.mu.RUnlock()
	if !first && count%rv.verifyEvery != 0 {
		return
	}
	if first {
		rv.mu.Lock()
		rv.checked[n] = true
		rv.mu.Unlock()
	}
	rv.sigChecked.Add(1)
	if v == nil {
		rv.sigErrors.Add(1)
		rv.lastSigErr.Store("delivery to an unknown webhook " + strconv.Itoa(n))
		return
	}
	if err := v.Verify(h, body); err != nil {
		rv.sigErrors.Add(1)
		rv.lastSigErr.Store(err.Error())
	}
}

func (rv *receiver) hang(w http.ResponseWriter, r *http.Request) {
	rv.hung.Add(1)
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-rv.stop:
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

func (rv *receiver) close() {
	close(rv.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rv.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		rv.srv.Close()
	}
	rv.srv.Close()
}

func (rv *receiver) sigError() string {
	s, _ := rv.lastSigErr.Load().(string)
	return s
}

// closedPort returns a loopback address nothing listens on: a receiver
// that is down, for --pending.
func closedPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// checkLoopbackURL refuses URLs whose host is not a loopback address: the
// tool only ever talks to this machine. A PostgreSQL URL may name a unix
// socket directory instead (host=/path), which is local too.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	hosts := []string{u.Hostname()}
	if h := u.Query().Get("host"); h != "" {
		hosts = []string{h}
	}
	for _, host := range hosts {
		switch {
		case strings.HasPrefix(host, "/"), host == "localhost":
			continue
		case host == "":
			return errors.New("the URL names no host")
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return errors.New("only loopback addresses (127.0.0.1, ::1, localhost) are allowed, not " + host)
		}
	}
	return nil
}
