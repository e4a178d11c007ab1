package httpapi

import (
	"context"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/errs"
)

// DeliveryService is what the API needs of the delivery engine: the events
// API, retries, recovery and test events.
type DeliveryService interface {
	ListEvents(ctx context.Context, q delivery.ListQuery) ([]delivery.EventItem, string, error)
	GetEvent(ctx context.Context, clientID int64, id string) (delivery.EventItem, error)
	Retry(ctx context.Context, clientID int64, id string) (delivery.EventItem, error)
	Recover(ctx context.Context, clientID int64, webhookID string, since time.Time) (int64, error)
	Test(ctx context.Context, clientID int64, webhookID string) (string, error)
}

func (s *Server) deliveryRoutes() {
	// GET /api/webhooks/{id}/events (the seed's) and GET
	// /api/webhooks/events/{eventId} overlap in ServeMux's eyes, so one
	// pattern serves both; webhook ids are UUIDs and never "events".
	s.mux.Handle("GET /api/webhooks/{a}/{b}", s.client(s.webhookEventsOrEvent))
	s.routes = appendOnce(s.routes, "GET /api/webhooks/{id}/events")
	s.routes = appendOnce(s.routes, "GET /api/webhooks/events/{eventId}")
	s.handle("POST /api/webhooks/events/{eventId}/retry", s.client(s.retryEvent))
	s.handle("POST /api/webhooks/{id}/recover", s.client(s.recoverEvents))
	s.handle("POST /api/webhooks/{id}/test", s.client(s.testWebhook))
}

func (s *Server) webhookEventsOrEvent(w http.ResponseWriter, r *http.Request) error {
	a, b := r.PathValue("a"), r.PathValue("b")
	switch {
	case a == "events":
		return s.getEvent(w, r, b)
	case b == "events":
		return s.listEvents(w, r, a)
	}
	return errs.E(errs.NotFound, "Cannot GET %s", r.URL.Path)
}

type eventsPage struct {
	Data       []delivery.EventItem `json:"data"`
	NextCursor *string              `json:"next_cursor"`
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, webhookID string) error {
	limit, err := queryInt(r, "limit", 50, 1, 500)
	if err != nil {
		return err
	}
	var cursor string
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || uuid.Validate(string(b)) != nil {
			return errs.E(errs.Invalid, "cursor is not one this API returned")
		}
		cursor = string(b)
	}
	items, next, err := s.deliveries.ListEvents(r.Context(), delivery.ListQuery{
		ClientID: clientFrom(r.Context()).ID, WebhookID: webhookID,
		Status: r.URL.Query().Get("status"), Limit: limit, Cursor: cursor,
	})
	if err != nil {
		return err
	}
	page := eventsPage{Data: items}
	if next != "" {
		c := base64.RawURLEncoding.EncodeToString([]byte(next))
		page.NextCursor = &c
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request, id string) error {
	it, err := s.deliveries.GetEvent(r.Context(), clientFrom(r.Context()).ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, it)
	return nil
}

func (s *Server) retryEvent(w http.ResponseWriter, r *http.Request) error {
	it, err := s.deliveries.Retry(r.Context(), clientFrom(r.Context()).ID, r.PathValue("eventId"))
	if err != nil {
		return err
	}
	s.log.Info("webhook event requeued", "eventId", it.ID, "webhook_id", it.WebhookID, "client_id", clientFrom(r.Context()).ID)
	writeJSON(w, http.StatusAccepted, it)
	return nil
}

type recoverRequest struct {
	Since *time.Time `json:"since"`
}

func (s *Server) recoverEvents(w http.ResponseWriter, r *http.Request) error {
	var req recoverRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Since == nil {
		return errs.E(errs.Invalid, "since is required (RFC 3339 time)")
	}
	n, err := s.deliveries.Recover(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"), *req.Since)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"requeued": n})
	return nil
}

func (s *Server) testWebhook(w http.ResponseWriter, r *http.Request) error {
	id, err := s.deliveries.Test(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"event_id": id, "event": "webhook.test"})
	return nil
}
