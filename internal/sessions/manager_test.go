package sessions_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sandbox"
	"github.com/wagate/wagate/internal/sessions"
	"github.com/wagate/wagate/internal/ssrf"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// memPublisher is a real, in-memory Publisher: it deduplicates by session
// and Inbound.Key as the delivery engine does, and can be made to fail.
type memPublisher struct {
	mu    sync.Mutex
	seen  map[string]bool
	evs   []published
	calls int
	fail  error
}

type published struct {
	session string
	events.Inbound
}

func (p *memPublisher) Publish(ctx context.Context, s sessions.Session, evs []events.Inbound) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail != nil {
		return 0, p.fail
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	n := 0
	for _, ev := range evs {
		if k := ev.Key(); k != "" {
			if p.seen[s.ID+"|"+k] {
				continue
			}
			p.seen[s.ID+"|"+k] = true
		}
		p.evs = append(p.evs, published{s.ID, ev})
		n++
	}
	return n, nil
}

// of returns the published events of a type in a session.
func (p *memPublisher) of(session, typ string) []events.Inbound {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []events.Inbound
	for _, e := range p.evs {
		if e.session == session && e.Type == typ {
			out = append(out, e.Inbound)
		}
	}
	return out
}

func (p *memPublisher) setFail(err error) {
	p.mu.Lock()
	p.fail = err
	p.mu.Unlock()
}

type fixture struct {
	db  *store.DB
	pub *memPublisher
	sb  *sandbox.Engine
	m   *sessions.Manager
	a   int64 // a client
	b   int64 // another client
}

func newFixture(t *testing.T, mod func(*sessions.Options)) *fixture {
	t.Helper()
	db := testdb.Open(t, store.SQLite, store.Options{})
	f := &fixture{db: db, pub: &memPublisher{}}
	f.sb = sandbox.New(sandbox.Options{DeliveredAfter: 5 * time.Millisecond, ReadAfter: 10 * time.Millisecond})
	opts := sessions.Options{Store: db, Publisher: f.pub, Engines: []sessions.Engine{f.sb}, Log: testdb.Logger(t), QRWait: time.Second}
	if mod != nil {
		mod(&opts)
	}
	f.m = f.manager(t, opts)
	ctx := context.Background()
	for _, c := range []*int64{&f.a, &f.b} {
		cl, err := db.CreateClient(ctx, fmt.Sprint("c", c), fmt.Sprint("hash", c), "wg_x")
		if err != nil {
			t.Fatal(err)
		}
		*c = cl.ID
	}
	return f
}

