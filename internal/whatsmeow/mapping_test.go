package whatsmeow

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/types"
	waevents "go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sessions"
)

// fakeSink records what a connection reports.
type fakeSink struct {
	mu      sync.Mutex
	inbound []events.Inbound
	states  []sessions.State
	qrs     []string
	fail    error
	calls   int
}

func (s *fakeSink) Inbound(_ context.Context, evs ...events.Inbound) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		return s.fail
	}
	s.inbound = append(s.inbound, evs...)
	return nil
}

func (s *fakeSink) State(_ context.Context, st sessions.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states = append(s.states, st)
}

func (s *fakeSink) QR(_ context.Context, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qrs = append(s.qrs, code)
}

// stubLIDs resolves from a map; err makes every lookup fail.
type stubLIDs struct {
	pn  map[string]string
	err error
}

func (s stubLIDs) GetPNForLID(_ context.Context, lid types.JID) (types.JID, error) {
	if s.err != nil {
		return types.EmptyJID, s.err
	}
	if pn, ok := s.pn[lid.User]; ok {
		return types.NewJID(pn, types.DefaultUserServer), nil
	}
	return types.EmptyJID, nil
}

var (
	ownJID   = types.NewADJID("5511999990000", 0, 7)
	peer     = types.NewJID("5511888887777", types.DefaultUserServer)
	peerDev  = types.NewADJID("5511888887777", 0, 2)
	group    = types.NewJID("120363000000000001", types.GroupServer)
	member   = types.NewJID("5511777776666", types.DefaultUserServer)
	knownLID = types.NewJID("99887766554433", types.HiddenUserServer)
	anonLID  = types.NewJID("11223344556677", types.HiddenUserServer)
	ts       = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

// newTestConn opens a real (never dialled) connection on a SQLite store,
// linked as ownJID, with a stub LID map.
func newTestConn(t *testing.T) (*conn, *fakeSink) {
	t.Helper()
	eng, err := New(context.Background(), openSQLite(t, true), "sqlite", testLogger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	sink := &fakeSink{}
	c, err := eng.Open(context.Background(), sessions.Session{ID: "s1"}, sink)
	if err != nil {
		t.Fatal(err)
	}
	cn := c.(*conn)
	id := ownJID
	cn.client.Store.ID = &id
	cn.resolver = stubLIDs{pn: map[string]string{knownLID.User: "5511666665555"}}
	t.Cleanup(cn.Close)
	return cn, sink
}

func dm(id string) types.MessageInfo {
	return types.MessageInfo{
		MessageSource: types.MessageSource{Chat: peer, Sender: peerDev},
		ID:            id, PushName: "Maria", Timestamp: ts,
	}
}

// raw builds an event the way whatsmeow does: RawMessage, then UnwrapRaw.
func raw(info types.MessageInfo, m *waE2E.Message) *waevents.Message {
	return (&waevents.Message{Info: info, RawMessage: m}).UnwrapRaw()
}

// want is an expected event; md lists metadata that must be present.
type want struct {
	typ, id, from, to, kind, content string
	md                               map[string]any
}

func TestMessageMapping(t *testing.T) {
	base := map[string]any{"chat": peer.String(), "is_group": false, "from_me": false, "push_name": "Maria"}
	with := func(extra map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	groupInfo := types.MessageInfo{
		MessageSource: types.MessageSource{Chat: group, Sender: member, IsGroup: true},
		ID:            "G1", Timestamp: ts,
	}
	fromMe := types.MessageInfo{
		MessageSource: types.MessageSource{Chat: peer, Sender: ownJID, IsFromMe: true},
		ID:            "ME1", Timestamp: ts,
	}
	lidAlt := dm("L1")
	lidAlt.Sender, lidAlt.SenderAlt, lidAlt.Chat = anonLID, peer, anonLID
	lidKnown := dm("L2")
	lidKnown.Sender, lidKnown.Chat = knownLID, knownLID
	lidAnon := dm("L3")
	lidAnon.Sender, lidAnon.Chat = anonLID, anonLID

	tests := []struct {
		name string
		evt  *waevents.Message
		want []want
	}{
		{"text", raw(dm("M1"), &waE2E.Message{Conversation: proto.String("hello")}),
			[]want{{events.TypeMessage, "M1", peer.User, ownJID.User, "text", "hello", with(map[string]any{"is_forwarded": false})}}},
		{"extended text reply", raw(dm("M2"), &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
			Text: proto.String("yes"),
			ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String("Q1"), Participant: proto.String(ownJID.ToNonAD().String()),
				IsForwarded: proto.Bool(true)},
		}}), []want{{events.TypeMessage, "M2", peer.User, ownJID.User, "text", "yes",
			with(map[string]any{"quoted_message_id": "Q1", "is_reply": true, "is_forwarded": true})}}},
		{"image", raw(dm("M3"), &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			Caption: proto.String("look"), Mimetype: proto.String("image/jpeg"), FileLength: proto.Uint64(1234),
		}}), []want{{events.TypeMessage, "M3", peer.User, ownJID.User, "image", "look",
			with(map[string]any{"mime_type": "image/jpeg", "file_size": uint64(1234)})}}},
		{"video", raw(dm("M4"), &waE2E.Message{VideoMessage: &waE2E.VideoMessage{
			Caption: proto.String("clip"), Mimetype: proto.String("video/mp4"), FileLength: proto.Uint64(99), Seconds: proto.Uint32(12),
		}}), []want{{events.TypeMessage, "M4", peer.User, ownJID.User, "video", "clip",
			with(map[string]any{"mime_type": "video/mp4", "file_size": uint64(99), "seconds": uint32(12)})}}},
		{"audio voice", raw(dm("M5"), &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
			Mimetype: proto.String("audio/ogg; codecs=opus"), FileLength: proto.Uint64(500), Seconds: proto.Uint32(3), PTT: proto.Bool(true),
		}}), []want{{events.TypeMessage, "M5", peer.User, ownJID.User, "audio", "",
			with(map[string]any{"voice": true, "seconds": uint32(3), "mime_type": "audio/ogg; codecs=opus"})}}},
		{"document with caption wrapper", raw(dm("M6"), &waE2E.Message{DocumentWithCaptionMessage: &waE2E.FutureProofMessage{
			Message: &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{
				FileName: proto.String("invoice.pdf"), Caption: proto.String("the invoice"),
				Mimetype: proto.String("application/pdf"), FileLength: proto.Uint64(2048),
			}},
		}}), []want{{events.TypeMessage, "M6", peer.User, ownJID.User, "document", "the invoice",
			with(map[string]any{"file_name": "invoice.pdf", "mime_type": "application/pdf", "file_size": uint64(2048)})}}},
		{"sticker", raw(dm("M7"), &waE2E.Message{StickerMessage: &waE2E.StickerMessage{
			Mimetype: proto.String("image/webp"), IsAnimated: proto.Bool(true),
		}}), []want{{events.TypeMessage, "M7", peer.User, ownJID.User, "sticker", "",
			with(map[string]any{"mime_type": "image/webp", "is_animated": true})}}},
		{"location", raw(dm("M8"), &waE2E.Message{LocationMessage: &waE2E.LocationMessage{
			DegreesLatitude: proto.Float64(-23.55), DegreesLongitude: proto.Float64(-46.63),
			Name: proto.String("Office"), Address: proto.String("Av. Paulista, 1000"),
		}}), []want{{events.TypeMessage, "M8", peer.User, ownJID.User, "location", "Office",
			with(map[string]any{"latitude": -23.55, "longitude": -46.63, "name": "Office", "address": "Av. Paulista, 1000"})}}},
		{"contact", raw(dm("M9"), &waE2E.Message{ContactMessage: &waE2E.ContactMessage{
			DisplayName: proto.String("João"), Vcard: proto.String("BEGIN:VCARD\nFN:João\nEND:VCARD"),
		}}), []want{{events.TypeMessage, "M9", peer.User, ownJID.User, "contact", "João",
			with(map[string]any{"display_name": "João", "vcard": "BEGIN:VCARD\nFN:João\nEND:VCARD"})}}},
		{"contacts array", raw(dm("M10"), &waE2E.Message{ContactsArrayMessage: &waE2E.ContactsArrayMessage{
			DisplayName: proto.String("2 contacts"),
			Contacts: []*waE2E.ContactMessage{
				{DisplayName: proto.String("A"), Vcard: proto.String("VA")},
				{DisplayName: proto.String("B"), Vcard: proto.String("VB")},
			},
		}}), []want{{events.TypeMessage, "M10", peer.User, ownJID.User, "contact", "2 contacts",
			with(map[string]any{"contacts": []map[string]any{
				{"display_name": "A", "vcard": "VA"}, {"display_name": "B", "vcard": "VB"}}})}}},
		{"reaction", raw(dm("R1"), &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
			Key: &waCommon.MessageKey{ID: proto.String("T1"), FromMe: proto.Bool(true)}, Text: proto.String("👍"),
		}}), []want{{events.TypeReaction, "R1", peer.User, ownJID.User, "reaction", "👍",
			with(map[string]any{"target_message_id": "T1", "target_from_me": true, "removed": false})}}},
		{"reaction removed", raw(dm("R2"), &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
			Key: &waCommon.MessageKey{ID: proto.String("T1")}, Text: proto.String(""),
		}}), []want{{events.TypeReaction, "R2", peer.User, ownJID.User, "reaction", "",
			with(map[string]any{"target_message_id": "T1", "removed": true})}}},
		{"edit", raw(dm("E1"), &waE2E.Message{EditedMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{
			ProtocolMessage: &waE2E.ProtocolMessage{
				Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), Key: &waCommon.MessageKey{ID: proto.String("T2")},
				EditedMessage: &waE2E.Message{Conversation: proto.String("fixed typo")},
			},
		}}}), []want{{events.TypeEdited, "E1", peer.User, ownJID.User, "text", "fixed typo",
			with(map[string]any{"target_message_id": "T2"})}}},
		{"revoke", raw(dm("D1"), &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Type: waE2E.ProtocolMessage_REVOKE.Enum(), Key: &waCommon.MessageKey{ID: proto.String("T3")},
		}}), []want{{events.TypeRevoked, "D1", peer.User, ownJID.User, "revoked", "",
			with(map[string]any{"target_message_id": "T3"})}}},
		{"ephemeral text", raw(dm("M11"), &waE2E.Message{EphemeralMessage: &waE2E.FutureProofMessage{
			Message: &waE2E.Message{Conversation: proto.String("vanishing")},
		}}), []want{{events.TypeMessage, "M11", peer.User, ownJID.User, "text", "vanishing",
			with(map[string]any{"is_ephemeral": true})}}},
		{"view-once image", raw(dm("M12"), &waE2E.Message{ViewOnceMessageV2: &waE2E.FutureProofMessage{
			Message: &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Mimetype: proto.String("image/jpeg"), ViewOnce: proto.Bool(true)}},
		}}), []want{{events.TypeMessage, "M12", peer.User, ownJID.User, "image", "",
			with(map[string]any{"is_view_once": true, "mime_type": "image/jpeg"})}}},
		{"unwrapped by the mapper", &waevents.Message{Info: dm("M13"), RawMessage: &waE2E.Message{
			EphemeralMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{Conversation: proto.String("raw only")}},
		}}, []want{{events.TypeMessage, "M13", peer.User, ownJID.User, "text", "raw only", with(nil)}}},
		{"group", raw(groupInfo, &waE2E.Message{Conversation: proto.String("hi all")}),
			[]want{{events.TypeMessage, "G1", member.User, group.String(), "text", "hi all",
				map[string]any{"is_group": true, "chat": group.String(), "from_me": false}}}},
		{"from me on the phone", raw(fromMe, &waE2E.Message{Conversation: proto.String("sent from phone")}),
			[]want{{events.TypeMessage, "ME1", ownJID.User, peer.User, "text", "sent from phone",
				map[string]any{"from_me": true}}}},
		{"LID sender with PN alt", raw(lidAlt, &waE2E.Message{Conversation: proto.String("x")}),
			[]want{{events.TypeMessage, "L1", peer.User, ownJID.User, "text", "x", map[string]any{"chat": anonLID.String()}}}},
		{"LID sender resolved by map", raw(lidKnown, &waE2E.Message{Conversation: proto.String("y")}),
			[]want{{events.TypeMessage, "L2", "5511666665555", ownJID.User, "text", "y", nil}}},
		{"LID sender unresolved", raw(lidAnon, &waE2E.Message{Conversation: proto.String("z")}),
			[]want{{events.TypeMessage, "L3", anonLID.User, ownJID.User, "text", "z",
				map[string]any{"sender_lid": true, "sender_unresolved": true}}}},
		{"status broadcast ignored", raw(types.MessageInfo{
			MessageSource: types.MessageSource{Chat: types.StatusBroadcastJID, Sender: peer, IsGroup: true}, ID: "S1",
		}, &waE2E.Message{Conversation: proto.String("my status")}), nil},
		{"history sync notification ignored", raw(dm("P1"), &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Type: waE2E.ProtocolMessage_HISTORY_SYNC_NOTIFICATION.Enum(),
		}}), nil},
		{"sender key distribution only ignored", raw(dm("K1"), &waE2E.Message{
			SenderKeyDistributionMessage: &waE2E.SenderKeyDistributionMessage{GroupID: proto.String(group.String())},
		}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, sink := newTestConn(t)
			if !c.handle(tt.evt) {
				t.Fatal("handle returned false")
			}
			checkInbound(t, sink.inbound, tt.want)
			if len(sink.states) != 0 {
				t.Errorf("unexpected states %v", sink.states)
			}
			// Lid flags only when unresolved.
			for _, in := range sink.inbound {
				if tt.name != "LID sender unresolved" && in.Metadata["sender_lid"] != nil {
					t.Errorf("sender_lid set on a resolved sender: %v", in.Metadata)
				}
			}
		})
	}
}

