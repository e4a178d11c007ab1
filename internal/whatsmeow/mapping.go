package whatsmeow

import (
	"context"
	"fmt"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	waevents "go.mau.fi/whatsmeow/types/events"

	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sessions"
)

// LIDResolver finds the phone number behind a LID (WhatsApp's privacy id).
// whatsmeow's store.LIDStore satisfies it; tests stub it.
type LIDResolver interface {
	GetPNForLID(ctx context.Context, lid types.JID) (types.JID, error)
}

// mapped is what one whatsmeow event becomes: events to commit and/or a
// connection state change. Both empty means the event is ignored.
type mapped struct {
	inbound []events.Inbound
	state   *sessions.State
}

// mapper turns whatsmeow events into wagate's. own is the session's own
// (phone number) JID, empty before pairing; resolver may be nil.
type mapper struct {
	own      types.JID
	resolver LIDResolver
}

// mapEvent is pure apart from resolver lookups; an error means a lookup
// failed and the event must not be acknowledged.
func (m mapper) mapEvent(ctx context.Context, evt any) (mapped, error) {
	switch e := evt.(type) {
	case *waevents.Message:
		in, err := m.message(ctx, e)
		return mapped{inbound: in}, err
	case *waevents.Receipt:
		in, err := m.receipt(ctx, e)
		return mapped{inbound: in}, err
	}
	if st := m.state(evt); st != nil {
		return mapped{state: st}, nil
	}
	// HistorySync, AppState*, OfflineSync*, presence, chat presence, group
	// and picture updates, undecryptable messages, ...: not webhook events.
	return mapped{}, nil
}

func (m mapper) state(evt any) *sessions.State {
	switch e := evt.(type) {
	case *waevents.Connected, *waevents.KeepAliveRestored:
		return &sessions.State{Status: sessions.StatusConnected, JID: jidString(m.own)}
	case *waevents.PairSuccess:
		return &sessions.State{Status: sessions.StatusConnected, JID: e.ID.String()}
	case *waevents.PairError:
		return &sessions.State{Status: sessions.StatusDisconnected, Reason: fmt.Sprintf("pair_error: %v", e.Error)}
	case *waevents.Disconnected:
		if m.own.IsEmpty() {
			return nil // unlinked: auto-reconnect is off, the QR channel reports qr_timeout
		}
		return &sessions.State{Status: sessions.StatusReconnecting, Reason: "disconnected"}
	case *waevents.KeepAliveTimeout:
		return &sessions.State{Status: sessions.StatusReconnecting, Reason: "keepalive_timeout"}
	case *waevents.LoggedOut:
		// whatsmeow has already deleted the device's keys.
		return &sessions.State{Status: sessions.StatusLoggedOut,
			Reason: fmt.Sprintf("logged_out: %s (on_connect=%t)", e.Reason, e.OnConnect)}
	case *waevents.StreamReplaced:
		return &sessions.State{Status: sessions.StatusDisconnected, Reason: "stream_replaced"}
	case *waevents.TemporaryBan:
		return &sessions.State{Status: sessions.StatusDisconnected,
			Reason: fmt.Sprintf("temporary_ban: %s; expires in %s", e.Code, e.Expire)}
	case *waevents.ClientOutdated:
		return &sessions.State{Status: sessions.StatusDisconnected, Reason: "client_outdated"}
	case *waevents.ConnectFailure:
		r := fmt.Sprintf("connect_failure: %s", e.Reason)
		if e.Message != "" {
			r += " (" + e.Message + ")"
		}
		return &sessions.State{Status: sessions.StatusDisconnected, Reason: r}
	case *waevents.CATRefreshError:
		return &sessions.State{Status: sessions.StatusDisconnected, Reason: fmt.Sprintf("cat_refresh_error: %v", e.Error)}
	}
	return nil
}

func jidString(j types.JID) string {
	if j.IsEmpty() {
		return ""
	}
	return j.String()
}

// who resolves a user JID to what goes in From/To: phone digits when known.
// lid reports that the returned user is a LID because no phone was found.
func (m mapper) who(ctx context.Context, jid, alt types.JID) (user string, lid bool, err error) {
	switch jid.Server {
	case types.HiddenUserServer, types.HostedLIDServer:
	default:
		return jid.User, false, nil
	}
	if alt.Server == types.DefaultUserServer && alt.User != "" {
		return alt.User, false, nil
	}
	if m.resolver != nil {
		pn, err := m.resolver.GetPNForLID(ctx, types.NewJID(jid.User, types.HiddenUserServer))
		if err != nil {
			return "", false, fmt.Errorf("resolving LID %s: %w", jid.User, err)
		}
		if pn.User != "" {
			return pn.User, false, nil
		}
	}
	return jid.User, true, nil
}

func markLID(md map[string]any) {
	md["sender_lid"] = true
	md["sender_unresolved"] = true
	md["sender_note"] = "sender's phone number is hidden (LID); from is the LID user"
}

