// Package sandbox is a simulated phone: a sessions.Engine that needs no
// network and no WhatsApp account. It pairs with a QR code (any content) or
// a pairing code, links when the API "scans" it, accepts sends and answers
// them with delivery and read receipts after short delays, and reports
// messages and receipts injected through the API. Everything it produces
// goes through the same manager, storage and webhook pipeline as real
// WhatsApp traffic.
//
// The link lives in the session row: a session with a jid is linked, so a
// linked sandbox session comes back connected after a restart.
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sessions"
)

// Name is the engine name sessions choose with "engine": "sandbox".
const Name = "sandbox"

// Options tune the simulated phone. The zero value is usable.
type Options struct {
	// DeliveredAfter and ReadAfter are how long after a send its delivered
	// and read receipts arrive. Defaults 200ms and 1s; negative disables.
	DeliveredAfter time.Duration
	ReadAfter      time.Duration
	// KeepSent is how many sends per session Sent remembers. Default 1000.
	KeepSent int
	// Now and AfterFunc are the clock; tests stub them. Defaults time.Now
	// and time.AfterFunc. AfterFunc returns the timer's stop function.
	Now       func() time.Time
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
	Log       *slog.Logger
}

// Engine opens simulated connections. Safe for concurrent use.
type Engine struct {
	opts Options

	mu   sync.Mutex
	sent map[string][]sessions.SentMessage // by session id, oldest first
}

var _ sessions.SimulatorEngine = (*Engine)(nil)

// New returns a sandbox engine.
func New(opts Options) *Engine {
	if opts.DeliveredAfter == 0 {
		opts.DeliveredAfter = 200 * time.Millisecond
	}
	if opts.ReadAfter == 0 {
		opts.ReadAfter = time.Second
	}
	if opts.KeepSent <= 0 {
		opts.KeepSent = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AfterFunc == nil {
		opts.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Engine{opts: opts, sent: map[string][]sessions.SentMessage{}}
}

// Name implements sessions.Engine.
func (e *Engine) Name() string { return Name }

// Open implements sessions.Engine.
func (e *Engine) Open(ctx context.Context, s sessions.Session, sink sessions.Sink) (sessions.Conn, error) {
	if sink == nil {
		return nil, errs.E(errs.Invalid, "sandbox: nil sink")
	}
	return &conn{
		e:      e,
		id:     s.ID,
		phone:  s.PhoneNumber,
		sink:   sink,
		log:    e.opts.Log.With("session_id", s.ID, "engine", Name),
		jid:    s.JID,
		timers: map[int]func() bool{},
	}, nil
}

// Sent returns what a session sent, oldest first (at most KeepSent).
func (e *Engine) Sent(sessionID string) []sessions.SentMessage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]sessions.SentMessage(nil), e.sent[sessionID]...)
}

func (e *Engine) record(sessionID string, m sessions.SentMessage) {
	e.mu.Lock()
	defer e.mu.Unlock()
	list := append(e.sent[sessionID], m)
	if len(list) > e.opts.KeepSent {
		list = append(list[:0:0], list[len(list)-e.opts.KeepSent:]...)
	}
	e.sent[sessionID] = list
}

// recipientOf finds who a recorded send went to.
func (e *Engine) recipientOf(sessionID, messageID string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.sent[sessionID] {
		if m.MessageID == messageID {
			return m.Message.To
		}
	}
	return ""
}

// NewMessageID returns an id shaped like WhatsApp's ("3EB0" and 16
// upper-case hex digits).
func NewMessageID() string {
	var b [8]byte
	rand.Read(b[:])
	return "3EB0" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// newQR returns a code shaped like WhatsApp's pairing QR: a ref and three
// base64 keys. Its content means nothing: nothing reads it but the scan
// route.
func newQR() string {
	part := func(n int) string {
		b := make([]byte, n)
		rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	return "2@" + part(24) + "," + part(32) + "," + part(32) + "," + part(32)
}

// newPairCode returns a code shaped like WhatsApp's: 8 characters from an
// alphabet without look-alikes, as XXXX-XXXX.
func newPairCode() string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
	var b [8]byte
	rand.Read(b[:])
	out := make([]byte, 0, 9)
	for i, c := range b {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, alphabet[int(c)%len(alphabet)])
	}
	return string(out)
}