func checkInbound(t *testing.T, got []events.Inbound, want []want) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Type != w.typ || g.MessageID != w.id || g.From != w.from || g.To != w.to || g.Kind != w.kind || g.Content != w.content {
			t.Errorf("event %d = {%s %s from=%s to=%s %s %q}, want {%s %s from=%s to=%s %s %q}", i,
				g.Type, g.MessageID, g.From, g.To, g.Kind, g.Content, w.typ, w.id, w.from, w.to, w.kind, w.content)
		}
		if !g.Timestamp.Equal(ts) {
			t.Errorf("event %d timestamp %v, want %v", i, g.Timestamp, ts)
		}
		for k, v := range w.md {
			if !reflect.DeepEqual(g.Metadata[k], v) {
				t.Errorf("event %d metadata[%s] = %#v, want %#v", i, k, g.Metadata[k], v)
			}
		}
	}
}

func TestReceiptMapping(t *testing.T) {
	rc := func(typ types.ReceiptType, src types.MessageSource, ids ...string) *waevents.Receipt {
		return &waevents.Receipt{MessageSource: src, MessageIDs: ids, Timestamp: ts, Type: typ}
	}
	dmSrc := types.MessageSource{Chat: peer, Sender: peerDev}
	grpSrc := types.MessageSource{Chat: group, Sender: member, IsGroup: true}
	lidSrc := types.MessageSource{Chat: anonLID, Sender: anonLID}
	mine := types.MessageSource{Chat: peer, Sender: ownJID, IsFromMe: true}

	tests := []struct {
		name string
		evt  *waevents.Receipt
		want []want
		keys []string
	}{
		{"delivered", rc(types.ReceiptTypeDelivered, dmSrc, "A1", "A2"),
			[]want{
				{events.TypeAck, "A1", peer.User, ownJID.User, "delivered", "", map[string]any{"chat": peer.String(), "is_group": false}},
				{events.TypeAck, "A2", peer.User, ownJID.User, "delivered", "", nil},
			}, []string{"message.ack:A1:delivered", "message.ack:A2:delivered"}},
		{"read", rc(types.ReceiptTypeRead, dmSrc, "A1"),
			[]want{{events.TypeAck, "A1", peer.User, ownJID.User, "read", "", nil}}, []string{"message.ack:A1:read"}},
		{"played", rc(types.ReceiptTypePlayed, dmSrc, "A1"),
			[]want{{events.TypeAck, "A1", peer.User, ownJID.User, "played", "", nil}}, []string{"message.ack:A1:played"}},
		{"group read is per participant", rc(types.ReceiptTypeRead, grpSrc, "A3"),
			[]want{{events.TypeAck, "A3", member.User, group.String(), "read", "", map[string]any{"is_group": true}}},
			[]string{"message.ack:A3:read:" + member.User}},
		{"LID reader unresolved", rc(types.ReceiptTypeRead, lidSrc, "A4"),
			[]want{{events.TypeAck, "A4", anonLID.User, ownJID.User, "read", "", map[string]any{"sender_lid": true, "sender_unresolved": true}}},
			[]string{"message.ack:A4:read"}},
		{"retry ignored", rc(types.ReceiptTypeRetry, dmSrc, "A1"), nil, nil},
		{"sender ignored", rc(types.ReceiptTypeSender, dmSrc, "A1"), nil, nil},
		{"server error ignored", rc(types.ReceiptTypeServerError, dmSrc, "A1"), nil, nil},
		{"inactive ignored", rc(types.ReceiptTypeInactive, dmSrc, "A1"), nil, nil},
		{"read-self ignored", rc(types.ReceiptTypeReadSelf, mine, "A1"), nil, nil},
		{"own read on phone ignored", rc(types.ReceiptTypeRead, mine, "A1"), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, sink := newTestConn(t)
			if !c.handle(tt.evt) {
				t.Fatal("handle returned false")
			}
			checkInbound(t, sink.inbound, tt.want)
			for i, k := range tt.keys {
				if got := sink.inbound[i].Key(); got != k {
					t.Errorf("key %d = %q, want %q", i, got, k)
				}
			}
			if tt.want == nil && sink.calls != 0 {
				t.Errorf("sink called %d times for an ignored receipt", sink.calls)
			}
		})
	}
}