func (f *fixture) manager(t *testing.T, opts sessions.Options) *sessions.Manager {
	t.Helper()
	m, err := sessions.NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// linked connects a sandbox session for user and scans it.
func (f *fixture) linked(t *testing.T, client int64, user string) string {
	t.Helper()
	ctx := context.Background()
	res, err := f.m.Connect(ctx, client, sessions.ConnectRequest{UserID: user, PhoneNumber: "5511999999999", Engine: "sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.SandboxScan(ctx, client, res.SessionID); err != nil {
		t.Fatal(err)
	}
	return res.SessionID
}

func wantCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	if !errs.Is(err, code) {
		t.Fatalf("error %v, want code %s", err, code)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConnectContract(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()

	res, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "user-uuid-123", PhoneNumber: "+55 (11) 99999-9999", Engine: "sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != sessions.StatusReconnecting || !strings.HasPrefix(res.QRCode, "2@") || res.SessionID == "" {
		t.Fatalf("connect: %+v", res)
	}
	info, err := f.m.Get(ctx, f.a, res.SessionID)
	if err != nil || info.PhoneNumber != "5511999999999" || info.Status != sessions.StatusReconnecting || !info.QRPending || info.Engine != "sandbox" {
		t.Fatalf("session: %+v %v", info, err)
	}
	if qr, err := f.m.QR(ctx, f.a, res.SessionID); err != nil || qr != res.QRCode {
		t.Fatalf("qr: %q %v", qr, err)
	}
	if qrs := f.pub.of(res.SessionID, events.TypeSessionQR); len(qrs) != 1 || qrs[0].Content != res.QRCode {
		t.Fatalf("session.qr events: %+v", qrs)
	}

	// A connect before the scan reuses the session and shows a fresh QR.
	again, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "user-uuid-123", PhoneNumber: "5511999999999"})
	if err != nil || again.SessionID != res.SessionID || again.QRCode == "" || again.QRCode == res.QRCode {
		t.Fatalf("reconnect before scan: %+v %v", again, err)
	}

	info, err = f.m.SandboxScan(ctx, f.a, res.SessionID)
	if err != nil || info.Status != sessions.StatusConnected || info.JID != "5511999999999@s.whatsapp.net" || info.QRPending {
		t.Fatalf("scan: %+v %v", info, err)
	}
	if _, err := f.m.QR(ctx, f.a, res.SessionID); !errs.Is(err, errs.NotFound) || !strings.Contains(err.Error(), "already connected") {
		t.Fatalf("qr when connected: %v", err)
	}
	st := f.pub.of(res.SessionID, events.TypeSessionStatus)
	if last := st[len(st)-1]; last.Kind != "connected" || last.Metadata["jid"] != info.JID {
		t.Fatalf("session.status events: %+v", st)
	}

	// The seed's SESSION_EXISTS, whatever the phone number.
	_, err = f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "user-uuid-123", PhoneNumber: "5511888888888"})
	wantCode(t, err, errs.SessionExists)
	if e := (*errs.Error)(nil); !errors.As(err, &e) || e.Message != "Sessão já existente" {
		t.Fatalf("message: %v", err)
	}
	// Another client's user of the same id is another session.
	other, err := f.m.Connect(ctx, f.b, sessions.ConnectRequest{UserID: "user-uuid-123", PhoneNumber: "5511999999999", Engine: "sandbox"})
	if err != nil || other.SessionID == res.SessionID {
		t.Fatalf("other client: %+v %v", other, err)
	}
	if _, err := f.m.Get(ctx, f.b, res.SessionID); !errs.Is(err, errs.NotFound) {
		t.Fatalf("other client sees the session: %v", err)
	}

	// After a logout the same user pairs again in the same session.
	info, err = f.m.Logout(ctx, f.a, res.SessionID)
	if err != nil || info.Status != sessions.StatusLoggedOut || info.JID != "" {
		t.Fatalf("logout: %+v %v", info, err)
	}
	third, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "user-uuid-123", PhoneNumber: "5511999999999"})
	if err != nil || third.SessionID != res.SessionID || third.QRCode == "" || third.Status != sessions.StatusReconnecting {
		t.Fatalf("connect after logout: %+v %v", third, err)
	}
}

func TestConnectValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	cases := []struct {
		req  sessions.ConnectRequest
		want string
	}{
		{sessions.ConnectRequest{PhoneNumber: "5511999999999"}, "Invalid params"},
		{sessions.ConnectRequest{UserID: "u"}, "Invalid params"},
		{sessions.ConnectRequest{UserID: "  ", PhoneNumber: "5511999999999"}, "Invalid params"},
		{sessions.ConnectRequest{UserID: strings.Repeat("u", 129), PhoneNumber: "5511999999999"}, "user_id"},
		{sessions.ConnectRequest{UserID: "u", PhoneNumber: "1234567"}, "phone_number"},
		{sessions.ConnectRequest{UserID: "u", PhoneNumber: "1234567890123456"}, "phone_number"},
		{sessions.ConnectRequest{UserID: "u", PhoneNumber: "55119999abc"}, "phone_number"},
		{sessions.ConnectRequest{UserID: "u", PhoneNumber: "5511999999999", Engine: "whatsmeow"}, "engine"},
		{sessions.ConnectRequest{UserID: "u", PhoneNumber: "5511999999999", Engine: "bogus"}, "engine"},
	}
	for _, c := range cases {
		_, err := f.m.Connect(ctx, f.a, c.req)
		if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want 400 about %s", c.req, err, c.want)
		}
	}
	// 8 and 15 digits are the bounds; the default engine applies.
	for _, p := range []string{"12345678", "123456789012345"} {
		res, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "u" + p, PhoneNumber: p})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if in, _ := f.m.Get(ctx, f.a, res.SessionID); in.PhoneNumber != p || in.Engine != "sandbox" {
			t.Fatalf("%s: %+v", p, in)
		}
	}
}

// failingEngine fails to connect, and records the row as it was when the
// engine was asked to open the session.
type failingEngine struct {
	db         *store.DB
	mu         sync.Mutex
	rowsAtOpen []sessions.Session
}

func (e *failingEngine) Name() string { return "broken" }

