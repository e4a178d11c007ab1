package whatsmeow

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"
	waevents "go.mau.fi/whatsmeow/types/events"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sessions"
)

// Redelivery backoff: after a failed commit the connection is recycled so
// the server resends what was not acknowledged.
const (
	redeliverMin = 2 * time.Second
	redeliverMax = 2 * time.Minute
)

// conn is one session's whatsmeow client.
type conn struct {
	client   *whatsmeow.Client
	sink     sessions.Sink
	log      *slog.Logger
	opts     Options
	base     context.Context // Open's values, never cancelled
	recent   *recent
	resolver LIDResolver // overrides the device's LID map (tests)

	mu        sync.Mutex
	life      context.Context // lives from Connect to Close: whatsmeow's loops run on it
	cancel    context.CancelFunc
	qr        *qrState // open QR channel, if any
	redeliver *time.Timer
	backoff   time.Duration
}

// qrState is one whatsmeow QR channel. whatsmeow removes the channel's
// handler only on a terminal event, and cancelling its context while codes
// are being emitted disconnects the client; so a channel whose codes have
// not started is kept for the next Connect, and one that has started is
// cancelled on Close.
type qrState struct {
	cancel  context.CancelFunc
	ready   chan struct{} // closed at the first code (PairPhone waits on it)
	started bool          // whatsmeow got *events.QR: codes are being emitted
}

var _ sessions.Conn = (*conn)(nil)

// lifeCtx returns the connection's lifetime context, creating it after a Close.
func (c *conn) lifeCtx() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lifeLocked()
}

func (c *conn) lifeLocked() context.Context {
	if c.life == nil {
		c.life, c.cancel = context.WithCancel(c.base)
	}
	return c.life
}

func (c *conn) ownJID() types.JID {
	if id := c.client.Store.ID; id != nil {
		return *id
	}
	return types.EmptyJID
}

func (c *conn) lids() LIDResolver {
	if c.resolver != nil {
		return c.resolver
	}
	if l := c.client.Store.LIDs; l != nil {
		return l
	}
	return nil
}

// handle is the whatsmeow event handler. Returning false withholds the ack
// of the message or receipt that produced evt (see newConn).
func (c *conn) handle(evt any) bool {
	ctx := c.lifeCtx()
	if _, ok := evt.(*waevents.QR); ok {
		// Runs before the QR channel's own handler, which starts emitting.
		c.mu.Lock()
		if c.qr != nil {
			c.qr.started = true
		}
		c.mu.Unlock()
	}
	m := mapper{own: c.ownJID(), resolver: c.lids()}
	res, err := m.mapEvent(ctx, evt)
	if err != nil {
		c.log.Error("mapping whatsapp event; not acknowledging it", "event", typeName(evt), "err", err)
		c.scheduleRedelivery()
		return false
	}
	if res.state != nil {
		c.log.Info("whatsapp connection state", "status", res.state.Status, "reason", res.state.Reason)
		c.sink.State(ctx, *res.state)
	}
	if len(res.inbound) > 0 {
		cctx, cancel := context.WithTimeout(ctx, c.opts.CommitTimeout)
		err := c.sink.Inbound(cctx, res.inbound...)
		cancel()
		if err != nil {
			c.log.Error("storing inbound whatsapp events; WhatsApp will redeliver", "event", typeName(evt), "count", len(res.inbound), "err", err)
			c.scheduleRedelivery()
			return false
		}
		c.resetBackoff()
	}
	switch e := evt.(type) {
	case *waevents.Message:
		// Only content: a key-distribution-only event shares the message id.
		if len(res.inbound) == 1 && res.inbound[0].Type == events.TypeMessage {
			c.recent.put(e.Info.ID, recentMsg{chat: e.Info.Chat, sender: e.Info.Sender, msg: e.Message})
		}
	case *waevents.UndecryptableMessage:
		c.log.Warn("undecryptable whatsapp message", "message_id", e.Info.ID, "chat", e.Info.Chat.String())
	case *waevents.StreamError:
		c.log.Warn("whatsapp stream error", "code", e.Code)
	}
	return true
}

