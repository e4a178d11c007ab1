package whatsmeow

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	waevents "go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/sessions"
)

// stubBuilder keeps the real BuildReaction but never uploads anything.
type stubBuilder struct {
	*whatsmeow.Client
	uploads []whatsmeow.MediaType
	fail    error
}

func (s *stubBuilder) Upload(_ context.Context, data []byte, mt whatsmeow.MediaType) (whatsmeow.UploadResponse, error) {
	s.uploads = append(s.uploads, mt)
	if s.fail != nil {
		return whatsmeow.UploadResponse{}, s.fail
	}
	return whatsmeow.UploadResponse{URL: "https://mmg.invalid/x", DirectPath: "/v/x", MediaKey: []byte{1},
		FileEncSHA256: []byte{2}, FileSHA256: []byte{3}, FileLength: uint64(len(data))}, nil
}

func TestParseRecipient(t *testing.T) {
	ok := map[string]types.JID{
		"5511888887777":                  peer,
		"+5511888887777":                 peer,
		" 5511888887777 ":                peer,
		"5511888887777@s.whatsapp.net":   peer,
		"5511888887777:3@s.whatsapp.net": peer,
		"5511888887777@c.us":             peer,
		"120363000000000001@g.us":        group,
		"99887766554433@lid":             knownLID,
		"120363111111111111@newsletter":  types.NewJID("120363111111111111", types.NewsletterServer),
	}
	for in, want := range ok {
		got, err := parseRecipient(in)
		if err != nil || got != want {
			t.Errorf("parseRecipient(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "123", "0511888887777", "55 11 8888", "1234567890123456",
		"x@y", "@s.whatsapp.net", "5511888887777@broadcast", "a@b@c"} {
		if _, err := parseRecipient(in); !errs.Is(err, errs.Invalid) {
			t.Errorf("parseRecipient(%q) err = %v, want %s", in, err, errs.Invalid)
		}
	}
}

func TestBuildMessages(t *testing.T) {
	c, _ := newTestConn(t)
	b := &stubBuilder{Client: c.client}
	ctx := context.Background()

	// A received message becomes quotable and reactable.
	c.handle(raw(dm("IN1"), &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
		Text: proto.String("original"), ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String("OLDER")},
	}}))

	msg, err := c.build(ctx, b, peer, sessions.Outbound{Type: "text", Text: "plain"})
	if err != nil || msg.GetConversation() != "plain" {
		t.Fatalf("text: %v %v", msg, err)
	}

	msg, err = c.build(ctx, b, peer, sessions.Outbound{Type: "text", Text: "answer", ReplyTo: "IN1"})
	if err != nil {
		t.Fatal(err)
	}
	ci := msg.GetExtendedTextMessage().GetContextInfo()
	if msg.GetExtendedTextMessage().GetText() != "answer" || ci.GetStanzaID() != "IN1" ||
		ci.GetParticipant() != peerDev.ToNonAD().String() ||
		ci.GetQuotedMessage().GetExtendedTextMessage().GetText() != "original" {
		t.Errorf("reply = %v", msg)
	}
	if ci.GetQuotedMessage().GetExtendedTextMessage().GetContextInfo() != nil {
		t.Error("quoted message kept its own context (nested quote)")
	}

	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "text", Text: "answer", ReplyTo: "UNKNOWN"})
	if ci := msg.GetExtendedTextMessage().GetContextInfo(); ci.GetStanzaID() != "UNKNOWN" || ci.QuotedMessage != nil {
		t.Errorf("reply to unknown id = %v", msg)
	}

	msg, err = c.build(ctx, b, peer, sessions.Outbound{Type: "image", Media: []byte("\xff\xd8\xff\xe0jpegdata"), Caption: "pic", ReplyTo: "IN1"})
	if err != nil {
		t.Fatal(err)
	}
	img := msg.GetImageMessage()
	if img.GetCaption() != "pic" || img.GetMimetype() != "image/jpeg" || img.GetURL() == "" || img.GetDirectPath() != "/v/x" ||
		img.GetFileLength() != 12 || len(img.GetMediaKey()) == 0 || img.GetContextInfo().GetStanzaID() != "IN1" {
		t.Errorf("image = %v", img)
	}

	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "video", Media: []byte("v"), MimeType: "video/mp4"})
	if msg.GetVideoMessage().GetMimetype() != "video/mp4" {
		t.Errorf("video = %v", msg)
	}
	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "audio", Media: []byte("a"), MimeType: "audio/ogg; codecs=opus", Voice: true})
	if !msg.GetAudioMessage().GetPTT() {
		t.Errorf("voice note without ptt: %v", msg)
	}
	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "document", Media: []byte("%PDF"), MimeType: "application/pdf", FileName: "a.pdf", Caption: "doc"})
	if d := msg.GetDocumentMessage(); d.GetFileName() != "a.pdf" || d.GetCaption() != "doc" {
		t.Errorf("document = %v", d)
	}
	want := []whatsmeow.MediaType{whatsmeow.MediaImage, whatsmeow.MediaVideo, whatsmeow.MediaAudio, whatsmeow.MediaDocument}
	if fmt.Sprint(b.uploads) != fmt.Sprint(want) {
		t.Errorf("uploads = %v, want %v", b.uploads, want)
	}

	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "location", Latitude: -23.5, Longitude: -46.6, Name: "Office", Address: "Street"})
	if l := msg.GetLocationMessage(); l.GetDegreesLatitude() != -23.5 || l.GetName() != "Office" || l.GetAddress() != "Street" {
		t.Errorf("location = %v", l)
	}
	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "contact", Name: "Ana", VCard: "BEGIN:VCARD\nEND:VCARD"})
	if ct := msg.GetContactMessage(); ct.GetDisplayName() != "Ana" || ct.GetVcard() == "" {
		t.Errorf("contact = %v", ct)
	}

	// Reaction to the peer's message: key not from me.
	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "reaction", TargetID: "IN1", Emoji: "❤️"})
	if r := msg.GetReactionMessage(); r.GetText() != "❤️" || r.GetKey().GetID() != "IN1" || r.GetKey().GetFromMe() {
		t.Errorf("reaction = %v", r)
	}
	// An own message (seen when sent) is addressed as from me.
	c.recent.put("OUT1", recentMsg{chat: peer, sender: ownJID.ToNonAD(), msg: &waE2E.Message{Conversation: proto.String("mine")}})
	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "reaction", TargetID: "OUT1", Emoji: ""})
	if r := msg.GetReactionMessage(); !r.GetKey().GetFromMe() || r.GetText() != "" {
		t.Errorf("reaction removal on own message = %v", r)
	}

	bad := []sessions.Outbound{
		{Type: "text"},
		{Type: "image"},
		{Type: "location", Latitude: 91},
		{Type: "contact", Name: "x"},
		{Type: "reaction", Emoji: "x"},
		{Type: "poll"},
	}
	for _, m := range bad {
		if _, err := c.build(ctx, b, peer, m); !errs.Is(err, errs.Invalid) {
			t.Errorf("build(%+v) err = %v, want %s", m, err, errs.Invalid)
		}
	}
	b.fail = errors.New("upload refused")
	if _, err := c.build(ctx, b, peer, sessions.Outbound{Type: "image", Media: []byte("x")}); err == nil {
		t.Error("upload failure not reported")
	}
}