func (e *failingEngine) Open(ctx context.Context, s sessions.Session, sink sessions.Sink) (sessions.Conn, error) {
	row, err := e.db.GetSession(ctx, s.ID)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.rowsAtOpen = append(e.rowsAtOpen, row)
	e.mu.Unlock()
	return brokenConn{}, nil
}

type brokenConn struct{ sessions.Conn }

func (brokenConn) Connect(context.Context) error { return errors.New("dial tcp: network unreachable") }
func (brokenConn) Close()                        {}

func TestConnectEngineFails(t *testing.T) {
	t.Parallel()
	var broken *failingEngine
	f := newFixture(t, func(o *sessions.Options) {
		broken = &failingEngine{db: o.Store.(*store.DB)}
		o.Engines = append(o.Engines, broken)
	})
	ctx := context.Background()
	_, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "u", PhoneNumber: "5511999999999", Engine: "broken"})
	wantCode(t, err, errs.Unavailable)

	// The row was written before the engine started, and is disconnected now.
	if len(broken.rowsAtOpen) != 1 || broken.rowsAtOpen[0].Status != sessions.StatusReconnecting {
		t.Fatalf("row when the engine opened: %+v", broken.rowsAtOpen)
	}
	row, err := f.db.SessionByUser(ctx, f.a, "u")
	if err != nil || row.Status != sessions.StatusDisconnected || !strings.Contains(row.Reason, "network unreachable") {
		t.Fatalf("row after the failure: %+v %v", row, err)
	}
	// The next connect reuses that row; switching engine works.
	res, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "u", PhoneNumber: "5511999999999", Engine: "sandbox"})
	if err != nil || res.SessionID != row.ID || res.QRCode == "" {
		t.Fatalf("connect after failure: %+v %v", res, err)
	}
}