func typeName(evt any) string {
	switch evt.(type) {
	case *waevents.Message:
		return "message"
	case *waevents.Receipt:
		return "receipt"
	}
	return "other"
}

// scheduleRedelivery recycles the connection after a backoff: WhatsApp
// resends unacknowledged stanzas when a client (re)connects, not before.
func (c *conn) scheduleRedelivery() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.redeliver != nil {
		return // one pending is enough
	}
	if c.backoff == 0 {
		c.backoff = redeliverMin
	}
	delay := c.backoff
	c.backoff = min(c.backoff*2, redeliverMax)
	c.redeliver = time.AfterFunc(delay, func() {
		c.mu.Lock()
		c.redeliver = nil
		life := c.life
		c.mu.Unlock()
		if life == nil || !c.client.IsConnected() {
			return // closed, or a reconnect is under way anyway
		}
		c.log.Info("reconnecting so WhatsApp redelivers unacknowledged events")
		c.client.Disconnect()
		if err := c.client.ConnectContext(life); err != nil && !errors.Is(err, whatsmeow.ErrAlreadyConnected) {
			c.log.Warn("reconnect for redelivery failed", "err", err)
		}
	})
}

func (c *conn) resetBackoff() {
	c.mu.Lock()
	c.backoff = 0
	c.mu.Unlock()
}

// Connect dials WhatsApp. The caller's ctx only gates the start: the
// connection then lives until Close, since whatsmeow runs its keepalive,
// handlers and reconnects on the context given here.
func (c *conn) Connect(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Unavailable, err, "connect cancelled")
	}
	life, err := c.prepareConnect()
	if err != nil || life == nil {
		return err
	}
	// Not under c.mu: the event handler needs it while we dial.
	if err := c.client.ConnectContext(life); err != nil {
		if errors.Is(err, whatsmeow.ErrAlreadyConnected) {
			return nil
		}
		return errs.Wrap(errs.Unavailable, err, "cannot reach WhatsApp")
	}
	return nil
}

// prepareConnect sets up the lifetime context and, for an unlinked device,
// the QR channel. A nil context means already connected.
func (c *conn) prepareConnect() (context.Context, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client.IsConnected() {
		return nil, nil
	}
	st := c.client.Store
	if st.ID == nil && st.Initialized {
		// Logged out: whatsmeow deleted the device, but its stores stay bound
		// to the old id, so pairing again on it would mix two identities.
		return nil, errs.E(errs.Conflict, "device was unlinked; open a new connection to link again")
	}
	life := c.lifeLocked()
	linked := st.ID != nil
	if !linked && c.qr == nil {
		// Must be set up before Connect. A channel left open by a failed
		// attempt keeps serving, so there is never more than one.
		qctx, cancel := context.WithCancel(c.base)
		ch, err := c.client.GetQRChannel(qctx)
		if err != nil {
			cancel()
			return nil, mapErr(err, "starting QR pairing")
		}
		c.qr = &qrState{cancel: cancel, ready: make(chan struct{})}
		go c.forwardQR(qctx, ch, c.qr)
	}
	// Only a linked device can reconnect by itself; an unlinked one reports
	// the failure so the caller can show it.
	c.client.InitialAutoReconnect = linked
	return life, nil
}

