package sessions

import (
	"context"
	"time"

	"github.com/wagate/wagate/internal/events"
)

// Store is what the manager needs of storage (implemented by *store.DB).
// Every method that names one session returns an errs.NotFound error when
// the row does not exist.
type Store interface {
	// CreateSession inserts a row and returns it with its id and times; a
	// second row for the same client and user is an errs.Conflict.
	CreateSession(ctx context.Context, s Session) (Session, error)
	GetSession(ctx context.Context, id string) (Session, error)
	SessionByUser(ctx context.Context, clientID int64, userID string) (Session, error)
	// ListSessions pages through a client's sessions, newest first; next is
	// "" on the last page.
	ListSessions(ctx context.Context, clientID int64, cursor string, limit int) (page []Session, next string, err error)
	ClientSessions(ctx context.Context, clientID int64) ([]Session, error)
	// ResumableSessions are linked (jid set) and not logged out.
	ResumableSessions(ctx context.Context) ([]Session, error)
	// UpdateSession writes phone number, engine, status, reason and jid.
	UpdateSession(ctx context.Context, s Session) (Session, error)
	SetSessionState(ctx context.Context, id string, status Status, reason, jid string) (Session, error)
	DeleteSession(ctx context.Context, id string) error

	// ClaimOutbound takes an idempotency key before a send (see
	// OutboundClaim); CompleteOutbound stores the send's result and
	// ReleaseOutbound forgets a claim whose send failed.
	ClaimOutbound(ctx context.Context, sessionID, key, requestHash string, staleBefore time.Time) (OutboundClaim, error)
	CompleteOutbound(ctx context.Context, sessionID, key, messageID string, sentAt time.Time) error
	ReleaseOutbound(ctx context.Context, sessionID, key string) error
	PruneOutbound(ctx context.Context, cutoff time.Time) (int64, error)

	// MediaRef returns the stored reference of the file of a session's
	// message (Ref as stored: sealed), or an errs.NotFound error.
	MediaRef(ctx context.Context, sessionID, messageID string) (events.MediaRef, error)
}

// OutboundClaim is the state of an idempotency key after ClaimOutbound.
type OutboundClaim struct {
	// Claimed means this caller owns the key and must send, then complete
	// or release it. Otherwise the key belongs to an earlier request.
	Claimed     bool
	RequestHash string    // hash of the request that first used the key
	MessageID   string    // set once that request's send completed
	SentAt      time.Time // when it was sent
}

// Info is a session as the API shows it.
type Info struct {
	Session
	QRPending bool // a QR code is waiting to be scanned
}

// ConnectRequest is the body of POST /api/whatsapp/connect.
type ConnectRequest struct {
	UserID      string `json:"user_id"`
	PhoneNumber string `json:"phone_number"`
	Engine      string `json:"engine"` // optional: the server's default engine
}

// ConnectResult is the seed's connect answer.
type ConnectResult struct {
	Status    Status // connected or reconnecting, as in the seed
	QRCode    string // "" when the device is linked or no code came in time
	SessionID string
}

// SendRequest is the body of POST /api/whatsapp/sessions/{id}/messages.
// Its JSON form is hashed for idempotency, so field order is fixed here.
type SendRequest struct {
	To          string   `json:"to"`
	Type        string   `json:"type"` // text (default), image, video, audio, document, location, contact, reaction
	Text        string   `json:"text,omitempty"`
	ReplyTo     string   `json:"reply_to,omitempty"`
	MediaURL    string   `json:"media_url,omitempty"`
	MediaBase64 string   `json:"media_base64,omitempty"`
	Caption     string   `json:"caption,omitempty"`
	FileName    string   `json:"file_name,omitempty"`
	MimeType    string   `json:"mime_type,omitempty"`
	Voice       bool     `json:"voice,omitempty"` // audio as a voice note
	Latitude    *float64 `json:"latitude,omitempty"`
	Longitude   *float64 `json:"longitude,omitempty"`
	Name        string   `json:"name,omitempty"`    // location name or contact display name
	Address     string   `json:"address,omitempty"` // location address
	VCard       string   `json:"vcard,omitempty"`
	Emoji       *string  `json:"emoji,omitempty"`      // reaction; "" removes it
	MessageID   string   `json:"message_id,omitempty"` // message reacted to
	// TargetSender is the author of the reply_to message or of the message
	// reacted to (phone digits or a JID; the session's own number for its
	// own messages). Optional: without it the engine uses recent messages
	// it remembers. Last, and omitted when empty, so that the idempotency
	// hash of requests without it is unchanged.
	TargetSender string `json:"target_sender,omitempty"`
}

// SendResponse is what a send answers.
type SendResponse struct {
	MessageID string
	Timestamp time.Time
	Replayed  bool // an earlier request with the same Idempotency-Key sent it
}

// ReadRequest is the body of POST /api/whatsapp/sessions/{id}/read.
type ReadRequest struct {
	Chat       string   `json:"chat"`
	Sender     string   `json:"sender"` // required in groups
	MessageIDs []string `json:"message_ids"`
}

// SimMessage is an inbound message injected into a simulated phone.
type SimMessage struct {
	From      string         `json:"from"`
	Type      string         `json:"type"` // text (default), image, video, audio, document, sticker, location, contact, reaction
	Content   string         `json:"content"`
	MessageID string         `json:"message_id"` // generated when empty
	Metadata  map[string]any `json:"metadata"`
	// MediaBase64 is the file of an image, video, audio, document or
	// sticker (at most 5 MiB), kept so that the media route can return it
	// as it returns a real message's file. It is never put in payloads.
	MediaBase64 string `json:"media_base64"`
	MimeType    string `json:"mime_type"` // of the file; sniffed when empty
	FileName    string `json:"file_name"` // of a document
}

// SimReceipts are receipts injected into a simulated phone.
type SimReceipts struct {
	MessageIDs []string `json:"message_ids"`
	Type       string   `json:"type"` // delivered, read or played
	From       string   `json:"from"` // who acknowledges; default the message's recipient
}

// SentMessage is a send recorded by a simulated phone.
type SentMessage struct {
	MessageID string
	Timestamp time.Time
	Message   Outbound
}

// Simulator is implemented by the connections of a simulated phone
// (the sandbox engine): what a real phone would do, driven by the API.
type Simulator interface {
	// Scan links the device, as scanning its QR code would.
	Scan(ctx context.Context) error
	// InjectMessages reports inbound messages through Sink.Inbound, in one
	// call, and returns their ids.
	InjectMessages(ctx context.Context, msgs []SimMessage) ([]string, error)
	// InjectReceipts reports message.ack events for messages.
	InjectReceipts(ctx context.Context, r SimReceipts) ([]string, error)
}

// SimulatorEngine is an engine of simulated phones. Its connections
// implement Simulator; it remembers what each session sent.
type SimulatorEngine interface {
	Engine
	Sent(sessionID string) []SentMessage
}