func TestSendAndReceipts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	id := f.linked(t, f.a, "u")

	res, err := f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "+55 11 98888-7777", Text: "hello"}, "")
	if err != nil || !strings.HasPrefix(res.MessageID, "3EB0") || len(res.MessageID) != 20 || res.Timestamp.IsZero() {
		t.Fatalf("send: %+v %v", res, err)
	}
	sent := f.sb.Sent(id)
	if len(sent) != 1 || sent[0].Message.To != "5511988887777" || sent[0].Message.Text != "hello" || sent[0].Message.Type != "text" {
		t.Fatalf("sandbox sent: %+v", sent)
	}
	waitFor(t, "delivered and read receipts", func() bool { return len(f.pub.of(id, events.TypeAck)) == 2 })
	acks := f.pub.of(id, events.TypeAck)
	if acks[0].Kind != "delivered" || acks[1].Kind != "read" || acks[0].MessageID != res.MessageID ||
		acks[0].From != "5511988887777" || acks[0].To != "5511999999999" {
		t.Fatalf("acks: %+v", acks)
	}

	// Injected receipts for the same message; "played" is new, "read" is a
	// redelivery that the publisher drops.
	if _, err := f.m.SandboxReceipts(ctx, f.a, id, sessions.SimReceipts{MessageIDs: []string{res.MessageID}, Type: "played"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.SandboxReceipts(ctx, f.a, id, sessions.SimReceipts{MessageIDs: []string{res.MessageID}, Type: "read"}); err != nil {
		t.Fatal(err)
	}
	acks = f.pub.of(id, events.TypeAck)
	if len(acks) != 3 || acks[2].Kind != "played" || acks[2].From != "5511988887777" {
		t.Fatalf("injected acks: %+v", acks)
	}
	_, err = f.m.SandboxReceipts(ctx, f.a, id, sessions.SimReceipts{MessageIDs: []string{res.MessageID}, Type: "seen"})
	wantCode(t, err, errs.Invalid)

	// The other kinds of message.
	lat, lng, heart, empty := -23.5, -46.6, "❤️", ""
	for _, req := range []sessions.SendRequest{
		{To: "5511988887777", Type: "text", Text: "re", ReplyTo: res.MessageID},
		{To: "5511988887777", Type: "location", Latitude: &lat, Longitude: &lng, Name: "SP"},
		{To: "5511988887777", Type: "contact", VCard: "BEGIN:VCARD\nVERSION:3.0\nFN:Ana Souza\nEND:VCARD"},
		{To: "5511988887777", Type: "reaction", Emoji: &heart, MessageID: res.MessageID},
		{To: "5511988887777", Type: "reaction", Emoji: &empty, MessageID: res.MessageID},
		{To: "120363025246125486@g.us", Text: "group"},
		{To: "5511988887777", Type: "document", MediaBase64: base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 hello")), FileName: "a.pdf"},
		{To: "120363025246125486@g.us", Type: "reaction", Emoji: &heart, MessageID: "OLD", TargetSender: "+55 11 97777-6666"},
	} {
		if _, err := f.m.Send(ctx, f.a, id, req, ""); err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
	}
	sent = f.sb.Sent(id)
	if c := sent[3].Message; c.Name != "Ana Souza" {
		t.Fatalf("contact name from vCard: %+v", c)
	}
	if r := sent[4].Message; r.Emoji != "❤️" || r.TargetID != res.MessageID {
		t.Fatalf("reaction: %+v", r)
	}
	if d := sent[7].Message; d.MimeType != "application/pdf" || d.FileName != "a.pdf" || string(d.Media) != "%PDF-1.4 hello" {
		t.Fatalf("document: %+v", d)
	}
	if r := sent[8].Message; r.TargetSender != "5511977776666" || r.TargetID != "OLD" {
		t.Fatalf("reaction with its target's author: %+v", r)
	}

	// Bad input is a 400; an unknown recipient too.
	for _, req := range []sessions.SendRequest{
		{To: "not-a-number", Text: "x"},
		{To: "123", Text: "x"},
		{To: "x@example.com", Text: "x"},
		{To: "5511988887777"},
		{To: "5511988887777", Type: "sticker"},
		{To: "5511988887777", Type: "image"},
		{To: "5511988887777", Type: "image", MediaURL: "ftp://x/y", MediaBase64: "AA=="},
		{To: "5511988887777", Type: "image", MediaURL: "file:///etc/passwd"},
		{To: "5511988887777", Type: "image", MediaBase64: "!!!"},
		{To: "5511988887777", Type: "location", Latitude: &lat},
		{To: "5511988887777", Type: "reaction", MessageID: "x"},
		{To: "5511988887777", Type: "contact", VCard: "hello"},
		{To: "5511988887777", Text: "x", ReplyTo: "has space"},
		{To: "5511988887777", Text: "x", TargetSender: "5511977776666"}, // neither reply_to nor a reaction
		{To: "5511988887777", Text: "x", ReplyTo: "ABC", TargetSender: "nobody"},
	} {
		if _, err := f.m.Send(ctx, f.a, id, req, ""); !errs.Is(err, errs.Invalid) {
			t.Errorf("%+v: %v, want 400", req, err)
		}
	}
	// Read receipts for received messages.
	if err := f.m.MarkRead(ctx, f.a, id, sessions.ReadRequest{Chat: "5511988887777", MessageIDs: []string{"ABC"}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.m.MarkRead(ctx, f.a, id, sessions.ReadRequest{Chat: "5511988887777"}), errs.Invalid)

	// Not connected: 409, and the sandbox has sent nothing more.
	if _, err := f.m.Logout(ctx, f.a, id); err != nil {
		t.Fatal(err)
	}
	n := len(f.sb.Sent(id))
	_, err = f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Text: "x"}, "")
	wantCode(t, err, errs.NotConnected)
	wantCode(t, f.m.MarkRead(ctx, f.a, id, sessions.ReadRequest{Chat: "5511988887777", MessageIDs: []string{"A"}}), errs.NotConnected)
	if len(f.sb.Sent(id)) != n {
		t.Fatal("sent while logged out")
	}
}

func TestIdempotentSend(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	id := f.linked(t, f.a, "u")
	req := sessions.SendRequest{To: "5511988887777", Text: "once"}

	first, err := f.m.Send(ctx, f.a, id, req, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.m.Send(ctx, f.a, id, req, "key-1")
	if err != nil || again.MessageID != first.MessageID || !again.Timestamp.Equal(first.Timestamp) || !again.Replayed {
		t.Fatalf("replay: %+v vs %+v, %v", again, first, err)
	}
	if n := len(f.sb.Sent(id)); n != 1 {
		t.Fatalf("%d sends", n)
	}
	_, err = f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Text: "other"}, "key-1")
	wantCode(t, err, errs.Conflict)
	if !strings.Contains(err.Error(), "different request") {
		t.Fatalf("message: %v", err)
	}
	_, err = f.m.Send(ctx, f.a, id, req, "bad key")
	wantCode(t, err, errs.Invalid)

	// Concurrent duplicates: one send, whatever the interleaving.
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Text: "burst"}, "key-2")
			switch {
			case err == nil:
				ids <- r.MessageID
			case !errs.Is(err, errs.Conflict): // "still being processed" is fine
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(ids)
	var got string
	for mid := range ids {
		if got != "" && mid != got {
			t.Fatalf("two message ids for one key: %s %s", got, mid)
		}
		got = mid
	}
	if n := len(f.sb.Sent(id)); n != 2 {
		t.Fatalf("%d sends after the burst, want 2", n)
	}

	// A send that fails frees its key.
	if _, err := f.m.Logout(ctx, f.a, id); err != nil {
		t.Fatal(err)
	}
	_, err = f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Text: "later"}, "key-3")
	wantCode(t, err, errs.NotConnected)
	// The replay of a completed key works even when disconnected.
	if r, err := f.m.Send(ctx, f.a, id, req, "key-1"); err != nil || r.MessageID != first.MessageID {
		t.Fatalf("replay while disconnected: %+v %v", r, err)
	}
	if _, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "u", PhoneNumber: "5511999999999"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.SandboxScan(ctx, f.a, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Text: "later"}, "key-3"); err != nil {
		t.Fatalf("retry with a released key: %v", err)
	}
}

