package httpapi

import (
	"context"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/sessions"
)

// SessionService is what the API needs of the session manager
// (*sessions.Manager). Every method is scoped to the calling client: another
// client's session is NotFound.
type SessionService interface {
	Connect(ctx context.Context, clientID int64, req sessions.ConnectRequest) (sessions.ConnectResult, error)
	List(ctx context.Context, clientID int64, cursor string, limit int) ([]sessions.Info, string, error)
	Get(ctx context.Context, clientID int64, id string) (sessions.Info, error)
	QR(ctx context.Context, clientID int64, id string) (string, error)
	PairCode(ctx context.Context, clientID int64, id, phone string) (string, error)
	Logout(ctx context.Context, clientID int64, id string) (sessions.Info, error)
	Reconnect(ctx context.Context, clientID int64, id string) (sessions.ConnectResult, error)
	Delete(ctx context.Context, clientID int64, id string) error
	Send(ctx context.Context, clientID int64, id string, req sessions.SendRequest, idempotencyKey string) (sessions.SendResponse, error)
	MarkRead(ctx context.Context, clientID int64, id string, req sessions.ReadRequest) error
	Media(ctx context.Context, clientID int64, id, messageID string) (sessions.MediaFile, error)

	SandboxScan(ctx context.Context, clientID int64, id string) (sessions.Info, error)
	SandboxInject(ctx context.Context, clientID int64, id string, msgs []sessions.SimMessage) ([]string, error)
	SandboxReceipts(ctx context.Context, clientID int64, id string, r sessions.SimReceipts) ([]string, error)
	SandboxSent(ctx context.Context, clientID int64, id string) ([]sessions.SentMessage, error)
}

func (s *Server) sessionRoutes() {
	s.handle("POST /api/whatsapp/connect", s.client(s.connectSession))
	s.handle("GET /api/whatsapp/sessions", s.client(s.listSessions))
	s.handle("GET /api/whatsapp/sessions/{id}", s.client(s.getSession))
	s.handle("DELETE /api/whatsapp/sessions/{id}", s.client(s.deleteSession))
	s.handle("GET /api/whatsapp/sessions/{id}/qr", s.client(s.sessionQR))
	s.handle("POST /api/whatsapp/sessions/{id}/pair-code", s.client(s.sessionPairCode))
	s.handle("POST /api/whatsapp/sessions/{id}/logout", s.client(s.logoutSession))
	s.handle("POST /api/whatsapp/sessions/{id}/reconnect", s.client(s.reconnectSession))
	s.handle("POST /api/whatsapp/sessions/{id}/messages", s.client(s.sendMessage))
	s.handle("POST /api/whatsapp/sessions/{id}/read", s.client(s.markRead))
	s.handle("GET /api/whatsapp/sessions/{id}/media/{messageId}", s.client(s.sessionMedia))
	s.handle("POST /api/whatsapp/sessions/{id}/sandbox/scan", s.client(s.sandboxScan))
	s.handle("POST /api/whatsapp/sessions/{id}/sandbox/messages", s.client(s.sandboxMessages))
	s.handle("POST /api/whatsapp/sessions/{id}/sandbox/receipts", s.client(s.sandboxReceipts))
	s.handle("GET /api/whatsapp/sessions/{id}/sandbox/sent", s.client(s.sandboxSent))
}