// conn is one session's simulated phone.
type conn struct {
	e     *Engine
	id    string
	phone string
	sink  sessions.Sink
	log   *slog.Logger

	mu        sync.Mutex
	jid       string // "" until linked
	connected bool
	closed    bool
	nextTimer int
	timers    map[int]func() bool // pending receipts, to stop on Close
	running   sync.WaitGroup      // receipt callbacks in flight
}

var (
	_ sessions.Conn      = (*conn)(nil)
	_ sessions.Simulator = (*conn)(nil)
)

// Connect implements sessions.Conn: a linked phone connects at once, an
// unlinked one shows a QR code.
func (c *conn) Connect(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errs.E(errs.Unavailable, "sandbox connection is closed")
	}
	jid := c.jid
	c.connected = jid != ""
	c.mu.Unlock()
	if jid != "" {
		c.sink.State(ctx, sessions.State{Status: sessions.StatusConnected, JID: jid})
		return nil
	}
	c.sink.QR(ctx, newQR())
	return nil
}

// PairPhone implements sessions.Conn. The code is not checked: a scan
// links the phone.
func (c *conn) PairPhone(ctx context.Context, phone string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jid != "" {
		return "", errs.E(errs.Conflict, "session is already linked")
	}
	return newPairCode(), nil
}

// Scan implements sessions.Simulator.
func (c *conn) Scan(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return errs.E(errs.NotConnected, "session is not started")
	case c.jid != "":
		c.mu.Unlock()
		return errs.E(errs.Conflict, "session is already linked")
	}
	c.jid = c.phone + "@" + sessions.ServerUser
	c.connected = true
	jid := c.jid
	c.mu.Unlock()
	c.sink.QR(ctx, "")
	c.sink.State(ctx, sessions.State{Status: sessions.StatusConnected, JID: jid})
	c.log.Info("sandbox phone linked", "jid", jid)
	return nil
}

func (c *conn) requireConnected() error {
	if !c.connected || c.closed {
		return errs.E(errs.NotConnected, "session is not connected")
	}
	return nil
}

// Send implements sessions.Conn: the message is recorded, and its
// delivered and read receipts follow after the configured delays.
func (c *conn) Send(ctx context.Context, m sessions.Outbound) (sessions.SendResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireConnected(); err != nil {
		return sessions.SendResult{}, err
	}
	res := sessions.SendResult{MessageID: NewMessageID(), Timestamp: c.e.opts.Now().UTC()}
	c.e.record(c.id, sessions.SentMessage{MessageID: res.MessageID, Timestamp: res.Timestamp, Message: m})
	if m.Type != sessions.KindReaction {
		// The read receipt is scheduled once the delivered one is stored, so
		// they always arrive in a phone's order, however loaded the machine.
		c.scheduleLocked(c.e.opts.DeliveredAfter, res.MessageID, m.To, "delivered", func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if !c.closed && c.connected && c.e.opts.ReadAfter >= 0 {
				c.scheduleLocked(max(c.e.opts.ReadAfter-c.e.opts.DeliveredAfter, 0), res.MessageID, m.To, "read", nil)
			}
		})
	}
	return res, nil
}

// scheduleLocked reports a receipt for a sent message after d, then runs
// next (if any).
func (c *conn) scheduleLocked(d time.Duration, messageID, to, kind string, next func()) {
	if d < 0 {
		return
	}
	n := c.nextTimer
	c.nextTimer++
	c.running.Add(1)
	c.timers[n] = c.e.opts.AfterFunc(d, func() {
		defer c.running.Done()
		c.mu.Lock()
		_, pending := c.timers[n]
		delete(c.timers, n)
		ok := pending && !c.closed && c.connected
		c.mu.Unlock()
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ev := c.ack(messageID, sessions.UserOf(to), to, kind)
		if err := c.sink.Inbound(ctx, ev); err != nil {
			c.log.Warn("sandbox receipt not stored", "message_id", messageID, "kind", kind, "err", err)
		}
		if next != nil {
			next()
		}
	})
}

// stopTimersLocked cancels pending receipts.
func (c *conn) stopTimersLocked() {
	for n, stop := range c.timers {
		if stop() {
			c.running.Done() // its callback will never run
		}
		delete(c.timers, n)
	}
}

// MarkRead implements sessions.Conn: the simulated chat has nobody to tell.
func (c *conn) MarkRead(ctx context.Context, chat, sender string, messageIDs []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requireConnected()
}