func TestMediaURL(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	img, _ := sessions.QRPNG("media", 64)
	buf.Write(img)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(make([]byte, 4096))
		case "/missing":
			http.NotFound(w, r)
		case "/typed":
			w.Header().Set("Content-Type", "audio/ogg; codecs=opus")
			w.Write([]byte("OggS fake"))
		default:
			w.Header().Set("Content-Type", "application/octet-stream") // sniffed instead
			w.Write(buf.Bytes())
		}
	}))
	defer srv.Close()

	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	f := newFixture(t, func(o *sessions.Options) {
		o.HTTPClient = sessions.NewMediaClient(ssrf.New(allow))
		o.MaxMediaBytes = 2048
	})
	ctx := context.Background()
	id := f.linked(t, f.a, "u")

	if _, err := f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Type: "image", MediaURL: srv.URL + "/qr.png", Caption: "look"}, ""); err != nil {
		t.Fatal(err)
	}
	got := f.sb.Sent(id)[0].Message
	if got.MimeType != "image/png" || !bytes.Equal(got.Media, buf.Bytes()) || got.Caption != "look" {
		t.Fatalf("image: %s %d bytes %q", got.MimeType, len(got.Media), got.Caption)
	}
	if _, err := f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Type: "audio", MediaURL: srv.URL + "/typed", Voice: true}, ""); err != nil {
		t.Fatal(err)
	}
	if a := f.sb.Sent(id)[1].Message; a.MimeType != "audio/ogg; codecs=opus" || !a.Voice {
		t.Fatalf("audio: %+v", a)
	}
	_, err := f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Type: "image", MediaURL: srv.URL + "/big"}, "")
	wantCode(t, err, errs.TooLarge)
	_, err = f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Type: "video", MediaBase64: base64.StdEncoding.EncodeToString(make([]byte, 4096))}, "")
	wantCode(t, err, errs.TooLarge)
	_, err = f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Type: "image", MediaURL: srv.URL + "/missing"}, "")
	wantCode(t, err, errs.Invalid)
	// A data URL's type is used.
	if _, err := f.m.Send(ctx, f.a, id, sessions.SendRequest{To: "5511988887777", Type: "image",
		MediaBase64: "data:image/webp;base64," + base64.StdEncoding.EncodeToString([]byte("RIFF....WEBP"))}, ""); err != nil {
		t.Fatal(err)
	}
	if w := f.sb.Sent(id)[2].Message; w.MimeType != "image/webp" {
		t.Fatalf("data URL type: %q", w.MimeType)
	}

	// Without the allow-list the guard refuses loopback at dial time.
	g := newFixture(t, nil)
	gid := g.linked(t, g.a, "u")
	_, err = g.m.Send(ctx, g.a, gid, sessions.SendRequest{To: "5511988887777", Type: "image", MediaURL: srv.URL + "/qr.png"}, "")
	wantCode(t, err, errs.Invalid)
	if !strings.Contains(err.Error(), "not allowed") || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("blocked: %v", err)
	}
	if len(g.sb.Sent(gid)) != 0 {
		t.Fatal("sent despite the guard")
	}
}

