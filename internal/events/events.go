// Package events defines what flows from a WhatsApp session to webhooks:
// the normalized inbound event an engine produces, the stored event, and the
// JSON payload POSTed to receivers (the seed's message payload plus ours).
package events

import (
	"encoding/json"
	"log/slog"
	"time"
)

// Event types. Webhooks filter on these; "*" matches all.
const (
	TypeMessage       = "message"
	TypeReaction      = "message.reaction"
	TypeEdited        = "message.edited"
	TypeRevoked       = "message.revoked"
	TypeAck           = "message.ack"
	TypeSessionStatus = "session.status"
	TypeSessionQR     = "session.qr"
	TypeWebhookTest   = "webhook.test"
)

// Types lists every event type a webhook may subscribe to.
var Types = []string{TypeMessage, TypeReaction, TypeEdited, TypeRevoked, TypeAck,
	TypeSessionStatus, TypeSessionQR, TypeWebhookTest}

// Inbound is one event as an engine reports it, before it is stored. The
// engine fills what it knows; the store adds ids, client and session.
type Inbound struct {
	Type      string    // one of the Type* constants
	MessageID string    // WhatsApp message id; "" for session events
	From      string    // sender: phone digits when known, else the LID user (see Metadata["sender_lid"])
	To        string    // recipient: phone digits of the session's own number, or a group JID
	Timestamp time.Time // when WhatsApp says it happened
	Kind      string    // payload "type": text, image, video, audio, document, sticker, location, contact, reaction, delivered, read, played, connected...
	Content   string    // text, caption, emoji, or status
	Metadata  map[string]any
	// DedupeKey makes a redelivery of the same event a no-op. Empty means
	// DefaultDedupeKey is used.
	DedupeKey string
	// Media, on a message with a file (image, video, audio, document,
	// sticker), is what fetching that file later needs. It is stored with
	// the event, in the same transaction, and never put in the payload.
	Media *MediaRef
}

// MediaRef is how an engine finds the file of an inbound media message
// again (GET /api/whatsapp/sessions/{id}/media/{message_id}).
//
// Ref is opaque and engine-specific. For WhatsApp it holds the file's
// decryption key, so it is a secret: the session manager seals it before it
// is stored, and String and LogValue hide it so that it cannot reach a log
// by accident. It is never serialised into webhook payloads.
type MediaRef struct {
	// MessageID names the file in the API. The session manager sets it from
	// Inbound.MessageID before the event is stored.
	MessageID string
	Ref       []byte
	MimeType  string
	FileName  string
	Size      int64 // bytes, as the sender announced it; 0 when unknown
}

// String keeps Ref out of formatted output (%v of an Inbound included).
func (m MediaRef) String() string {
	return "MediaRef{mime_type: " + m.MimeType + ", ref: [redacted]}"
}

// GoString does the same for %#v.
func (m MediaRef) GoString() string { return m.String() }

// LogValue keeps Ref out of structured logs.
func (m MediaRef) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mime_type", m.MimeType), slog.Int64("size", m.Size), slog.String("ref", "[redacted]"))
}

// Key returns the key that identifies this event within its session.
func (in Inbound) Key() string {
	if in.DedupeKey != "" {
		return in.DedupeKey
	}
	if in.MessageID == "" {
		return "" // session events are never deduplicated
	}
	return in.Type + ":" + in.MessageID + ":" + in.Kind
}

// Payload is the JSON body POSTed to webhooks. The seed's fields keep their
// names and are always present; metadata carries the type-specific rest.
type Payload struct {
	Event       string         `json:"event"`
	EventID     string         `json:"event_id"`
	ClientID    int64          `json:"client_id"`
	SessionID   string         `json:"session_id"`
	PhoneNumber string         `json:"phone_number"`
	MessageID   string         `json:"message_id"`
	From        string         `json:"from"`
	To          string         `json:"to"`
	Timestamp   string         `json:"timestamp"`
	Type        string         `json:"type"`
	Content     string         `json:"content"`
	Metadata    map[string]any `json:"metadata"`
}

// BuildPayload renders the webhook body of an inbound event.
func BuildPayload(eventID string, clientID int64, sessionID, phone string, in Inbound) ([]byte, error) {
	md := in.Metadata
	if md == nil {
		md = map[string]any{}
	}
	ts := in.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	return json.Marshal(Payload{
		Event:       in.Type,
		EventID:     eventID,
		ClientID:    clientID,
		SessionID:   sessionID,
		PhoneNumber: phone,
		MessageID:   in.MessageID,
		From:        in.From,
		To:          in.To,
		Timestamp:   ts.UTC().Format(time.RFC3339),
		Type:        in.Kind,
		Content:     in.Content,
		Metadata:    md,
	})
}