// forwardQR relays the QR channel to the sink. States other than the QR
// timeout come from the event handler (PairSuccess, PairError, ...), so
// they are not reported twice.
func (c *conn) forwardQR(ctx context.Context, ch <-chan whatsmeow.QRChannelItem, q *qrState) {
	var once sync.Once
	ready := func() { once.Do(func() { close(q.ready) }) }
	for item := range ch {
		switch item.Event {
		case whatsmeow.QRChannelEventCode:
			c.sink.QR(ctx, item.Code)
			ready()
		case whatsmeow.QRChannelTimeout.Event:
			c.sink.QR(ctx, "")
			c.sink.State(ctx, sessions.State{Status: sessions.StatusDisconnected, Reason: "qr_timeout"})
		case whatsmeow.QRChannelScannedWithoutMultidevice.Event:
			c.log.Warn("QR scanned by a phone without multi-device support")
		default: // success, error, err-*: pairing is over
			if item.Error != nil {
				c.log.Warn("QR pairing failed", "event", item.Event, "err", item.Error)
			}
			c.sink.QR(ctx, "")
		}
	}
	ready() // never leave PairPhone waiting on a finished channel
	q.cancel()
	c.mu.Lock()
	if c.qr == q {
		c.qr = nil
	}
	c.mu.Unlock()
}

// PairPhone returns a code to type on the phone. It connects first if
// needed: WhatsApp only accepts the request on a socket that got its QR.
func (c *conn) PairPhone(ctx context.Context, phone string) (string, error) {
	if c.client.Store.ID != nil {
		return "", errs.E(errs.Conflict, "session is already linked")
	}
	jid, err := parseRecipient(phone)
	if err != nil || jid.Server != types.DefaultUserServer {
		return "", errs.E(errs.Invalid, "phone must be an international number, digits only")
	}
	if err := c.Connect(ctx); err != nil {
		return "", err
	}
	var ready chan struct{}
	c.mu.Lock()
	if c.qr != nil {
		ready = c.qr.ready
	}
	c.mu.Unlock()
	if ready != nil {
		select {
		case <-ready:
		case <-ctx.Done():
			return "", errs.Wrap(errs.Unavailable, ctx.Err(), "WhatsApp did not start pairing in time")
		}
	}
	code, err := c.client.PairPhone(ctx, jid.User, true, whatsmeow.PairClientChrome, c.opts.PairDisplayName)
	if err != nil {
		return "", mapErr(err, "requesting pairing code")
	}
	return code, nil
}

// MarkRead sends read receipts; sender is required in groups.
func (c *conn) MarkRead(ctx context.Context, chat, sender string, messageIDs []string) error {
	if len(messageIDs) == 0 {
		return errs.E(errs.Invalid, "no message ids to mark as read")
	}
	chatJID, err := parseRecipient(chat)
	if err != nil {
		return err
	}
	var senderJID types.JID
	if sender != "" {
		if senderJID, err = parseRecipient(sender); err != nil {
			return err
		}
	}
	if !c.client.IsLoggedIn() {
		return errs.E(errs.NotConnected, "session is not connected")
	}
	if err := c.client.MarkRead(ctx, messageIDs, time.Now(), chatJID, senderJID); err != nil {
		return mapErr(err, "marking messages as read")
	}
	return nil
}

// Logout unlinks the device. If WhatsApp cannot be told (offline), the
// local keys are deleted anyway: the session must be scanned again either
// way, and the phone drops the stale entry by itself.
func (c *conn) Logout(ctx context.Context) error {
	if c.client.Store.ID == nil {
		return nil // not linked: nothing to undo
	}
	err := c.client.Logout(ctx)
	if err == nil {
		return nil
	}
	c.log.Warn("remote logout failed; deleting local device keys", "err", err)
	c.client.Disconnect()
	if c.client.Store.ID == nil {
		return nil
	}
	if derr := c.client.Store.Delete(ctx); derr != nil {
		return errs.Wrap(errs.Internal, derr, "deleting WhatsApp device keys")
	}
	return nil
}

// Close disconnects and keeps the device, so a later Connect resumes.
func (c *conn) Close() {
	c.mu.Lock()
	if c.redeliver != nil {
		c.redeliver.Stop()
		c.redeliver = nil
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.life, c.cancel = nil, nil
	if c.qr != nil && c.qr.started {
		c.qr.cancel() // stops the code emitter; the channel then closes
		c.qr = nil
	}
	c.mu.Unlock()
	c.client.Disconnect()
}
