package httpapi

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/webhooks"
)

// WebhookService is what the API needs of the webhooks use cases.
type WebhookService interface {
	Register(ctx context.Context, clientID int64, in webhooks.Input) (webhooks.Webhook, error)
	List(ctx context.Context, clientID int64) ([]webhooks.Webhook, error)
	Get(ctx context.Context, clientID int64, id string) (webhooks.Webhook, error)
	Update(ctx context.Context, clientID int64, id string, p webhooks.Patch) (webhooks.Webhook, error)
	Delete(ctx context.Context, clientID int64, id string) error
	RotateSecret(ctx context.Context, clientID int64, id string, grace time.Duration) (webhooks.Rotation, error)
	SetAlertURL(ctx context.Context, clientID int64, url string) error
}

// The events, retry, test and recover routes under /api/webhooks belong to
// the delivery engine (deliveries.go).
func (s *Server) webhookRoutes() {
	s.handle("POST /api/webhooks/register", s.client(s.registerWebhook))
	s.handle("GET /api/webhooks", s.client(s.listWebhooks))
	s.handle("GET /api/webhooks/{id}", s.client(s.getWebhook))
	s.handle("PATCH /api/webhooks/{id}", s.client(s.updateWebhook))
	s.handle("DELETE /api/webhooks/{id}", s.client(s.deleteWebhook))
	s.handle("POST /api/webhooks/{id}/rotate-secret", s.client(s.rotateWebhookSecret))
	s.handle("PUT /api/me/alert-webhook", s.client(s.setAlertWebhook))
}

// maskedHeaderValue replaces custom header values in every answer: they
// are often credentials for the receiver, and like the signing secret they
// are write-only. Names are shown so a client can tell what is configured.
const maskedHeaderValue = "***"

// webhookJSON is a webhook as the API shows it. Secret is set only in the
// register answer.
type webhookJSON struct {
	webhooks.Webhook
	Headers                 map[string]string `json:"headers"` // values masked
	PreviousSecretExpiresAt *time.Time        `json:"previous_secret_expires_at,omitempty"`
	Secret                  string            `json:"secret,omitempty"`
}

func webhookView(w webhooks.Webhook) webhookJSON {
	h := make(map[string]string, len(w.Headers))
	for k := range w.Headers {
		h[k] = maskedHeaderValue
	}
	v := webhookJSON{Webhook: w, Headers: h}
	if w.PrevSecretUntil.After(time.Now()) {
		t := w.PrevSecretUntil
		v.PreviousSecretExpiresAt = &t
	}
	return v
}

// registerWebhook answers 201 with the webhook and its signing secret,
// which is never shown again (rotate to get a new one).
func (s *Server) registerWebhook(w http.ResponseWriter, r *http.Request) error {
	var in webhooks.Input
	if err := decode(r, &in); err != nil {
		return err
	}
	hook, err := s.webhooks.Register(r.Context(), clientFrom(r.Context()).ID, in)
	if err != nil {
		return err
	}
	v := webhookView(hook)
	v.Secret = hook.Secret
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	list, err := s.webhooks.List(r.Context(), clientFrom(r.Context()).ID)
	if err != nil {
		return err
	}
	out := make([]webhookJSON, 0, len(list))
	for _, h := range list {
		out = append(out, webhookView(h))
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
	return nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request) error {
	hook, err := s.webhooks.Get(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookView(hook))
	return nil
}

// updateWebhook applies a partial update: omitted (or null) fields are
// left alone. See webhooks.Patch.
func (s *Server) updateWebhook(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	// Unknown ids answer 404 before any body error, so a probe learns
	// nothing from the order of checks.
	if _, err := s.webhooks.Get(ctx, clientFrom(ctx).ID, id); err != nil {
		return err
	}
	var p webhooks.Patch
	if err := decode(r, &p); err != nil {
		return err
	}
	hook, err := s.webhooks.Update(ctx, clientFrom(ctx).ID, id, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookView(hook))
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := s.webhooks.Delete(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type rotateRequest struct {
	// GraceSeconds is how long the old secret keeps signing; omitted means
	// the server's default (WAGATE_SECRET_GRACE_PERIOD, 24h).
	GraceSeconds *int64 `json:"grace_seconds"`
}

type rotateResponse struct {
	ID                      string     `json:"id"`
	Secret                  string     `json:"secret"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"` // null: the old secret stopped at once
}

// rotateWebhookSecret takes an optional body {"grace_seconds": 0..604800}.
func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	if _, err := s.webhooks.Get(ctx, clientFrom(ctx).ID, id); err != nil {
		return err
	}
	var req rotateRequest
	if hasBody(r) {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	grace := time.Duration(-1) // the service's default
	if req.GraceSeconds != nil {
		maxSec := int64(webhooks.MaxGracePeriod / time.Second)
		if *req.GraceSeconds < 0 || *req.GraceSeconds > maxSec {
			return errs.E(errs.Invalid, "grace_seconds must be between 0 and %d", maxSec)
		}
		grace = time.Duration(*req.GraceSeconds) * time.Second
	}
	rot, err := s.webhooks.RotateSecret(ctx, clientFrom(ctx).ID, id, grace)
	if err != nil {
		return err
	}
	resp := rotateResponse{ID: rot.ID, Secret: rot.Secret}
	if !rot.PreviousSecretExpiresAt.IsZero() {
		resp.PreviousSecretExpiresAt = &rot.PreviousSecretExpiresAt
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

type alertWebhookRequest struct {
	URL *string `json:"url"`
}

// setAlertWebhook sets the URL told when one of the client's webhooks is
// disabled: {"url": "https://..."}; {"url": ""} removes it. 204.
func (s *Server) setAlertWebhook(w http.ResponseWriter, r *http.Request) error {
	var req alertWebhookRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.URL == nil {
		return errs.E(errs.Invalid, `url is required ("" removes the alert webhook)`)
	}
	if err := s.webhooks.SetAlertURL(r.Context(), clientFrom(r.Context()).ID, *req.URL); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// hasBody reports whether the request carries a body at all, so that an
// optional body may be left out even by clients that send no
// Content-Length. It keeps what it peeks for decode.
func hasBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return false
	}
	br := bufio.NewReader(r.Body)
	if _, err := br.Peek(1); err == io.EOF {
		return false
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{br, r.Body}
	return true
}