func TestAckKeysDistinguishKinds(t *testing.T) {
	c, sink := newTestConn(t)
	src := types.MessageSource{Chat: peer, Sender: peerDev}
	for _, typ := range []types.ReceiptType{types.ReceiptTypeDelivered, types.ReceiptTypeRead, types.ReceiptTypePlayed} {
		c.handle(&waevents.Receipt{MessageSource: src, MessageIDs: []string{"X"}, Timestamp: ts, Type: typ})
	}
	seen := map[string]bool{}
	for _, in := range sink.inbound {
		seen[in.Key()] = true
	}
	if len(seen) != 3 {
		t.Errorf("keys %v: delivered/read/played of one message must not collide", seen)
	}
}

func TestStateMapping(t *testing.T) {
	tests := []struct {
		name string
		evt  any
		want *sessions.State
	}{
		{"connected", &waevents.Connected{}, &sessions.State{Status: sessions.StatusConnected, JID: ownJID.String()}},
		{"pair success", &waevents.PairSuccess{ID: ownJID}, &sessions.State{Status: sessions.StatusConnected, JID: ownJID.String()}},
		{"disconnected", &waevents.Disconnected{}, &sessions.State{Status: sessions.StatusReconnecting, Reason: "disconnected"}},
		{"logged out", &waevents.LoggedOut{OnConnect: true, Reason: waevents.ConnectFailureLoggedOut},
			&sessions.State{Status: sessions.StatusLoggedOut, Reason: "logged_out: 401: logged out from another device (on_connect=true)"}},
		{"stream replaced", &waevents.StreamReplaced{}, &sessions.State{Status: sessions.StatusDisconnected, Reason: "stream_replaced"}},
		{"temporary ban", &waevents.TemporaryBan{Code: waevents.TempBanBlockedByUsers, Expire: time.Hour},
			&sessions.State{Status: sessions.StatusDisconnected, Reason: "temporary_ban: 102: too many people blocked you; expires in 1h0m0s"}},
		{"client outdated", &waevents.ClientOutdated{}, &sessions.State{Status: sessions.StatusDisconnected, Reason: "client_outdated"}},
		{"connect failure", &waevents.ConnectFailure{Reason: waevents.ConnectFailureBadUserAgent, Message: "nope"},
			&sessions.State{Status: sessions.StatusDisconnected, Reason: "connect_failure: 409: client user agent was rejected (nope)"}},
		{"keepalive timeout", &waevents.KeepAliveTimeout{ErrorCount: 1}, &sessions.State{Status: sessions.StatusReconnecting, Reason: "keepalive_timeout"}},
		{"history sync ignored", &waevents.HistorySync{Data: &waHistorySync.HistorySync{}}, nil},
		{"offline sync preview ignored", &waevents.OfflineSyncPreview{Total: 3}, nil},
		{"presence ignored", &waevents.Presence{From: peer}, nil},
		{"chat presence ignored", &waevents.ChatPresence{State: types.ChatPresenceComposing}, nil},
		{"app state ignored", &waevents.AppStateSyncComplete{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, sink := newTestConn(t)
			if !c.handle(tt.evt) {
				t.Fatal("handle returned false")
			}
			if sink.calls != 0 || len(sink.qrs) != 0 {
				t.Errorf("state event produced inbound events or QR codes")
			}
			if tt.want == nil {
				if len(sink.states) != 0 {
					t.Errorf("ignored event reported states %v", sink.states)
				}
				return
			}
			if len(sink.states) != 1 || sink.states[0] != *tt.want {
				t.Errorf("states = %+v, want [%+v]", sink.states, *tt.want)
			}
		})
	}
}