// envelope fills From, To and the common metadata of a message event.
func (m mapper) envelope(ctx context.Context, info types.MessageInfo) (events.Inbound, error) {
	md := map[string]any{
		"chat":     info.Chat.String(),
		"is_group": info.IsGroup,
		"from_me":  info.IsFromMe,
	}
	if info.PushName != "" {
		md["push_name"] = info.PushName
	}
	in := events.Inbound{MessageID: info.ID, Timestamp: info.Timestamp, Metadata: md}

	if info.IsFromMe && !m.own.IsEmpty() {
		in.From = m.own.User
	} else {
		from, lid, err := m.who(ctx, info.Sender, info.SenderAlt)
		if err != nil {
			return in, err
		}
		in.From = from
		if lid {
			markLID(md)
		}
	}
	switch {
	case info.IsGroup:
		in.To = info.Chat.String()
	case info.IsFromMe:
		// Sent from the owner's phone: the recipient is the chat.
		to, _, err := m.who(ctx, info.Chat, info.RecipientAlt)
		if err != nil {
			return in, err
		}
		in.To = to
	default:
		in.To = m.own.User
	}
	return in, nil
}

func (m mapper) message(ctx context.Context, evt *waevents.Message) ([]events.Inbound, error) {
	if evt.Message == nil && evt.RawMessage != nil {
		cp := *evt
		evt = cp.UnwrapRaw() // events from the client are already unwrapped
	}
	msg := evt.Message
	if msg == nil || evt.Info.Chat == types.StatusBroadcastJID {
		return nil, nil // status updates of contacts are not chat messages
	}
	in, err := m.envelope(ctx, evt.Info)
	if err != nil {
		return nil, err
	}
	md := in.Metadata
	if evt.IsEphemeral {
		md["is_ephemeral"] = true
	}
	if evt.IsViewOnce {
		md["is_view_once"] = true
	}

	switch {
	case msg.GetReactionMessage() != nil:
		r := msg.GetReactionMessage()
		in.Type, in.Kind, in.Content = events.TypeReaction, "reaction", r.GetText()
		md["target_message_id"] = r.GetKey().GetID()
		md["target_from_me"] = r.GetKey().GetFromMe()
		md["removed"] = r.GetText() == ""
		return []events.Inbound{in}, nil

	case msg.GetProtocolMessage() != nil:
		p := msg.GetProtocolMessage()
		switch p.GetType() {
		case waE2E.ProtocolMessage_REVOKE:
			in.Type, in.Kind = events.TypeRevoked, "revoked"
			md["target_message_id"] = p.GetKey().GetID()
			md["target_from_me"] = p.GetKey().GetFromMe()
			return []events.Inbound{in}, nil
		case waE2E.ProtocolMessage_MESSAGE_EDIT:
			kind, content := messageContent(p.GetEditedMessage(), map[string]any{})
			if kind == "" {
				kind = "text"
			}
			in.Type, in.Kind, in.Content = events.TypeEdited, kind, content
			md["target_message_id"] = p.GetKey().GetID()
			if ms := p.GetTimestampMS(); ms > 0 {
				md["edited_at_ms"] = ms
			}
			return []events.Inbound{in}, nil
		}
		return nil, nil // history sync notices, app state keys, ...
	}

	kind, content := messageContent(msg, md)
	if kind == "" {
		// Sender key distribution, poll votes, pins, ...: nothing to report.
		return nil, nil
	}
	in.Type, in.Kind, in.Content = events.TypeMessage, kind, content
	switch kind {
	case "image", "video", "audio", "document", "sticker":
		// Stored with the event, so GET .../media/{message_id} can fetch it.
		in.Media = mediaOf(msg)
	}
	return []events.Inbound{in}, nil
}