// Logout implements sessions.Conn: the phone forgets the link.
func (c *conn) Logout(ctx context.Context) error {
	c.mu.Lock()
	c.jid, c.connected = "", false
	c.stopTimersLocked()
	c.mu.Unlock()
	return nil
}

// Close implements sessions.Conn. It waits for receipts being reported.
func (c *conn) Close() {
	c.mu.Lock()
	c.closed, c.connected = true, false
	c.stopTimersLocked()
	c.mu.Unlock()
	c.running.Wait()
}

// ack builds a message.ack event; to is the chat of the acknowledged message.
func (c *conn) ack(messageID, from, chat, kind string) events.Inbound {
	if !strings.Contains(chat, "@") && chat != "" {
		chat += "@" + sessions.ServerUser
	}
	return events.Inbound{
		Type:      events.TypeAck,
		MessageID: messageID,
		From:      from,
		To:        c.phone,
		Timestamp: c.e.opts.Now().UTC(),
		Kind:      kind,
		Metadata:  map[string]any{"chat": chat, "is_group": strings.HasSuffix(chat, "@"+sessions.ServerGroup), "sandbox": true},
	}
}

// Download implements sessions.Conn: a sandbox media reference is the
// injected file itself. Like WhatsApp, it serves files to a connected
// device only.
func (c *conn) Download(ctx context.Context, ref []byte, maxBytes int64) ([]byte, string, error) {
	c.mu.Lock()
	err := c.requireConnected()
	c.mu.Unlock()
	if err != nil {
		return nil, "", err
	}
	if maxBytes > 0 && int64(len(ref)) > maxBytes {
		return nil, "", errs.E(errs.TooLarge, "the file is %d bytes; the limit is %d", len(ref), maxBytes)
	}
	return bytes.Clone(ref), "", nil
}

// MaxMediaBytes bounds the file of an injected message: the sandbox keeps
// it in the database, sealed, as a real message's reference.
const MaxMediaBytes = 5 << 20

// mediaKinds are the injected kinds that may carry a file.
var mediaKinds = map[string]bool{"image": true, "video": true, "audio": true, "document": true, "sticker": true}

// Message kinds an injected message may have.
var injectKinds = map[string]bool{
	"text": true, "image": true, "video": true, "audio": true, "document": true,
	"sticker": true, "location": true, "contact": true, "reaction": true,
}

// InjectMessages implements sessions.Simulator. All messages are checked
// before any is reported, and reported in one Sink.Inbound call.
func (c *conn) InjectMessages(ctx context.Context, msgs []sessions.SimMessage) ([]string, error) {
	c.mu.Lock()
	err := c.requireConnected()
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	now := c.e.opts.Now().UTC()
	evs := make([]events.Inbound, len(msgs))
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ev, err := c.inbound(m, now)
		if err != nil {
			if len(msgs) > 1 {
				return nil, errs.E(errs.Invalid, "messages[%d]: %s", i, errMessage(err))
			}
			return nil, err
		}
		evs[i], ids[i] = ev, ev.MessageID
	}
	if err := c.sink.Inbound(ctx, evs...); err != nil {
		return nil, err
	}
	return ids, nil
}

func errMessage(err error) string {
	if e, ok := err.(*errs.Error); ok {
		return e.Message
	}
	return err.Error()
}