func TestDisconnectedWhileUnlinkedIsLeftToQRChannel(t *testing.T) {
	c, sink := newTestConn(t)
	c.client.Store.ID = nil
	c.handle(&waevents.Disconnected{})
	if len(sink.states) != 0 {
		t.Errorf("states = %v, want none (qr_timeout comes from the QR channel)", sink.states)
	}
}

func TestFailedCommitIsNotAcknowledged(t *testing.T) {
	c, sink := newTestConn(t)
	sink.fail = errors.New("database is locked")
	if c.handle(raw(dm("F1"), &waE2E.Message{Conversation: proto.String("keep me")})) {
		t.Error("handle returned true although the sink failed to commit")
	}
	if c.handle(&waevents.Receipt{MessageSource: types.MessageSource{Chat: peer, Sender: peerDev}, MessageIDs: []string{"F1"}, Timestamp: ts}) {
		t.Error("handle returned true for a receipt the sink failed to commit")
	}
	// Events without inbound output do not depend on the sink.
	if !c.handle(&waevents.HistorySync{}) {
		t.Error("ignored event not acknowledged")
	}
	sink.fail = nil
	if !c.handle(raw(dm("F1"), &waE2E.Message{Conversation: proto.String("keep me")})) {
		t.Error("redelivered message not acknowledged after the sink recovered")
	}
}

