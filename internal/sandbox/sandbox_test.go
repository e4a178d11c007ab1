package sandbox_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sandbox"
	"github.com/wagate/wagate/internal/sessions"
)

// recSink records what a connection reports.
type recSink struct {
	mu     sync.Mutex
	qrs    []string
	states []sessions.State
	evs    []events.Inbound
	fail   error
}

func (s *recSink) Inbound(ctx context.Context, evs ...events.Inbound) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.evs = append(s.evs, evs...)
	return nil
}

func (s *recSink) State(ctx context.Context, st sessions.State) {
	s.mu.Lock()
	s.states = append(s.states, st)
	s.mu.Unlock()
}

func (s *recSink) QR(ctx context.Context, code string) {
	s.mu.Lock()
	s.qrs = append(s.qrs, code)
	s.mu.Unlock()
}

func (s *recSink) events() []events.Inbound {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]events.Inbound(nil), s.evs...)
}

// fakeTimers is a stubbed clock: timers fire when the test advances it.
type fakeTimers struct {
	mu      sync.Mutex
	now     time.Duration
	pending []*fakeTimer
}

type fakeTimer struct {
	at      time.Duration
	f       func()
	stopped bool
}

func (c *fakeTimers) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now + d, f: f}
	c.pending = append(c.pending, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.stopped {
			return false
		}
		t.stopped = true
		return true
	}
}

// advance moves the clock and runs the timers that are due, in order.
func (c *fakeTimers) advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	var due []*fakeTimer
	rest := c.pending[:0]
	for _, t := range c.pending {
		switch {
		case t.stopped:
		case t.at <= c.now:
			t.stopped = true
			due = append(due, t)
		default:
			rest = append(rest, t)
		}
	}
	c.pending = rest
	c.mu.Unlock()
	sort.SliceStable(due, func(i, j int) bool { return due[i].at < due[j].at })
	for _, t := range due {
		t.f()
	}
}

