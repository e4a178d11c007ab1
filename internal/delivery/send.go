package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/webhooks"
	"github.com/wagate/wagate/webhooksig"
)

// maxStoredBody is how much of a receiver's answer an attempt keeps.
const maxStoredBody = 4 << 10

// attempt makes one delivery attempt and decides what follows.
func (e *Engine) attempt(job Job) Result {
	ctx := context.Background()
	hook, err := e.hooks.get(ctx, job.WebhookID)
	if err != nil || !hook.wh.Active {
		// Deleted (its rows went with it) or disabled meanwhile: not an
		// attempt. Disabled rows wait, unleased, for a re-enable.
		if err != nil && !errors.Is(err, errWebhookGone) {
			e.log.Warn("loading webhook failed; delivery postponed", "webhook_id", job.WebhookID, "err", err)
		}
		return Result{Job: job, Outcome: OutcomeRelease}
	}
	wh := &hook.wh
	n := job.Attempts + 1
	if e.log.Enabled(ctx, slog.LevelDebug) {
		e.log.Debug("Processing webhook delivery job", "eventId", job.ID, "event_id", job.EventID, "webhook_id", job.WebhookID, "attempt", n)
	}
	start := e.now()
	res := Result{Job: job, StartedAt: start}
	status, header, body, err := e.post(ctx, wh, hook.secrets(start), job, start)
	res.Duration = e.now().Sub(start)
	res.StatusCode = status
	res.ResponseBody = body
	if err != nil {
		res.Error = err.Error()
	}
	outcome := "delivered"
	switch {
	case err == nil && status >= 200 && status < 300:
		res.Outcome = OutcomeDelivered
		if e.cfg.Metrics != nil {
			e.cfg.Metrics.Delivered(e.now().Sub(job.CreatedAt))
		}
		if e.log.Enabled(ctx, slog.LevelDebug) {
			e.log.Debug("Webhook delivered successfully", "eventId", job.ID, "event_id", job.EventID, "webhook_id", job.WebhookID, "statusCode", status, "attempt", n)
		}
	case status == http.StatusGone:
		res.Outcome = OutcomeFailed
		res.Error = "endpoint answered 410 Gone: webhook disabled"
		res.DisableReason = "endpoint answered 410 Gone"
		outcome = "failed"
	default:
		if res.Error == "" {
			res.Error = "endpoint answered " + strconv.Itoa(status)
		}
		retries := n - job.BudgetBase - 1 // retries already made in this budget
		if retries >= wh.MaxRetries {
			res.Outcome = OutcomeFailed
			outcome = "failed"
			e.log.Info("webhook delivery failed; retries exhausted", "eventId", job.ID, "event_id", job.EventID,
				"webhook_id", job.WebhookID, "client_id", job.ClientID, "attempts", n, "statusCode", status, "error", res.Error)
		} else {
			res.Outcome = OutcomeRetry
			outcome = "retry"
			wait := backoff(e.cfg.Schedule, retries+1, jitterRand)
			if ra, ok := retryAfter(status, header, start); ok {
				wait = ra
			}
			res.NextAttemptAt = start.Add(wait)
			e.log.Debug("webhook delivery attempt failed; will retry", "eventId", job.ID, "webhook_id", job.WebhookID,
				"attempt", n, "statusCode", status, "error", res.Error, "next_attempt_at", res.NextAttemptAt)
		}
	}
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.Attempt(job.WebhookID, outcome, res.Duration)
	}
	return res
}

// post sends the signed request and reads the start of the answer.
func (e *Engine) post(ctx context.Context, wh *webhooks.Webhook, secrets [][]byte, job Job, now time.Time) (int, http.Header, string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(job.Payload))
	if err != nil {
		return 0, nil, "", err
	}
	// Custom headers first: wagate's own headers win over them.
	for k, v := range wh.Headers {
		req.Header.Set(k, v)
	}
	id, ts, sig := webhooksig.Headers(secrets, job.EventID, now, job.Payload)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", e.cfg.UserAgent)
	req.Header.Set(webhooksig.HeaderID, id)
	req.Header.Set(webhooksig.HeaderTimestamp, ts)
	req.Header.Set(webhooksig.HeaderSignature, sig)
	resp, err := e.client.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return 0, nil, "", errors.New("timeout after " + e.cfg.Timeout.String())
		}
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxStoredBody))
	// Drain a little more so the connection can be reused.
	io.CopyN(io.Discard, resp.Body, 64<<10)
	return resp.StatusCode, resp.Header, string(b), nil
}