// sessionView is a session in API answers.
type sessionView struct {
	ID          string    `json:"id"`
	ClientID    int64     `json:"client_id"`
	UserID      string    `json:"user_id"`
	PhoneNumber string    `json:"phone_number"`
	Status      string    `json:"status"` // connected, reconnecting, disconnected, logged_out
	Reason      string    `json:"reason"`
	JID         string    `json:"jid"`
	Engine      string    `json:"engine"`
	QRPending   bool      `json:"qr_pending"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func viewSession(in sessions.Info) sessionView {
	return sessionView{
		ID: in.ID, ClientID: in.ClientID, UserID: in.UserID, PhoneNumber: in.PhoneNumber,
		Status: string(in.Status), Reason: in.Reason, JID: in.JID, Engine: in.Engine, QRPending: in.QRPending,
		CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt,
	}
}

// connectView is the seed's connect answer.
type connectView struct {
	Status    string `json:"status"`
	QRCode    string `json:"qr_code"`
	SessionID string `json:"session_id"`
}

func viewConnect(r sessions.ConnectResult) connectView {
	return connectView{Status: string(r.Status), QRCode: r.QRCode, SessionID: r.SessionID}
}

// decodeOptional is decode for bodies that may be left out entirely.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	err := decode(r, v)
	if e, ok := err.(*errs.Error); ok && e.Message == "request body is empty" {
		return nil
	}
	return err
}

func (s *Server) connectSession(w http.ResponseWriter, r *http.Request) error {
	var req sessions.ConnectRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	res, err := s.sessions.Connect(r.Context(), clientFrom(r.Context()).ID, req)
	if err != nil {
		return err
	}
	// 201 as the seed's NestJS controller answered.
	writeJSON(w, http.StatusCreated, viewConnect(res))
	return nil
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryInt(r, "limit", 50, 1, 100)
	if err != nil {
		return err
	}
	list, next, err := s.sessions.List(r.Context(), clientFrom(r.Context()).ID, r.URL.Query().Get("cursor"), limit)
	if err != nil {
		return err
	}
	data := make([]sessionView, len(list))
	for i, in := range list {
		data[i] = viewSession(in)
	}
	var nextCursor *string
	if next != "" {
		nextCursor = &next
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "next_cursor": nextCursor})
	return nil
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) error {
	in, err := s.sessions.Get(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewSession(in))
	return nil
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) error {
	if err := s.sessions.Delete(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sessionQR answers the pending QR code as a PNG, or as JSON with
// ?format=raw.
func (s *Server) sessionQR(w http.ResponseWriter, r *http.Request) error {
	format := r.URL.Query().Get("format")
	if format != "" && format != "png" && format != "raw" {
		return errs.E(errs.Invalid, "format must be png or raw")
	}
	size, err := queryInt(r, "size", sessions.QRDefaultSize, sessions.QRMinSize, sessions.QRMaxSize)
	if err != nil {
		return err
	}
	code, err := s.sessions.QR(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store") // codes expire within a minute
	if format == "raw" {
		writeJSON(w, http.StatusOK, map[string]string{"qr_code": code})
		return nil
	}
	img, err := sessions.QRPNG(code, size)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "image/png")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(img)
	return nil
}

func (s *Server) sessionPairCode(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		PhoneNumber string `json:"phone_number"`
	}
	if err := decodeOptional(r, &req); err != nil {
		return err
	}
	code, err := s.sessions.PairCode(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"), req.PhoneNumber)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"code": code})
	return nil
}

func (s *Server) logoutSession(w http.ResponseWriter, r *http.Request) error {
	in, err := s.sessions.Logout(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewSession(in))
	return nil
}

func (s *Server) reconnectSession(w http.ResponseWriter, r *http.Request) error {
	res, err := s.sessions.Reconnect(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewConnect(res))
	return nil
}

// sendMessage sends one message (sessions.SendRequest). For a reply
// (reply_to) or a reaction (message_id), target_sender names the author of
// that message, so a message wagate has not seen recently can be quoted or
// reacted to as well.
func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request) error {
	var req sessions.SendRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	res, err := s.sessions.Send(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"), req, r.Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"message_id": res.MessageID,
		"timestamp":  res.Timestamp.UTC().Format(time.RFC3339Nano),
	})
	return nil
}

func (s *Server) markRead(w http.ResponseWriter, r *http.Request) error {
	var req sessions.ReadRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := s.sessions.MarkRead(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"), req); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_ids": req.MessageIDs, "status": "read"})
	return nil
}

// mediaMaxAge is how long clients may cache a file: a message's file
// never changes, but the answer is private to the client's token.
const mediaMaxAge = 24 * time.Hour

// sessionMedia answers the file of an inbound media message, as is.
func (s *Server) sessionMedia(w http.ResponseWriter, r *http.Request) error {
	f, err := s.sessions.Media(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"), r.PathValue("messageId"))
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", f.MimeType)
	h.Set("Content-Length", strconv.Itoa(len(f.Data)))
	h.Set("Cache-Control", "private, max-age="+strconv.Itoa(int(mediaMaxAge.Seconds())))
	// The type is the sender's claim: a browser must not sniff another, and
	// a file claiming text/html must not run scripts on the API's origin.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	if cd := mime.FormatMediaType("inline", map[string]string{"filename": f.FileName}); f.FileName != "" && cd != "" {
		h.Set("Content-Disposition", cd) // filename*=utf-8''… when not plain ASCII
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(f.Data)
	return nil
}

func (s *Server) sandboxScan(w http.ResponseWriter, r *http.Request) error {
	in, err := s.sessions.SandboxScan(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewSession(in))
	return nil
}

// sandboxMessages takes one message or {"messages": [...]}: the load
// tool's hot path, so the batch is handed on whole.
func (s *Server) sandboxMessages(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		sessions.SimMessage
		Messages []sessions.SimMessage `json:"messages"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	msgs := req.Messages
	if msgs == nil {
		if req.From == "" && req.Content == "" && req.Type == "" {
			return errs.E(errs.Invalid, `body must be one message {"from","type","content"} or {"messages": [...]}`)
		}
		msgs = []sessions.SimMessage{req.SimMessage}
	} else if req.From != "" || req.Content != "" {
		return errs.E(errs.Invalid, `send either one message or "messages", not both`)
	}
	ids, err := s.sessions.SandboxInject(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"), msgs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"message_ids": ids})
	return nil
}

func (s *Server) sandboxReceipts(w http.ResponseWriter, r *http.Request) error {
	var req sessions.SimReceipts
	if err := decode(r, &req); err != nil {
		return err
	}
	ids, err := s.sessions.SandboxReceipts(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"message_ids": ids, "type": strings.ToLower(req.Type)})
	return nil
}