func TestInject(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	res, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "u", PhoneNumber: "5511999999999", Engine: "sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.SessionID
	_, err = f.m.SandboxInject(ctx, f.a, id, []sessions.SimMessage{{From: "5511988887777", Content: "hi"}})
	wantCode(t, err, errs.NotConnected) // not scanned yet
	if _, err := f.m.SandboxScan(ctx, f.a, id); err != nil {
		t.Fatal(err)
	}
	_, err = f.m.SandboxScan(ctx, f.a, id)
	wantCode(t, err, errs.Conflict)

	ids, err := f.m.SandboxInject(ctx, f.a, id, []sessions.SimMessage{{From: "5511988887777", Type: "text", Content: "hi", MessageID: "M1",
		Metadata: map[string]any{"push_name": "Ana"}}})
	if err != nil || len(ids) != 1 || ids[0] != "M1" {
		t.Fatalf("inject: %v %v", ids, err)
	}
	if _, err := f.m.SandboxInject(ctx, f.a, id, []sessions.SimMessage{{From: "5511988887777", Content: "hi", MessageID: "M1"}}); err != nil {
		t.Fatal(err)
	}
	msgs := f.pub.of(id, events.TypeMessage)
	if len(msgs) != 1 || msgs[0].Content != "hi" || msgs[0].From != "5511988887777" || msgs[0].To != "5511999999999" ||
		msgs[0].Kind != "text" || msgs[0].Metadata["push_name"] != "Ana" || msgs[0].Metadata["sandbox"] != true {
		t.Fatalf("stored once: %+v", msgs)
	}

	// A batch is one Publish call; ids are generated where missing.
	f.pub.mu.Lock()
	before := f.pub.calls
	f.pub.mu.Unlock()
	batch := make([]sessions.SimMessage, sessions.MaxBatch)
	for i := range batch {
		batch[i] = sessions.SimMessage{From: "5511988887777", Content: fmt.Sprint("m", i)}
	}
	batch[10].Type, batch[10].Content = "reaction", "👍"
	ids, err = f.m.SandboxInject(ctx, f.a, id, batch)
	if err != nil || len(ids) != sessions.MaxBatch {
		t.Fatalf("batch: %d %v", len(ids), err)
	}
	f.pub.mu.Lock()
	calls := f.pub.calls - before
	f.pub.mu.Unlock()
	if calls != 1 {
		t.Fatalf("%d publish calls for one batch", calls)
	}
	if !strings.HasPrefix(ids[0], "3EB0") || ids[0] == ids[1] {
		t.Fatalf("generated ids: %v", ids[:2])
	}
	if r := f.pub.of(id, events.TypeReaction); len(r) != 1 || r[0].Content != "👍" {
		t.Fatalf("reaction: %+v", r)
	}
	_, err = f.m.SandboxInject(ctx, f.a, id, append(batch, batch[0]))
	wantCode(t, err, errs.Invalid)
	_, err = f.m.SandboxInject(ctx, f.a, id, []sessions.SimMessage{{From: "x", Content: "hi"}})
	wantCode(t, err, errs.Invalid)
	_, err = f.m.SandboxInject(ctx, f.a, id, []sessions.SimMessage{{From: "5511988887777", Type: "poll", Content: "hi"}})
	wantCode(t, err, errs.Invalid)

	// A publisher failure reaches the caller, so nothing is acknowledged.
	f.pub.setFail(errors.New("disk full"))
	if _, err := f.m.SandboxInject(ctx, f.a, id, []sessions.SimMessage{{From: "5511988887777", Content: "lost?"}}); err == nil {
		t.Fatal("publisher failure swallowed")
	}
	f.pub.setFail(nil)

	// Sandbox routes do not exist for other engines' sessions, nor for
	// other clients.
	_, err = f.m.SandboxInject(ctx, f.b, id, batch[:1])
	wantCode(t, err, errs.NotFound)
}

func TestNonSandboxSession(t *testing.T) {
	t.Parallel()
	broken := &fakeEngine{}
	f := newFixture(t, func(o *sessions.Options) { o.Engines = append(o.Engines, broken) })
	ctx := context.Background()
	res, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "u", PhoneNumber: "5511999999999", Engine: "fake"})
	if err != nil || res.QRCode != "fake-qr" {
		t.Fatalf("connect: %+v %v", res, err)
	}
	_, err = f.m.SandboxScan(ctx, f.a, res.SessionID)
	wantCode(t, err, errs.NotFound)
	_, err = f.m.SandboxInject(ctx, f.a, res.SessionID, []sessions.SimMessage{{From: "5511988887777", Content: "x"}})
	wantCode(t, err, errs.NotFound)
	_, err = f.m.SandboxSent(ctx, f.a, res.SessionID)
	wantCode(t, err, errs.NotFound)
	// QR codes arriving later (as whatsmeow's do) are waited for.
	if code, err := f.m.PairCode(ctx, f.a, res.SessionID, ""); err != nil || code != "PAIR-5511999999999" {
		t.Fatalf("pair code: %q %v", code, err)
	}
	if err := f.m.Delete(ctx, f.a, res.SessionID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Get(ctx, f.a, res.SessionID); !errs.Is(err, errs.NotFound) {
		t.Fatalf("deleted session: %v", err)
	}
}