func TestFailedLIDLookupIsNotAcknowledged(t *testing.T) {
	c, sink := newTestConn(t)
	c.resolver = stubLIDs{err: errors.New("db down")}
	info := dm("F2")
	info.Sender, info.Chat = anonLID, anonLID
	if c.handle(raw(info, &waE2E.Message{Conversation: proto.String("x")})) {
		t.Error("handle returned true although the LID lookup failed")
	}
	if sink.calls != 0 {
		t.Error("sink called with an unresolvable sender")
	}
}

func TestForwardQR(t *testing.T) {
	c, sink := newTestConn(t)
	ch := make(chan whatsmeow.QRChannelItem, 4)
	q := &qrState{cancel: func() {}, ready: make(chan struct{})}
	c.qr = q
	ch <- whatsmeow.QRChannelItem{Event: whatsmeow.QRChannelEventCode, Code: "CODE-1"}
	ch <- whatsmeow.QRChannelItem{Event: whatsmeow.QRChannelEventCode, Code: "CODE-2"}
	ch <- whatsmeow.QRChannelTimeout
	close(ch)
	c.forwardQR(context.Background(), ch, q)

	if !reflect.DeepEqual(sink.qrs, []string{"CODE-1", "CODE-2", ""}) {
		t.Errorf("qrs = %q", sink.qrs)
	}
	if len(sink.states) != 1 || sink.states[0] != (sessions.State{Status: sessions.StatusDisconnected, Reason: "qr_timeout"}) {
		t.Errorf("states = %+v", sink.states)
	}
	select {
	case <-q.ready:
	default:
		t.Error("ready not closed after the first code")
	}
	if c.qr != nil {
		t.Error("finished QR channel still registered")
	}
}

func TestForwardQRSuccess(t *testing.T) {
	c, sink := newTestConn(t)
	ch := make(chan whatsmeow.QRChannelItem, 2)
	q := &qrState{cancel: func() {}, ready: make(chan struct{})}
	ch <- whatsmeow.QRChannelItem{Event: whatsmeow.QRChannelEventCode, Code: "CODE-1"}
	ch <- whatsmeow.QRChannelSuccess
	close(ch)
	c.forwardQR(context.Background(), ch, q)
	if !reflect.DeepEqual(sink.qrs, []string{"CODE-1", ""}) {
		t.Errorf("qrs = %q", sink.qrs)
	}
	if len(sink.states) != 0 {
		t.Errorf("states = %+v: connected comes from PairSuccess, not the QR channel", sink.states)
	}
}