// messageContent returns the payload type and content of a message and adds
// its type-specific metadata to md. kind is "" for unsupported content.
func messageContent(msg *waE2E.Message, md map[string]any) (kind, content string) {
	var ci *waE2E.ContextInfo
	switch {
	case msg.GetConversation() != "":
		kind, content = "text", msg.GetConversation()
	case msg.GetExtendedTextMessage() != nil:
		t := msg.GetExtendedTextMessage()
		kind, content, ci = "text", t.GetText(), t.GetContextInfo()
		if t.GetMatchedText() != "" {
			md["link"] = t.GetMatchedText()
		}
	case msg.GetImageMessage() != nil:
		x := msg.GetImageMessage()
		kind, content, ci = "image", x.GetCaption(), x.GetContextInfo()
		media(md, x.GetMimetype(), x.GetFileLength())
	case msg.GetVideoMessage() != nil || msg.GetPtvMessage() != nil:
		x := msg.GetVideoMessage()
		if x == nil {
			x = msg.GetPtvMessage()
			md["video_note"] = true
		}
		kind, content, ci = "video", x.GetCaption(), x.GetContextInfo()
		media(md, x.GetMimetype(), x.GetFileLength())
		md["seconds"] = x.GetSeconds()
		if x.GetGifPlayback() {
			md["gif"] = true
		}
	case msg.GetAudioMessage() != nil:
		x := msg.GetAudioMessage()
		kind, ci = "audio", x.GetContextInfo()
		media(md, x.GetMimetype(), x.GetFileLength())
		md["seconds"] = x.GetSeconds()
		md["voice"] = x.GetPTT()
	case msg.GetDocumentMessage() != nil:
		x := msg.GetDocumentMessage()
		kind, content, ci = "document", x.GetCaption(), x.GetContextInfo()
		media(md, x.GetMimetype(), x.GetFileLength())
		md["file_name"] = x.GetFileName()
		if x.GetPageCount() > 0 {
			md["page_count"] = x.GetPageCount()
		}
	case msg.GetStickerMessage() != nil:
		x := msg.GetStickerMessage()
		kind, ci = "sticker", x.GetContextInfo()
		media(md, x.GetMimetype(), x.GetFileLength())
		md["is_animated"] = x.GetIsAnimated()
	case msg.GetLocationMessage() != nil:
		x := msg.GetLocationMessage()
		kind, content, ci = "location", x.GetName(), x.GetContextInfo()
		md["latitude"] = x.GetDegreesLatitude()
		md["longitude"] = x.GetDegreesLongitude()
		md["name"] = x.GetName()
		md["address"] = x.GetAddress()
		if x.GetURL() != "" {
			md["url"] = x.GetURL()
		}
	case msg.GetLiveLocationMessage() != nil:
		x := msg.GetLiveLocationMessage()
		kind, content, ci = "location", x.GetCaption(), x.GetContextInfo()
		md["latitude"] = x.GetDegreesLatitude()
		md["longitude"] = x.GetDegreesLongitude()
		md["live"] = true
	case msg.GetContactMessage() != nil:
		x := msg.GetContactMessage()
		kind, content, ci = "contact", x.GetDisplayName(), x.GetContextInfo()
		md["display_name"] = x.GetDisplayName()
		md["vcard"] = x.GetVcard()
		md["contacts"] = []map[string]any{{"display_name": x.GetDisplayName(), "vcard": x.GetVcard()}}
	case msg.GetContactsArrayMessage() != nil:
		x := msg.GetContactsArrayMessage()
		kind, content, ci = "contact", x.GetDisplayName(), x.GetContextInfo()
		list := make([]map[string]any, 0, len(x.GetContacts()))
		for _, c := range x.GetContacts() {
			list = append(list, map[string]any{"display_name": c.GetDisplayName(), "vcard": c.GetVcard()})
		}
		md["display_name"] = x.GetDisplayName()
		md["contacts"] = list
	default:
		return "", ""
	}
	md["is_forwarded"] = ci.GetIsForwarded()
	if id := ci.GetStanzaID(); id != "" {
		md["quoted_message_id"] = id
		md["is_reply"] = true
	}
	return kind, content
}

func media(md map[string]any, mime string, size uint64) {
	md["mime_type"] = mime
	md["file_size"] = size
}

// ackKind maps the receipts that tell the sender of a message how far it
// got. Other types (retry, sender, inactive, server-error, read-self, ...)
// are protocol plumbing or the owner's own reads.
func ackKind(t types.ReceiptType) string {
	switch t {
	case types.ReceiptTypeDelivered:
		return "delivered"
	case types.ReceiptTypeRead:
		return "read"
	case types.ReceiptTypePlayed:
		return "played"
	}
	return ""
}

func (m mapper) receipt(ctx context.Context, r *waevents.Receipt) ([]events.Inbound, error) {
	kind := ackKind(r.Type)
	if kind == "" || r.IsFromMe || len(r.MessageIDs) == 0 {
		// IsFromMe receipts are the owner reading incoming messages on another device.
		return nil, nil
	}
	from, lid, err := m.who(ctx, r.Sender, r.SenderAlt)
	if err != nil {
		return nil, err
	}
	to := m.own.User
	if r.IsGroup {
		to = r.Chat.String()
	}
	out := make([]events.Inbound, 0, len(r.MessageIDs))
	for _, id := range r.MessageIDs {
		md := map[string]any{"chat": r.Chat.String(), "is_group": r.IsGroup}
		if lid {
			markLID(md)
		}
		key := events.TypeAck + ":" + id + ":" + kind
		if r.IsGroup {
			// Every participant acknowledges the same message id.
			key += ":" + r.Sender.User
		}
		out = append(out, events.Inbound{
			Type: events.TypeAck, MessageID: id, From: from, To: to,
			Timestamp: r.Timestamp, Kind: kind, Metadata: md, DedupeKey: key,
		})
	}
	return out, nil
}
