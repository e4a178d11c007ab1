package whatsmeow

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/sessions"
)

// parseRecipient accepts phone digits (an optional leading +) or a full
// JID of a user, LID, group or newsletter. Device parts are dropped: a
// message goes to the user, not one of their devices.
func parseRecipient(to string) (types.JID, error) {
	s := strings.TrimSpace(to)
	if s == "" {
		return types.EmptyJID, errs.E(errs.Invalid, "recipient is required")
	}
	if !strings.Contains(s, "@") {
		d := strings.TrimPrefix(s, "+")
		if len(d) < 7 || len(d) > 15 || strings.Trim(d, "0123456789") != "" || d[0] == '0' {
			return types.EmptyJID, errs.E(errs.Invalid, "recipient %q is not an international phone number (digits only)", to)
		}
		return types.NewJID(d, types.DefaultUserServer), nil
	}
	jid, err := types.ParseJID(s)
	if err != nil || jid.User == "" {
		return types.EmptyJID, errs.E(errs.Invalid, "recipient %q is not a valid WhatsApp id", to)
	}
	switch jid.Server {
	case types.LegacyUserServer: // "@c.us", as whatsapp-web.js writes it
		jid.Server = types.DefaultUserServer
	case types.DefaultUserServer, types.GroupServer, types.HiddenUserServer, types.NewsletterServer:
	default:
		return types.EmptyJID, errs.E(errs.Invalid, "recipient %q: unsupported WhatsApp server %q", to, jid.Server)
	}
	return jid.ToNonAD(), nil
}

// builder is the part of *whatsmeow.Client that building a message needs;
// tests replace Upload so no media leaves the machine.
type builder interface {
	Upload(ctx context.Context, plaintext []byte, appInfo whatsmeow.MediaType) (whatsmeow.UploadResponse, error)
	BuildReaction(chat, sender types.JID, id types.MessageID, reaction string) *waE2E.Message
}

// Send builds, uploads and sends one message.
func (c *conn) Send(ctx context.Context, m sessions.Outbound) (sessions.SendResult, error) {
	chat, err := parseRecipient(m.To)
	if err != nil {
		return sessions.SendResult{}, err
	}
	if c.client.Store.ID == nil {
		return sessions.SendResult{}, errs.E(errs.NotConnected, "session is not linked")
	}
	if !c.client.IsLoggedIn() {
		// Checked before uploading media, which would fail the same way.
		return sessions.SendResult{}, errs.E(errs.NotConnected, "session is not connected")
	}
	msg, err := c.build(ctx, c.client, chat, m)
	if err != nil {
		return sessions.SendResult{}, err
	}
	resp, err := c.client.SendMessage(ctx, chat, msg)
	if err != nil {
		return sessions.SendResult{}, mapErr(err, "sending message")
	}
	c.recent.put(resp.ID, recentMsg{chat: chat, sender: c.ownJID().ToNonAD(), msg: msg})
	return sessions.SendResult{MessageID: resp.ID, Timestamp: resp.Timestamp}, nil
}