// fakeEngine reports its QR code from another goroutine, after Connect
// returned, as whatsmeow does.
type fakeEngine struct{}

func (fakeEngine) Name() string { return "fake" }
func (fakeEngine) Open(ctx context.Context, s sessions.Session, sink sessions.Sink) (sessions.Conn, error) {
	return &fakeConn{sink: sink, phone: s.PhoneNumber}, nil
}

type fakeConn struct {
	sessions.Conn
	sink  sessions.Sink
	phone string
}

func (c *fakeConn) Connect(ctx context.Context) error {
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.sink.QR(context.Background(), "fake-qr")
	}()
	return nil
}
func (c *fakeConn) PairPhone(ctx context.Context, phone string) (string, error) {
	return "PAIR-" + phone, nil
}
func (c *fakeConn) Logout(ctx context.Context) error { return nil }
func (c *fakeConn) Close()                           {}

func TestResume(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	linked := f.linked(t, f.a, "linked")
	pending, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: "pending", PhoneNumber: "5511999999998", Engine: "sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	gone := f.linked(t, f.a, "gone")
	if _, err := f.m.Logout(ctx, f.a, gone); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A new node on the same database: the linked session comes back
	// connected; the unlinked and logged-out ones stay down.
	m2 := f.manager(t, sessions.Options{Store: f.db, Publisher: f.pub, Engines: []sessions.Engine{f.sb}, Log: testdb.Logger(t)})
	if err := m2.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if in, _ := m2.Get(ctx, f.a, linked); in.Status != sessions.StatusConnected || in.JID == "" {
		t.Fatalf("resumed: %+v", in)
	}
	if _, err := m2.Send(ctx, f.a, linked, sessions.SendRequest{To: "5511988887777", Text: "back"}, ""); err != nil {
		t.Fatalf("send after resume: %v", err)
	}
	if _, err := m2.Send(ctx, f.a, pending.SessionID, sessions.SendRequest{To: "5511988887777", Text: "x"}, ""); !errs.Is(err, errs.NotConnected) {
		t.Fatalf("unlinked session: %v", err)
	}
	if in, _ := m2.Get(ctx, f.a, gone); in.Status != sessions.StatusLoggedOut {
		t.Fatalf("logged out: %+v", in)
	}
	// Stop releases a session; Start takes it back.
	if err := m2.Stop(ctx, linked); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Send(ctx, f.a, linked, sessions.SendRequest{To: "5511988887777", Text: "x"}, ""); !errs.Is(err, errs.NotConnected) {
		t.Fatalf("stopped session: %v", err)
	}
	if err := m2.Start(ctx, linked); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Send(ctx, f.a, linked, sessions.SendRequest{To: "5511988887777", Text: "x"}, ""); err != nil {
		t.Fatal(err)
	}
	// Stopping a client's sessions unlinks them.
	if err := m2.StopClient(ctx, f.a); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Send(ctx, f.a, linked, sessions.SendRequest{To: "5511988887777", Text: "x"}, ""); !errs.Is(err, errs.NotConnected) {
		t.Fatalf("after StopClient: %v", err)
	}
}