func TestConnWithoutNetwork(t *testing.T) {
	c, _ := newTestConn(t)
	ctx := context.Background()
	if _, err := c.Send(ctx, sessions.Outbound{To: peer.User, Type: "text", Text: "hi"}); !errs.Is(err, errs.NotConnected) {
		t.Errorf("Send while disconnected: %v", err)
	}
	if _, err := c.Send(ctx, sessions.Outbound{To: "nope", Type: "text", Text: "hi"}); !errs.Is(err, errs.Invalid) {
		t.Errorf("Send to a bad recipient: %v", err)
	}
	if err := c.MarkRead(ctx, peer.User, "", []string{"A"}); !errs.Is(err, errs.NotConnected) {
		t.Errorf("MarkRead while disconnected: %v", err)
	}
	if err := c.MarkRead(ctx, peer.User, "", nil); !errs.Is(err, errs.Invalid) {
		t.Errorf("MarkRead without ids: %v", err)
	}
	if _, err := c.PairPhone(ctx, "5511999990000"); !errs.Is(err, errs.Conflict) {
		t.Errorf("PairPhone on a linked session: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Connect(cancelled); err == nil {
		t.Error("Connect with a cancelled context dialled")
	}

	c.client.Store.ID = nil // unlinked
	if _, err := c.Send(ctx, sessions.Outbound{To: peer.User, Type: "text", Text: "hi"}); !errs.Is(err, errs.NotConnected) {
		t.Errorf("Send while unlinked: %v", err)
	}
	if _, err := c.PairPhone(ctx, "012345"); !errs.Is(err, errs.Invalid) {
		t.Errorf("PairPhone with a bad number: %v", err)
	}
	if err := c.Logout(ctx); err != nil {
		t.Errorf("Logout of an unlinked session: %v", err)
	}
	c.client.Store.Initialized = true // as left by whatsmeow after a logout
	if err := c.Connect(ctx); !errs.Is(err, errs.Conflict) {
		t.Errorf("Connect on a logged-out device: %v", err)
	}
	c.Close()
	c.Close() // idempotent
}

func TestMapErr(t *testing.T) {
	cases := map[error]errs.Code{
		whatsmeow.ErrNotLoggedIn:                              errs.NotConnected,
		whatsmeow.ErrNotConnected:                             errs.NotConnected,
		fmt.Errorf("x: %w", whatsmeow.ErrIQDisconnected):      errs.NotConnected,
		whatsmeow.ErrRecipientADJID:                           errs.Invalid,
		whatsmeow.ErrPhoneNumberIsNotInternational:            errs.Invalid,
		whatsmeow.ErrIQRateOverLimit:                          errs.RateLimited,
		whatsmeow.ErrNotInGroup:                               errs.Forbidden,
		whatsmeow.ErrGroupNotFound:                            errs.NotFound,
		whatsmeow.ErrMessageTimedOut:                          errs.Unavailable,
		context.DeadlineExceeded:                              errs.Unavailable,
		errors.New("something else"):                          errs.Internal,
		errs.E(errs.TooLarge, "already classified"):           errs.TooLarge,
		&whatsmeow.IQError{Code: 429, Text: "rate-overlimit"}: errs.RateLimited,
	}
	for in, want := range cases {
		if got := errs.CodeOf(mapErr(in, "doing")); got != want {
			t.Errorf("mapErr(%v) = %s, want %s", in, got, want)
		}
	}
	if mapErr(nil, "x") != nil {
		t.Error("mapErr(nil) != nil")
	}
}

func TestRecentEvicts(t *testing.T) {
	r := newRecent(2)
	m := &waE2E.Message{Conversation: proto.String("x")}
	r.put("a", recentMsg{msg: m})
	r.put("b", recentMsg{msg: m})
	r.put("a", recentMsg{msg: m}) // update, no eviction
	r.put("c", recentMsg{msg: m})
	if _, ok := r.get("a"); ok {
		t.Error("oldest entry not evicted")
	}
	for _, id := range []string{"b", "c"} {
		if _, ok := r.get(id); !ok {
			t.Errorf("%s evicted too early", id)
		}
	}
}

func TestOwnMessagesAreRemembered(t *testing.T) {
	c, _ := newTestConn(t)
	c.handle(raw(dm("IN2"), &waE2E.Message{Conversation: proto.String("q")}))
	if r, ok := c.recent.get("IN2"); !ok || r.sender != peerDev {
		t.Errorf("recent = %+v, %v", r, ok)
	}
	// Events that are not messages do not touch the cache.
	c.handle(&waevents.Connected{})
}

// TestBuildWithTargetSender: a reply or reaction that names its target's
// author works for messages the cache never saw, in groups too; without it
// the cache and the direct-chat guess still apply.
func TestBuildWithTargetSender(t *testing.T) {
	c, _ := newTestConn(t)
	b := &stubBuilder{Client: c.client}
	ctx := context.Background()
	c.handle(raw(dm("IN1"), &waE2E.Message{Conversation: proto.String("cached")}))

	// Reply to an unknown message: the quote names its author.
	msg, err := c.build(ctx, b, group, sessions.Outbound{Type: "text", Text: "re", ReplyTo: "OLD1", TargetSender: member.User})
	if err != nil {
		t.Fatal(err)
	}
	if ci := msg.GetExtendedTextMessage().GetContextInfo(); ci.GetStanzaID() != "OLD1" || ci.GetParticipant() != member.String() || ci.QuotedMessage != nil {
		t.Errorf("reply to an unknown message = %v", ci)
	}
	// A named author wins over the cache's; the quoted content still comes from the cache.
	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "text", Text: "re", ReplyTo: "IN1", TargetSender: "5511777776666@s.whatsapp.net"})
	if ci := msg.GetExtendedTextMessage().GetContextInfo(); ci.GetParticipant() != member.String() || ci.GetQuotedMessage().GetConversation() != "cached" {
		t.Errorf("reply with a named author = %v", ci)
	}
	// Media replies carry the same context.
	msg, _ = c.build(ctx, b, group, sessions.Outbound{Type: "image", Media: []byte("x"), ReplyTo: "OLD1", TargetSender: member.User})
	if ci := msg.GetImageMessage().GetContextInfo(); ci.GetParticipant() != member.String() {
		t.Errorf("image reply = %v", ci)
	}

	// Reaction in a group to a message the cache never saw: addressed to its author.
	msg, _ = c.build(ctx, b, group, sessions.Outbound{Type: "reaction", TargetID: "OLD2", Emoji: "👍", TargetSender: member.User})
	if k := msg.GetReactionMessage().GetKey(); k.GetFromMe() || k.GetParticipant() != member.String() || k.GetID() != "OLD2" || k.GetRemoteJID() != group.String() {
		t.Errorf("group reaction with a named author = %v", k)
	}
	// Without the author, the group guess is an own message.
	msg, _ = c.build(ctx, b, group, sessions.Outbound{Type: "reaction", TargetID: "OLD2", Emoji: "👍"})
	if k := msg.GetReactionMessage().GetKey(); !k.GetFromMe() {
		t.Errorf("group reaction without an author = %v", k)
	}
	// The session's own number marks an own message, even in a direct chat
	// (where unknown ids are otherwise taken as the peer's).
	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "reaction", TargetID: "MINE", Emoji: "🎉", TargetSender: ownJID.User})
	if k := msg.GetReactionMessage().GetKey(); !k.GetFromMe() || k.GetParticipant() != "" {
		t.Errorf("reaction to an own message = %v", k)
	}
	msg, _ = c.build(ctx, b, peer, sessions.Outbound{Type: "reaction", TargetID: "MINE", Emoji: "🎉"})
	if k := msg.GetReactionMessage().GetKey(); k.GetFromMe() {
		t.Errorf("direct-chat fallback = %v", k)
	}

	for _, bad := range []string{"not a number", group.String()} {
		if _, err := c.build(ctx, b, peer, sessions.Outbound{Type: "reaction", TargetID: "X", Emoji: "x", TargetSender: bad}); !errs.Is(err, errs.Invalid) {
			t.Errorf("target sender %q: %v", bad, err)
		}
	}
}