// build turns an Outbound into a WhatsApp message, uploading media first.
func (c *conn) build(ctx context.Context, b builder, chat types.JID, m sessions.Outbound) (*waE2E.Message, error) {
	var target types.JID
	if m.TargetSender != "" {
		var err error
		if target, err = parseRecipient(m.TargetSender); err != nil {
			return nil, errs.E(errs.Invalid, "target sender %q is not a phone number or a WhatsApp user id", m.TargetSender)
		}
		if target.Server == types.GroupServer || target.Server == types.NewsletterServer {
			return nil, errs.E(errs.Invalid, "target sender must be a person (phone number or user id), not %s", target.Server)
		}
	}
	var ci *waE2E.ContextInfo
	if m.ReplyTo != "" {
		ci = c.replyContext(m.ReplyTo, target)
	}
	switch m.Type {
	case "text", "":
		if m.Text == "" {
			return nil, errs.E(errs.Invalid, "text is required")
		}
		if ci == nil {
			return &waE2E.Message{Conversation: proto.String(m.Text)}, nil
		}
		return &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
			Text: proto.String(m.Text), ContextInfo: ci,
		}}, nil

	case "image", "video", "audio", "document":
		return c.buildMedia(ctx, b, m, ci)

	case "location":
		if math.IsNaN(m.Latitude) || math.IsNaN(m.Longitude) || math.Abs(m.Latitude) > 90 || math.Abs(m.Longitude) > 180 {
			return nil, errs.E(errs.Invalid, "latitude/longitude out of range")
		}
		loc := &waE2E.LocationMessage{
			DegreesLatitude:  proto.Float64(m.Latitude),
			DegreesLongitude: proto.Float64(m.Longitude),
			ContextInfo:      ci,
		}
		if m.Name != "" {
			loc.Name = proto.String(m.Name)
		}
		if m.Address != "" {
			loc.Address = proto.String(m.Address)
		}
		return &waE2E.Message{LocationMessage: loc}, nil

	case "contact":
		if m.VCard == "" {
			return nil, errs.E(errs.Invalid, "vcard is required")
		}
		return &waE2E.Message{ContactMessage: &waE2E.ContactMessage{
			DisplayName: proto.String(m.Name), Vcard: proto.String(m.VCard), ContextInfo: ci,
		}}, nil

	case "reaction":
		if m.TargetID == "" {
			return nil, errs.E(errs.Invalid, "target message id is required")
		}
		sender := target
		if sender.IsEmpty() {
			sender = c.targetSender(chat, m.TargetID)
		}
		return b.BuildReaction(chat, sender, m.TargetID, m.Emoji), nil
	}
	return nil, errs.E(errs.Invalid, "unsupported message type %q", m.Type)
}

func mediaType(t string) whatsmeow.MediaType {
	switch t {
	case "image":
		return whatsmeow.MediaImage
	case "video":
		return whatsmeow.MediaVideo
	case "audio":
		return whatsmeow.MediaAudio
	}
	return whatsmeow.MediaDocument
}

func (c *conn) buildMedia(ctx context.Context, b builder, m sessions.Outbound, ci *waE2E.ContextInfo) (*waE2E.Message, error) {
	if len(m.Media) == 0 {
		return nil, errs.E(errs.Invalid, "%s needs media", m.Type)
	}
	mime := m.MimeType
	if mime == "" {
		mime = http.DetectContentType(m.Media)
	}
	up, err := b.Upload(ctx, m.Media, mediaType(m.Type))
	if err != nil {
		return nil, mapErr(err, "uploading media to WhatsApp")
	}
	var caption *string
	if m.Caption != "" {
		caption = proto.String(m.Caption)
	}
	switch m.Type {
	case "image":
		return &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: proto.Uint64(up.FileLength),
			Mimetype: proto.String(mime), Caption: caption, ContextInfo: ci,
		}}, nil
	case "video":
		return &waE2E.Message{VideoMessage: &waE2E.VideoMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: proto.Uint64(up.FileLength),
			Mimetype: proto.String(mime), Caption: caption, ContextInfo: ci,
		}}, nil
	case "audio":
		// Voice notes only play as such when encoded as ogg/opus; the
		// manager checks the bytes, the engine sends them as given.
		return &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: proto.Uint64(up.FileLength),
			Mimetype: proto.String(mime), PTT: proto.Bool(m.Voice), ContextInfo: ci,
		}}, nil
	default:
		name := m.FileName
		if name == "" {
			name = "file"
		}
		return &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: proto.Uint64(up.FileLength),
			Mimetype: proto.String(mime), Caption: caption, FileName: proto.String(name),
			Title: proto.String(name), ContextInfo: ci,
		}}, nil
	}
}

// replyContext quotes a message. WhatsApp renders the quote from the
// author and content carried here. The author is sender when the caller
// named it (Outbound.TargetSender), else the recent cache's; the content
// only the cache knows. For an unknown id without a sender only the id is
// sent.
func (c *conn) replyContext(id string, sender types.JID) *waE2E.ContextInfo {
	ci := &waE2E.ContextInfo{StanzaID: proto.String(id)}
	r, cached := c.recent.get(id)
	if cached {
		ci.QuotedMessage = quotable(r.msg)
		if sender.IsEmpty() {
			sender = r.sender
		}
	}
	if !sender.IsEmpty() {
		ci.Participant = proto.String(sender.ToNonAD().String())
	}
	return ci
}