func TestListAndScope(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	for i := range 5 {
		if _, err := f.m.Connect(ctx, f.a, sessions.ConnectRequest{UserID: fmt.Sprint("u", i), PhoneNumber: "5511999999999"}); err != nil {
			t.Fatal(err)
		}
	}
	theirs := f.linked(t, f.b, "x")
	page, next, err := f.m.List(ctx, f.a, "", 3)
	if err != nil || len(page) != 3 || next == "" || !page[0].QRPending {
		t.Fatalf("page 1: %d %q %v", len(page), next, err)
	}
	page, next, err = f.m.List(ctx, f.a, next, 3)
	if err != nil || len(page) != 2 || next != "" {
		t.Fatalf("page 2: %d %q %v", len(page), next, err)
	}
	_, _, err = f.m.List(ctx, f.a, "", 101)
	wantCode(t, err, errs.Invalid)

	// Every per-session operation treats another client's session as absent.
	checks := map[string]func() error{
		"get":       func() error { _, err := f.m.Get(ctx, f.a, theirs); return err },
		"qr":        func() error { _, err := f.m.QR(ctx, f.a, theirs); return err },
		"pair-code": func() error { _, err := f.m.PairCode(ctx, f.a, theirs, ""); return err },
		"logout":    func() error { _, err := f.m.Logout(ctx, f.a, theirs); return err },
		"reconnect": func() error { _, err := f.m.Reconnect(ctx, f.a, theirs); return err },
		"delete":    func() error { return f.m.Delete(ctx, f.a, theirs) },
		"send": func() error {
			_, err := f.m.Send(ctx, f.a, theirs, sessions.SendRequest{To: "5511988887777", Text: "x"}, "")
			return err
		},
		"read": func() error {
			return f.m.MarkRead(ctx, f.a, theirs, sessions.ReadRequest{Chat: "5511988887777", MessageIDs: []string{"A"}})
		},
		"scan": func() error { _, err := f.m.SandboxScan(ctx, f.a, theirs); return err },
		"inject": func() error {
			_, err := f.m.SandboxInject(ctx, f.a, theirs, []sessions.SimMessage{{From: "5511988887777", Content: "x"}})
			return err
		},
		"receipts": func() error {
			_, err := f.m.SandboxReceipts(ctx, f.a, theirs, sessions.SimReceipts{MessageIDs: []string{"A"}, Type: "read"})
			return err
		},
		"sent": func() error { _, err := f.m.SandboxSent(ctx, f.a, theirs); return err },
	}
	for name, fn := range checks {
		if err := fn(); !errs.Is(err, errs.NotFound) {
			t.Errorf("%s: %v, want NotFound", name, err)
		}
	}
	if in, err := f.m.Get(ctx, f.b, theirs); err != nil || in.Status != sessions.StatusConnected {
		t.Fatalf("owner's session changed: %+v %v", in, err)
	}
}

func TestQRPNG(t *testing.T) {
	t.Parallel()
	b, err := sessions.QRPNG("2@"+strings.Repeat("A", 200), 256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatal("not a PNG")
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	w := img.Bounds().Dx()
	if w != img.Bounds().Dy() || w <= 128 || w > 256 {
		t.Fatalf("size %v", img.Bounds())
	}
	// Quiet zone white, finder pattern's corner black.
	dark := func(x, y int) bool { r, _, _, _ := img.At(x, y).RGBA(); return r < 0x8000 }
	if dark(0, 0) || dark(w-1, w-1) {
		t.Fatal("no quiet zone")
	}
	var first int
	for first = 0; first < w && !dark(first, first); first++ {
	}
	if first == w || !dark(w-1-first, first) || !dark(first, w-1-first) {
		t.Fatal("finder patterns not where a QR code has them")
	}
}

// BenchmarkInjectBatch measures the sandbox hot path up to the Publisher:
// validation and event building of 1,000-message batches.
func BenchmarkInjectBatch(b *testing.B) {
	db := testdb.Open(b, store.SQLite, store.Options{})
	pub := &countingPublisher{}
	m, err := sessions.NewManager(sessions.Options{Store: db, Publisher: pub, Engines: []sessions.Engine{sandbox.New(sandbox.Options{})}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx := context.Background()
	cl, _ := db.CreateClient(ctx, "bench", "h", "wg_x")
	res, err := m.Connect(ctx, cl.ID, sessions.ConnectRequest{UserID: "u", PhoneNumber: "5511999999999"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.SandboxScan(ctx, cl.ID, res.SessionID); err != nil {
		b.Fatal(err)
	}
	batch := make([]sessions.SimMessage, sessions.MaxBatch)
	for i := range batch {
		batch[i] = sessions.SimMessage{From: "5511988887777", Type: "text", Content: "hello there", MessageID: fmt.Sprint("M", i)}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.SandboxInject(ctx, cl.ID, res.SessionID, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

// countingPublisher accepts everything (the benchmark measures the manager).
type countingPublisher struct{ n int }

func (p *countingPublisher) Publish(ctx context.Context, s sessions.Session, evs []events.Inbound) (int, error) {
	p.n += len(evs)
	return len(evs), nil
}