// hookCache keeps webhooks and their parsed secrets for a few seconds, so
// the hot path does not read and decrypt a webhook per delivery. Changes
// through the API reach the workers within the TTL.
type hookCache struct {
	src WebhookSource
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*cachedHook
}

type cachedHook struct {
	wh      webhooks.Webhook
	cur     []byte
	prev    []byte
	expires time.Time
}

// secrets returns the keys that sign at time now.
func (c *cachedHook) secrets(now time.Time) [][]byte {
	if c.prev != nil && now.Before(c.wh.PrevSecretUntil) {
		return [][]byte{c.cur, c.prev}
	}
	return [][]byte{c.cur}
}

func newHookCache(src WebhookSource, ttl time.Duration, now func() time.Time) *hookCache {
	return &hookCache{src: src, ttl: ttl, now: now, m: map[string]*cachedHook{}}
}

func (c *hookCache) get(ctx context.Context, id string) (*cachedHook, error) {
	now := c.now()
	c.mu.Lock()
	h := c.m[id]
	c.mu.Unlock()
	if h != nil && now.Before(h.expires) {
		return h, nil
	}
	wh, err := c.src.ForDelivery(ctx, id)
	if err != nil {
		if errs.Is(err, errs.NotFound) {
			return nil, errWebhookGone
		}
		return nil, err
	}
	h = &cachedHook{wh: wh, expires: now.Add(c.ttl)}
	if h.cur, err = webhooksig.ParseSecret(wh.Secret); err != nil {
		return nil, err
	}
	if wh.PrevSecret != "" {
		if h.prev, err = webhooksig.ParseSecret(wh.PrevSecret); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	if len(c.m) > 10000 {
		clear(c.m)
	}
	c.m[id] = h
	c.mu.Unlock()
	return h, nil
}

// forget drops a webhook so the next delivery reloads it.
func (c *hookCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// Invalidate makes the next delivery to the webhook reload it.
func (e *Engine) Invalidate(webhookID string) { e.hooks.forget(webhookID) }

// webhookDisabled raises the alert: a warn log, a metric, and a
// webhook.disabled POST to the operator's and the client's alert URLs.
func (e *Engine) webhookDisabled(d Disabled) {
	e.hooks.forget(d.WebhookID)
	e.log.Warn("webhook disabled", "webhook_id", d.WebhookID, "client_id", d.ClientID, "reason", d.Reason,
		"consecutive_failures", d.ConsecutiveFailures)
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.WebhookDisabled(d.Reason)
	}
	body, _ := json.Marshal(map[string]any{
		"event":                "webhook.disabled",
		"webhook_id":           d.WebhookID,
		"client_id":            d.ClientID,
		"webhook_url":          d.URL,
		"reason":               d.Reason,
		"consecutive_failures": d.ConsecutiveFailures,
		"failing_since":        nullableTime(d.FailingSince),
		"disabled_at":          e.now().UTC().Format(time.RFC3339),
	})
	for _, u := range []string{e.cfg.AlertURL, d.AlertURL} {
		if u == "" {
			continue
		}
		e.alerts.Add(1)
		go func(u string) {
			defer e.alerts.Done()
			e.sendAlert(u, body, d)
		}(u)
	}
}

func nullableTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

// sendAlert POSTs an alert, retrying a few times; alerts are best effort.
func (e *Engine) sendAlert(url string, body []byte, d Disabled) {
	wait := time.Second
	for try := 1; try <= 3; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", e.cfg.UserAgent)
			var resp *http.Response
			if resp, err = e.client.Do(req); err == nil {
				io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				if resp.StatusCode < 300 {
					cancel()
					return
				}
				err = errors.New("alert endpoint answered " + resp.Status)
			}
		}
		cancel()
		e.log.Warn("sending webhook.disabled alert failed", "webhook_id", d.WebhookID, "try", try, "err", err)
		time.Sleep(wait)
		wait *= 3
	}
}