// targetSender is the author of a reacted-to message, which decides the
// message key, when the caller did not name it (Outbound.TargetSender).
// Unknown ids in a direct chat are assumed to be the peer's
// (reacting to received messages is the common case); in groups the
// author cannot be guessed and the key points at an own message.
func (c *conn) targetSender(chat types.JID, id string) types.JID {
	if r, ok := c.recent.get(id); ok {
		return r.sender
	}
	if chat.Server == types.DefaultUserServer || chat.Server == types.HiddenUserServer {
		return chat
	}
	return types.EmptyJID
}

// quotable copies a message for quoting without its own context (nested
// quotes, forwarding info), as WhatsApp clients do.
func quotable(msg *waE2E.Message) *waE2E.Message {
	q := proto.Clone(msg).(*waE2E.Message)
	q.MessageContextInfo = nil
	ctxInfo := (*waE2E.ContextInfo)(nil).ProtoReflect().Descriptor().FullName()
	q.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
			return true
		}
		sub := v.Message()
		fields := sub.Descriptor().Fields()
		for i := range fields.Len() {
			if f := fields.Get(i); f.Message() != nil && !f.IsList() && f.Message().FullName() == ctxInfo {
				sub.Clear(f)
			}
		}
		return true
	})
	return q
}

// mapErr gives whatsmeow failures the errs code a caller can act on.
func mapErr(err error, msg string) error {
	var e *errs.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return err
	case errors.Is(err, whatsmeow.ErrNotLoggedIn):
		return errs.Wrap(errs.NotConnected, err, "session is not linked")
	case errors.Is(err, whatsmeow.ErrNotConnected), errors.Is(err, whatsmeow.ErrIQDisconnected):
		return errs.Wrap(errs.NotConnected, err, "session is not connected")
	case errors.Is(err, whatsmeow.ErrRecipientADJID), errors.Is(err, whatsmeow.ErrUnknownServer),
		errors.Is(err, whatsmeow.ErrBroadcastListUnsupported), errors.Is(err, whatsmeow.ErrInvalidInlineBotID),
		errors.Is(err, whatsmeow.ErrPhoneNumberTooShort), errors.Is(err, whatsmeow.ErrPhoneNumberIsNotInternational),
		errors.Is(err, whatsmeow.ErrIQBadRequest), errors.Is(err, whatsmeow.ErrIQNotAcceptable):
		return errs.Wrap(errs.Invalid, err, msg+": "+err.Error())
	case errors.Is(err, whatsmeow.ErrIQRateOverLimit), errors.Is(err, whatsmeow.ErrIQResourceLimit):
		return errs.Wrap(errs.RateLimited, err, msg+": WhatsApp rate limit")
	case errors.Is(err, whatsmeow.ErrNotInGroup), errors.Is(err, whatsmeow.ErrIQForbidden),
		errors.Is(err, whatsmeow.ErrIQNotAuthorized), errors.Is(err, whatsmeow.ErrIQNotAllowed):
		return errs.Wrap(errs.Forbidden, err, msg+": not allowed by WhatsApp")
	case errors.Is(err, whatsmeow.ErrGroupNotFound), errors.Is(err, whatsmeow.ErrIQNotFound):
		return errs.Wrap(errs.NotFound, err, msg+": not found on WhatsApp")
	case errors.Is(err, whatsmeow.ErrIQTimedOut), errors.Is(err, whatsmeow.ErrMessageTimedOut),
		errors.Is(err, whatsmeow.ErrIQServiceUnavailable), errors.Is(err, whatsmeow.ErrIQInternalServerError),
		errors.Is(err, whatsmeow.ErrServerReturnedError), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		return errs.Wrap(errs.Unavailable, err, msg+": WhatsApp did not answer")
	}
	return errs.Wrap(errs.Internal, err, msg)
}