func (c *conn) inbound(m sessions.SimMessage, now time.Time) (events.Inbound, error) {
	from, err := sessions.NormalizeRecipient("from", m.From)
	if err != nil {
		return events.Inbound{}, err
	}
	kind := strings.ToLower(strings.TrimSpace(m.Type))
	if kind == "" {
		kind = "text"
	}
	if !injectKinds[kind] {
		return events.Inbound{}, errs.E(errs.Invalid, "type must be one of text, image, video, audio, document, sticker, location, contact, reaction")
	}
	if kind == "text" && m.Content == "" {
		return events.Inbound{}, errs.E(errs.Invalid, "content is required for a text message")
	}
	if len(m.Content) > 4*sessions.MaxTextLen {
		return events.Inbound{}, errs.E(errs.Invalid, "content is too long")
	}
	id := m.MessageID
	if id == "" {
		id = NewMessageID()
	} else if !sessions.ValidMessageID(id) {
		return events.Inbound{}, errs.E(errs.Invalid, "message_id must be 1 to %d printable characters without spaces", sessions.MaxMessageIDLen)
	}
	chat := from
	if !strings.Contains(chat, "@") {
		chat += "@" + sessions.ServerUser
	}
	md := make(map[string]any, len(m.Metadata)+4)
	for k, v := range m.Metadata {
		md[k] = v
	}
	md["chat"] = chat
	md["is_group"] = strings.HasSuffix(chat, "@"+sessions.ServerGroup)
	md["from_me"] = false
	md["sandbox"] = true
	media, err := injectedMedia(m, kind, md)
	if err != nil {
		return events.Inbound{}, err
	}
	typ := events.TypeMessage
	if kind == "reaction" {
		typ = events.TypeReaction
	}
	return events.Inbound{
		Type:      typ,
		MessageID: id,
		From:      sessions.UserOf(from),
		To:        c.phone,
		Timestamp: now,
		Kind:      kind,
		Content:   m.Content,
		Metadata:  md,
		Media:     media,
	}, nil
}

// injectedMedia decodes an injected file into its media reference and
// announces it in md as whatsmeow announces a real one (mime_type,
// file_size, file_name), never with its bytes.
func injectedMedia(m sessions.SimMessage, kind string, md map[string]any) (*events.MediaRef, error) {
	if m.MediaBase64 == "" {
		if m.MimeType != "" || m.FileName != "" {
			return nil, errs.E(errs.Invalid, "mime_type and file_name describe media_base64, which is missing")
		}
		return nil, nil
	}
	if !mediaKinds[kind] {
		return nil, errs.E(errs.Invalid, "media_base64 is for image, video, audio, document and sticker messages, not %s", kind)
	}
	// base64 is 4/3 of the bytes: refuse a far too long text before decoding it.
	if len(m.MediaBase64) > MaxMediaBytes/3*4+1024 {
		return nil, errs.E(errs.TooLarge, "media_base64 is larger than the sandbox limit of %d bytes", MaxMediaBytes)
	}
	data, hint, err := sessions.DecodeBase64Media(m.MediaBase64)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, errs.E(errs.Invalid, "media_base64 is empty")
	}
	if len(data) > MaxMediaBytes {
		return nil, errs.E(errs.TooLarge, "media is %d bytes; the sandbox limit is %d", len(data), MaxMediaBytes)
	}
	if len(m.FileName) > 255 || strings.ContainsAny(m.FileName, "/\\\x00") {
		return nil, errs.E(errs.Invalid, "file_name must be a plain file name of at most 255 bytes")
	}
	mt := m.MimeType
	if mt == "" {
		mt = hint
	}
	if mt != "" {
		if _, _, err := mime.ParseMediaType(mt); err != nil {
			return nil, errs.E(errs.Invalid, "mime_type %q is not a media type", mt)
		}
	} else {
		mt = http.DetectContentType(data)
	}
	md["mime_type"] = mt
	md["file_size"] = len(data)
	if m.FileName != "" {
		md["file_name"] = m.FileName
	}
	return &events.MediaRef{Ref: data, MimeType: mt, FileName: m.FileName, Size: int64(len(data))}, nil
}

// InjectReceipts implements sessions.Simulator.
func (c *conn) InjectReceipts(ctx context.Context, r sessions.SimReceipts) ([]string, error) {
	c.mu.Lock()
	err := c.requireConnected()
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	kind := strings.ToLower(strings.TrimSpace(r.Type))
	switch kind {
	case "delivered", "read", "played":
	default:
		return nil, errs.E(errs.Invalid, "type must be delivered, read or played")
	}
	from := ""
	if strings.TrimSpace(r.From) != "" {
		if from, err = sessions.NormalizeRecipient("from", r.From); err != nil {
			return nil, err
		}
	}
	evs := make([]events.Inbound, len(r.MessageIDs))
	for i, id := range r.MessageIDs {
		if !sessions.ValidMessageID(id) {
			return nil, errs.E(errs.Invalid, "message_ids[%d] is not a message id", i)
		}
		chat := from
		if chat == "" {
			chat = c.e.recipientOf(c.id, id)
		}
		evs[i] = c.ack(id, sessions.UserOf(chat), chat, kind)
	}
	if err := c.sink.Inbound(ctx, evs...); err != nil {
		return nil, err
	}
	return r.MessageIDs, nil
}
