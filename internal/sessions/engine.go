package sessions

import (
	"context"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
)

// Engine is the seam between the session manager and WhatsApp. whatsmeow is
// the real one, sandbox the simulated phone; both are driven the same way.
type Engine interface {
	// Name is what sessions store in their engine column ("whatsmeow", "sandbox").
	Name() string
	// Open prepares the connection of one session. Nothing is dialled yet.
	// Everything the connection observes is reported to sink.
	Open(ctx context.Context, s Session, sink Sink) (Conn, error)
}

// Conn is one session's live connection, owned by the manager.
type Conn interface {
	// Connect dials WhatsApp. An unlinked device starts QR pairing and reports
	// each code through Sink.QR; a linked one reports Sink.State(connected).
	Connect(ctx context.Context) error
	// PairPhone asks for a pairing code to type on the phone instead of a QR.
	PairPhone(ctx context.Context, phone string) (string, error)
	Send(ctx context.Context, m Outbound) (SendResult, error)
	// MarkRead marks messages of chat (sent by sender) as read.
	MarkRead(ctx context.Context, chat, sender string, messageIDs []string) error
	// Download fetches the file of an inbound media message from the
	// reference this engine put in its event (events.Inbound.Media.Ref,
	// unsealed). A file larger than maxBytes is an errs.TooLarge error,
	// refused before downloading when its size is known. A file WhatsApp no
	// longer has is a CodeMediaExpired error. mimeType may be "" when the
	// engine does not know it.
	Download(ctx context.Context, ref []byte, maxBytes int64) (data []byte, mimeType string, err error)
	// Logout unlinks the device: the session must be scanned again.
	Logout(ctx context.Context) error
	// Close disconnects and keeps the link, so the session can resume.
	Close()
}

// CodeMediaExpired is the error code of a media file that is no longer on
// WhatsApp's servers (they keep files for a limited time); the API answers
// it with 410 Gone.
const CodeMediaExpired = errs.Gone

// Sink receives what a connection produces.
type Sink interface {
	// Inbound stores events durably. It returns only after they are
	// committed; an error means the engine must not acknowledge them to
	// WhatsApp, so that WhatsApp delivers them again.
	Inbound(ctx context.Context, evs ...events.Inbound) error
	// State reports a change of connection state.
	State(ctx context.Context, st State)
	// QR reports a new QR code to show ("" once pairing ends).
	QR(ctx context.Context, code string)
}

// State is a connection state change reported by an engine.
type State struct {
	Status Status
	Reason string // why: logged_out, stream_replaced, temporary_ban, client_outdated, ...
	JID    string // the linked WhatsApp id, when connected
}

// Outbound is a message to send. Media is already fetched and checked by
// the manager: engines receive bytes, never URLs.
type Outbound struct {
	To        string // phone digits or a full JID (groups)
	Type      string // text, image, video, audio, document, location, contact, reaction
	Text      string
	Caption   string
	ReplyTo   string // id of the quoted message
	Media     []byte
	MimeType  string
	FileName  string
	Latitude  float64
	Longitude float64
	Name      string // location name or contact display name
	Address   string
	VCard     string
	Emoji     string // reaction; "" removes it
	TargetID  string // message reacted to
	Voice     bool   // audio as a voice note (ptt)
	// TargetSender is the author of the message quoted (ReplyTo) or reacted
	// to (TargetID): phone digits or a JID; the session's own number for its
	// own messages. "" means unknown: engines then use what they remember of
	// recent messages, or guess.
	TargetSender string
}

// SendResult is what WhatsApp answered to a send.
type SendResult struct {
	MessageID string
	Timestamp time.Time
}

// Publisher stores inbound events durably (deduplicated by session and
// Inbound.Key) together with their webhook deliveries, in one transaction,
// and hands the deliveries to the workers. It returns how many events were
// new. The delivery package implements it.
type Publisher interface {
	Publish(ctx context.Context, s Session, evs []events.Inbound) (int, error)
}