// sentView is a send recorded by the sandbox; media bytes are summarised.
type sentView struct {
	MessageID string    `json:"message_id"`
	Timestamp time.Time `json:"timestamp"`
	To        string    `json:"to"`
	Type      string    `json:"type"`
	Text      string    `json:"text,omitempty"`
	Caption   string    `json:"caption,omitempty"`
	ReplyTo   string    `json:"reply_to,omitempty"`
	MimeType  string    `json:"mime_type,omitempty"`
	FileName  string    `json:"file_name,omitempty"`
	MediaSize int       `json:"media_size,omitempty"`
	Latitude  float64   `json:"latitude,omitempty"`
	Longitude float64   `json:"longitude,omitempty"`
	Name      string    `json:"name,omitempty"`
	Address   string    `json:"address,omitempty"`
	VCard     string    `json:"vcard,omitempty"`
	Emoji     *string   `json:"emoji,omitempty"`
	Target    string    `json:"target_message_id,omitempty"`
	TargetBy  string    `json:"target_sender,omitempty"`
}

func (s *Server) sandboxSent(w http.ResponseWriter, r *http.Request) error {
	list, err := s.sessions.SandboxSent(r.Context(), clientFrom(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	data := make([]sentView, len(list))
	for i, m := range list {
		o := m.Message
		v := sentView{MessageID: m.MessageID, Timestamp: m.Timestamp, To: o.To, Type: o.Type, Text: o.Text,
			Caption: o.Caption, ReplyTo: o.ReplyTo, MimeType: o.MimeType, FileName: o.FileName, MediaSize: len(o.Media),
			Latitude: o.Latitude, Longitude: o.Longitude, Name: o.Name, Address: o.Address, VCard: o.VCard, Target: o.TargetID,
			TargetBy: o.TargetSender}
		if o.Type == sessions.KindReaction {
			v.Emoji = &o.Emoji
		}
		data[i] = v
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
	return nil
}
