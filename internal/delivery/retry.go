package delivery

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// DefaultSchedule is the wait before each retry: 5 s, 5 min, 30 min, 2 h,
// 5 h, then 10 h for every later one (in the spirit of Svix and Stripe).
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour,
}

// Retry-After is honoured within these bounds, so a receiver cannot park
// events for days nor make wagate hammer it.
const (
	minRetryAfter = time.Second
	maxRetryAfter = time.Hour
)

// backoff returns the wait before retry number n (1-based) with ±20% jitter.
func backoff(schedule []time.Duration, n int, rnd func() float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := schedule[min(n-1, len(schedule)-1)]
	jitter := 0.8 + 0.4*rnd()
	return time.Duration(float64(d) * jitter)
}

func jitterRand() float64 { return rand.Float64() }

// retryAfter parses a Retry-After header (seconds or an HTTP date) of a 429
// or 503 answer, bounded; ok is false when there is none to honour.
func retryAfter(status int, h http.Header, now time.Time) (time.Duration, bool) {
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
		return 0, false
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, minRetryAfter), maxRetryAfter), true
}