func open(t *testing.T, e *sandbox.Engine, s sessions.Session) (sessions.Conn, sessions.Simulator, *recSink) {
	t.Helper()
	sink := &recSink{}
	c, err := e.Open(context.Background(), s, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.(sessions.Simulator), sink
}

var idRE = regexp.MustCompile(`^3EB0[0-9A-F]{16}$`)

func TestPairingAndReceipts(t *testing.T) {
	t.Parallel()
	clock := &fakeTimers{}
	e := sandbox.New(sandbox.Options{AfterFunc: clock.AfterFunc})
	if e.Name() != "sandbox" {
		t.Fatal(e.Name())
	}
	ctx := context.Background()
	c, sim, sink := open(t, e, sessions.Session{ID: "s1", PhoneNumber: "5511999999999"})

	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if len(sink.qrs) != 1 || !regexp.MustCompile(`^2@[A-Za-z0-9+/=]+(,[A-Za-z0-9+/=]+){3}$`).MatchString(sink.qrs[0]) || len(sink.states) != 0 {
		t.Fatalf("unlinked connect: %v %v", sink.qrs, sink.states)
	}
	_, err := c.Send(ctx, sessions.Outbound{To: "5511988887777", Type: "text", Text: "x"})
	if !errs.Is(err, errs.NotConnected) {
		t.Fatalf("send before scan: %v", err)
	}
	code, err := c.PairPhone(ctx, "5511999999999")
	if err != nil || !regexp.MustCompile(`^[1-9A-Z]{4}-[1-9A-Z]{4}$`).MatchString(code) {
		t.Fatalf("pair code %q %v", code, err)
	}

	if err := sim.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sink.states; len(got) != 1 || got[0].Status != sessions.StatusConnected || got[0].JID != "5511999999999@s.whatsapp.net" {
		t.Fatalf("scan states: %+v", got)
	}
	if sink.qrs[len(sink.qrs)-1] != "" {
		t.Fatal("QR not cleared by the scan")
	}
	if _, err := c.PairPhone(ctx, "5511999999999"); !errs.Is(err, errs.Conflict) {
		t.Fatalf("pair when linked: %v", err)
	}

	res, err := c.Send(ctx, sessions.Outbound{To: "5511988887777", Type: "text", Text: "hello"})
	if err != nil || !idRE.MatchString(res.MessageID) {
		t.Fatalf("send: %+v %v", res, err)
	}
	if sent := e.Sent("s1"); len(sent) != 1 || sent[0].MessageID != res.MessageID || sent[0].Message.Text != "hello" {
		t.Fatalf("sent: %+v", sent)
	}
	clock.advance(199 * time.Millisecond)
	if n := len(sink.events()); n != 0 {
		t.Fatalf("%d events before the delivery delay", n)
	}
	clock.advance(time.Millisecond)
	clock.advance(800 * time.Millisecond)
	evs := sink.events()
	if len(evs) != 2 || evs[0].Kind != "delivered" || evs[1].Kind != "read" {
		t.Fatalf("receipts: %+v", evs)
	}
	ack := evs[0]
	if ack.Type != events.TypeAck || ack.MessageID != res.MessageID || ack.From != "5511988887777" || ack.To != "5511999999999" ||
		ack.Key() != "message.ack:"+res.MessageID+":delivered" || ack.Metadata["chat"] != "5511988887777@s.whatsapp.net" {
		t.Fatalf("ack: %+v", ack)
	}

	// Close stops the receipts still to come.
	if _, err := c.Send(ctx, sessions.Outbound{To: "5511988887777", Type: "text", Text: "again"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	clock.advance(time.Hour)
	if n := len(sink.events()); n != 2 {
		t.Fatalf("receipts after Close: %d events", n)
	}

	// A linked session opens connected: the link lives in the row's jid.
	c2, _, sink2 := open(t, e, sessions.Session{ID: "s1", PhoneNumber: "5511999999999", JID: "5511999999999@s.whatsapp.net"})
	if err := c2.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if len(sink2.qrs) != 0 || len(sink2.states) != 1 || sink2.states[0].Status != sessions.StatusConnected {
		t.Fatalf("linked connect: %v %+v", sink2.qrs, sink2.states)
	}
	if len(e.Sent("s1")) != 2 {
		t.Fatal("sends are remembered per session across connections")
	}
	if err := c2.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Send(ctx, sessions.Outbound{To: "5511988887777", Type: "text", Text: "x"}); !errs.Is(err, errs.NotConnected) {
		t.Fatalf("send after logout: %v", err)
	}
}

func TestInjection(t *testing.T) {
	t.Parallel()
	e := sandbox.New(sandbox.Options{DeliveredAfter: -1, ReadAfter: -1, KeepSent: 2})
	ctx := context.Background()
	c, sim, sink := open(t, e, sessions.Session{ID: "s1", PhoneNumber: "5511999999999", JID: "5511999999999@s.whatsapp.net"})
	if _, err := sim.InjectMessages(ctx, []sessions.SimMessage{{From: "5511988887777", Content: "x"}}); !errs.Is(err, errs.NotConnected) {
		t.Fatalf("inject before connect: %v", err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := sim.InjectMessages(ctx, []sessions.SimMessage{
		{From: "+55 11 98888-7777", Content: "hi"},
		{From: "5511988887777@s.whatsapp.net", Type: "image", Content: "caption", MessageID: "MINE",
			Metadata: map[string]any{"mime_type": "image/jpeg", "sandbox": "overridden"}},
	})
	if err != nil || len(ids) != 2 || !idRE.MatchString(ids[0]) || ids[1] != "MINE" {
		t.Fatalf("inject: %v %v", ids, err)
	}
	evs := sink.events()
	if evs[0].Type != events.TypeMessage || evs[0].Kind != "text" || evs[0].From != "5511988887777" || evs[0].To != "5511999999999" {
		t.Fatalf("text: %+v", evs[0])
	}
	if evs[1].Kind != "image" || evs[1].Metadata["mime_type"] != "image/jpeg" || evs[1].Metadata["sandbox"] != true || evs[1].Key() != "message:MINE:image" {
		t.Fatalf("image: %+v", evs[1])
	}
	// One bad message refuses the whole batch, naming it.
	_, err = sim.InjectMessages(ctx, []sessions.SimMessage{{From: "5511988887777", Content: "ok"}, {From: "5511988887777"}})
	if !errs.Is(err, errs.Invalid) || !regexp.MustCompile(`messages\[1\]`).MatchString(err.Error()) {
		t.Fatalf("bad batch: %v", err)
	}
	if len(sink.events()) != 2 {
		t.Fatal("part of a refused batch was reported")
	}
	// A sink failure is the caller's.
	sink.mu.Lock()
	sink.fail = errs.E(errs.Unavailable, "db down")
	sink.mu.Unlock()
	if _, err := sim.InjectMessages(ctx, []sessions.SimMessage{{From: "5511988887777", Content: "x"}}); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("sink failure: %v", err)
	}
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()

	// Receipts default their sender to the message's recipient.
	res, _ := c.Send(ctx, sessions.Outbound{To: "120363025246125486@g.us", Type: "text", Text: "group"})
	if _, err := sim.InjectReceipts(ctx, sessions.SimReceipts{MessageIDs: []string{res.MessageID, "UNKNOWN"}, Type: "read"}); err != nil {
		t.Fatal(err)
	}
	evs = sink.events()
	if r := evs[2]; r.Type != events.TypeAck || r.Kind != "read" || r.Metadata["chat"] != "120363025246125486@g.us" || r.Metadata["is_group"] != true {
		t.Fatalf("group receipt: %+v", r)
	}
	if r := evs[3]; r.MessageID != "UNKNOWN" || r.From != "" {
		t.Fatalf("receipt of an unknown message: %+v", r)
	}
	if _, err := sim.InjectReceipts(ctx, sessions.SimReceipts{MessageIDs: []string{"A"}, Type: "read", From: "5511977776666"}); err != nil {
		t.Fatal(err)
	}
	if r := sink.events()[4]; r.From != "5511977776666" {
		t.Fatalf("explicit from: %+v", r)
	}
	// KeepSent bounds the record.
	for range 3 {
		c.Send(ctx, sessions.Outbound{To: "5511988887777", Type: "text", Text: "x"})
	}
	if n := len(e.Sent("s1")); n != 2 {
		t.Fatalf("kept %d sends", n)
	}
}

// TestInjectedMedia: an injected file becomes the event's media reference,
// announced in metadata without its bytes, and Download returns it.
func TestInjectedMedia(t *testing.T) {
	t.Parallel()
	e := sandbox.New(sandbox.Options{})
	ctx := context.Background()
	c, sim, sink := open(t, e, sessions.Session{ID: "s1", PhoneNumber: "5511999999999", JID: "5511999999999@s.whatsapp.net"})
	png, _ := base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
	pdf := []byte("%PDF-1.4 hello")

	if _, _, err := c.Download(ctx, png, 0); !errs.Is(err, errs.NotConnected) {
		t.Fatalf("download before connecting: %v", err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := sim.InjectMessages(ctx, []sessions.SimMessage{
		{From: "5511988887777", Type: "image", Content: "a pixel", MediaBase64: base64.StdEncoding.EncodeToString(png)},
		{From: "5511988887777", Type: "document", MediaBase64: "data:application/pdf;base64," + base64.StdEncoding.EncodeToString(pdf), FileName: "nota fiscal.pdf"},
		{From: "5511988887777", Type: "image", Content: "no file"},
	})
	if err != nil || len(ids) != 3 {
		t.Fatalf("inject: %v %v", ids, err)
	}
	evs := sink.events()
	img, doc, bare := evs[0], evs[1], evs[2]
	if img.Media == nil || !bytes.Equal(img.Media.Ref, png) || img.Media.MimeType != "image/png" || img.Media.Size != int64(len(png)) ||
		img.Metadata["mime_type"] != "image/png" || img.Metadata["file_size"] != len(png) {
		t.Fatalf("image event: %+v %v", img.Media, img.Metadata)
	}
	if doc.Media == nil || doc.Media.MimeType != "application/pdf" || doc.Media.FileName != "nota fiscal.pdf" || doc.Metadata["file_name"] != "nota fiscal.pdf" {
		t.Fatalf("document event: %+v %v", doc.Media, doc.Metadata)
	}
	if bare.Media != nil {
		t.Fatalf("image without a file has a reference: %+v", bare.Media)
	}
	for _, ev := range evs {
		for k, v := range ev.Metadata {
			if s, ok := v.(string); ok && len(s) > 40 {
				t.Errorf("metadata %s carries a long value (the file?): %q", k, s)
			}
		}
	}
	data, mt, err := c.Download(ctx, img.Media.Ref, 1<<20)
	if err != nil || !bytes.Equal(data, png) || mt != "" {
		t.Fatalf("download: %v %q %v", len(data), mt, err)
	}
	if _, _, err := c.Download(ctx, img.Media.Ref, 10); !errs.Is(err, errs.TooLarge) {
		t.Fatalf("download over the limit: %v", err)
	}

	bad := []struct {
		m    sessions.SimMessage
		code errs.Code
	}{
		{sessions.SimMessage{From: "5511988887777", Type: "text", Content: "x", MediaBase64: "aGk="}, errs.Invalid},
		{sessions.SimMessage{From: "5511988887777", Type: "image", MediaBase64: "not base64!"}, errs.Invalid},
		{sessions.SimMessage{From: "5511988887777", Type: "image", MediaBase64: "aGk=", MimeType: "no type"}, errs.Invalid},
		{sessions.SimMessage{From: "5511988887777", Type: "document", MediaBase64: "aGk=", FileName: "../etc/passwd"}, errs.Invalid},
		{sessions.SimMessage{From: "5511988887777", Type: "image", MimeType: "image/png"}, errs.Invalid},
		{sessions.SimMessage{From: "5511988887777", Type: "video", MediaBase64: base64.StdEncoding.EncodeToString(make([]byte, sandbox.MaxMediaBytes+1))}, errs.TooLarge},
	}
	for i, b := range bad {
		if _, err := sim.InjectMessages(ctx, []sessions.SimMessage{b.m}); !errs.Is(err, b.code) {
			t.Errorf("bad injection %d: %v, want %s", i, err, b.code)
		}
	}
}
