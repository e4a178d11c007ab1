package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/wagate/wagate/internal/errs"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyClient
)

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// statusRecorder remembers the status for the access log and metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// RequestObserver is told about every finished request (metrics).
type RequestObserver func(pattern, method string, status int, d time.Duration)

// outer wraps every request: request id, panic recovery, body limit,
// access log and the observer. A client-supplied X-Request-Id is kept when
// it is short and printable, so callers can correlate.
func (s *Server) outer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), keyRequestID, id))
		r.Body = http.MaxBytesReader(w, r.Body, s.bodyLimit(r))
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving request", "panic", fmt.Sprint(p), "stack", string(debug.Stack()), "request_id", id)
				if rec.status == 0 {
					writeError(rec, r, s.log, errs.E(errs.Internal, "Internal server error"))
				}
			}
			d := time.Since(start)
			pattern := r.Pattern
			if pattern == "" {
				pattern = "unmatched"
			}
			if s.observe != nil {
				s.observe(pattern, r.Method, rec.status, d)
			}
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
				level = slog.LevelDebug
			}
			s.log.Log(r.Context(), level, "http request", "method", r.Method, "path", r.URL.Path, "pattern", pattern,
				"status", rec.status, "bytes", rec.bytes, "duration_ms", float64(d.Microseconds())/1000,
				"request_id", id, "remote", r.RemoteAddr)
		}()
		next.ServeHTTP(rec, r)
	})
}

// bodyLimit is the request body limit of the route r goes to: media sends
// carry base64 files, everything else is small.
func (s *Server) bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost && r.ContentLength != 0 && s.maxMediaBody > s.maxBody {
		if _, pattern := s.mux.Handler(r); pattern == sendPattern {
			return s.maxMediaBody
		}
	}
	return s.maxBody
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// limiter is a token bucket per client, so one busy client cannot starve
// the others. Idle buckets are dropped.
type limiter struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	buckets map[int64]*bucket
	last    time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, buckets: map[int64]*bucket{}}
}

// allow reports whether the client may proceed, and if not, how long to wait.
func (l *limiter) allow(clientID int64, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) > time.Minute {
		for id, b := range l.buckets {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, id)
			}
		}
		l.last = now
	}
	b := l.buckets[clientID]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[clientID] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

// sendPattern is the route whose body may carry a base64 media file.
const sendPattern = "POST /api/whatsapp/sessions/{id}/messages"
