package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
)

// Options configure a Manager. Store, Publisher and at least one engine are
// required; the rest has defaults.
type Options struct {
	Store     Store
	Publisher Publisher
	Engines   []Engine
	// DefaultEngine is used when a connect names none (WAGATE_ENGINE).
	// Default: the first engine.
	DefaultEngine string
	Log           *slog.Logger
	// Now is the clock; tests stub it. Default time.Now.
	Now func() time.Time

	// QRWait bounds how long connect waits for the engine's first QR code.
	// Default 20s.
	QRWait time.Duration
	// HTTPClient downloads media_url. It must be SSRF-guarded (see
	// internal/ssrf). Default: a guarded client that refuses every
	// non-public address.
	HTTPClient *http.Client
	// MediaTimeout bounds one media download. Default 30s.
	MediaTimeout time.Duration
	// MaxMediaBytes bounds images, videos and audio (default 16 MiB);
	// MaxDocumentBytes bounds documents (default 64 MiB).
	MaxMediaBytes    int64
	MaxDocumentBytes int64
	// IdempotencyTTL is how long Idempotency-Keys are remembered. Default 24h.
	IdempotencyTTL time.Duration
	// IdempotencyStale is when an unfinished send's key is taken over,
	// presumed abandoned by a crash. Default 5m.
	IdempotencyStale time.Duration
	// ResumeConcurrency bounds the sessions Resume starts at once. Default 8.
	ResumeConcurrency int
	// StopTimeout bounds the best-effort logouts of Delete and StopClient.
	// Default 10s.
	StopTimeout time.Duration

	// Sealer seals the media references of inbound messages before they
	// are stored (they hold the files' decryption keys) and opens them for
	// Media; *secretbox.Box is one. nil stores them as they are (tests).
	Sealer Sealer
	// MaxDownloadBytes bounds a file Media returns (it is held in memory).
	// Default 64 MiB.
	MaxDownloadBytes int64
	// DownloadTimeout bounds one Media download. Default 90s.
	DownloadTimeout time.Duration
	// MaxDownloads bounds the Media downloads running at once on this
	// node, and so the memory they hold; more wait. Default 4.
	MaxDownloads int
}

// Sealer encrypts values at rest.
type Sealer interface {
	Seal(plain []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// Manager owns the live sessions of this node: it applies the seed's
// connect contract, starts and stops connections through the engines,
// records their state in the store and publishes what they receive.
//
// Ownership is explicit (Start and Stop of one session), so that assigning
// sessions to nodes can be added on top later. Safe for concurrent use.
type Manager struct {
	store   Store
	pub     Publisher
	engines map[string]Engine
	names   []string
	def     string
	log     *slog.Logger
	now     func() time.Time
	opts    Options
	http    *http.Client
	// downloads is a semaphore of Media downloads (Options.MaxDownloads).
	downloads chan struct{}

	locks keyedMutex // per session id, and per client user for connect

	mu     sync.Mutex
	live   map[string]*live
	closed bool

	stop chan struct{}
	done chan struct{}
}

// NewManager builds a manager and starts its housekeeping (pruning old
// idempotency keys). Close stops it.
func NewManager(o Options) (*Manager, error) {
	if o.Store == nil || o.Publisher == nil || len(o.Engines) == 0 {
		return nil, errors.New("sessions: Store, Publisher and an engine are required")
	}
	m := &Manager{
		store:   o.Store,
		pub:     o.Publisher,
		engines: map[string]Engine{},
		log:     o.Log,
		now:     o.Now,
		live:    map[string]*live{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, e := range o.Engines {
		if _, dup := m.engines[e.Name()]; dup {
			return nil, fmt.Errorf("sessions: engine %q registered twice", e.Name())
		}
		m.engines[e.Name()] = e
		m.names = append(m.names, e.Name())
	}
	m.def = o.DefaultEngine
	if m.def == "" {
		m.def = m.names[0]
	}
	if _, ok := m.engines[m.def]; !ok {
		return nil, fmt.Errorf("sessions: default engine %q is not enabled (enabled: %s)", m.def, strings.Join(m.names, ", "))
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.QRWait, 20*time.Second)
	def(&o.MediaTimeout, 30*time.Second)
	def(&o.IdempotencyTTL, 24*time.Hour)
	def(&o.IdempotencyStale, 5*time.Minute)
	def(&o.StopTimeout, 10*time.Second)
	if o.MaxMediaBytes <= 0 {
		o.MaxMediaBytes = 16 << 20
	}
	if o.MaxDocumentBytes <= 0 {
		o.MaxDocumentBytes = 64 << 20
	}
	if o.ResumeConcurrency <= 0 {
		o.ResumeConcurrency = 8
	}
	def(&o.DownloadTimeout, 90*time.Second)
	if o.MaxDownloadBytes <= 0 {
		o.MaxDownloadBytes = 64 << 20
	}
	if o.MaxDownloads <= 0 {
		o.MaxDownloads = 4
	}
	m.downloads = make(chan struct{}, o.MaxDownloads)
	m.opts = o
	m.http = o.HTTPClient
	if m.http == nil {
		m.http = defaultMediaClient()
	}
	go m.housekeeping()
	return m, nil
}

func (m *Manager) housekeeping() {
	defer close(m.done)
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			n, err := m.store.PruneOutbound(ctx, m.now().Add(-m.opts.IdempotencyTTL))
			cancel()
			if err != nil {
				m.log.Warn("pruning idempotency keys", "err", err)
			} else if n > 0 {
				m.log.Debug("pruned idempotency keys", "count", n)
			}
		}
	}
}

// Close stops every session of this node (their links are kept, so the
// next start resumes them) and the housekeeping.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	all := make([]*live, 0, len(m.live))
	for _, l := range m.live {
		all = append(all, l)
	}
	m.live = map[string]*live{}
	m.mu.Unlock()
	close(m.stop)
	var wg sync.WaitGroup
	for _, l := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.detach()
			l.conn.Close()
		}()
	}
	wg.Wait()
	<-m.done
	m.log.Info("sessions stopped", "count", len(all))
	return nil
}

// live is one session this node runs. It is the Sink of its connection;
// once detached (stopped, replaced) it ignores the connection's state and
// QR reports, while inbound events are still stored.
type live struct {
	m    *Manager
	id   string
	conn Conn

	stateMu sync.Mutex // serialises state changes: row write, then event

	mu       sync.Mutex
	sess     Session
	qr       string
	changed  chan struct{} // closed and replaced at every state or QR change
	detached bool
}

func (l *live) snapshot() (Session, string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess, l.qr, l.detached
}

// notifyLocked wakes whoever waits for a change; l.mu must be held.
func (l *live) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *live) detach() {
	l.mu.Lock()
	if !l.detached {
		l.detached = true
		l.notifyLocked()
	}
	l.mu.Unlock()
}

// Inbound implements Sink: events are published durably; an error tells
// the engine not to acknowledge them.
func (l *live) Inbound(ctx context.Context, evs ...events.Inbound) error {
	if len(evs) == 0 {
		return nil
	}
	sess, _, _ := l.snapshot()
	if l.m.log.Enabled(ctx, slog.LevelDebug) {
		// The seed's monitoring line, per message: debug, as batches are large.
		for _, ev := range evs {
			if ev.Type == events.TypeMessage {
				l.m.log.Debug(fmt.Sprintf("Received message event: userId=%s, messageId=%s, from=%s", sess.UserID, ev.MessageID, ev.From),
					"session_id", sess.ID)
			}
		}
	}
	evs, err := l.m.sealMedia(sess.Engine, evs)
	if err != nil {
		l.m.log.Error("sealing media references failed", "session_id", l.id, "err", err)
		return err
	}
	n, err := l.m.pub.Publish(ctx, sess, evs)
	if err != nil {
		l.m.log.Error("storing inbound events failed", "session_id", l.id, "count", len(evs), "err", err)
		return err
	}
	if n < len(evs) {
		l.m.log.Debug("inbound events already stored", "session_id", l.id, "duplicates", len(evs)-n)
	}
	return nil
}

// State implements Sink.
func (l *live) State(ctx context.Context, st State) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	cur, _, detached := l.snapshot()
	if detached {
		return
	}
	sess, changed, err := l.m.writeState(ctx, cur, st)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.sess = sess
	if st.Status == StatusConnected || st.Status == StatusLoggedOut {
		l.qr = "" // pairing is over
	}
	l.notifyLocked()
	l.mu.Unlock()
	if changed {
		l.m.log.Info("session status", "session_id", l.id, "status", st.Status, "reason", st.Reason)
	}
}

// QR implements Sink.
func (l *live) QR(ctx context.Context, code string) {
	l.mu.Lock()
	if l.detached {
		l.mu.Unlock()
		return
	}
	l.qr = code
	sess := l.sess
	l.notifyLocked()
	l.mu.Unlock()
	if code == "" {
		return
	}
	l.m.publishSession(ctx, sess, events.Inbound{Type: events.TypeSessionQR, Kind: "qr", Content: code})
}

// writeState records a state change in the row and publishes a
// session.status event. A state equal to the stored one is not written.
func (m *Manager) writeState(ctx context.Context, cur Session, st State) (Session, bool, error) {
	jid := cur.JID
	switch st.Status {
	case StatusConnected:
		if st.JID != "" {
			jid = st.JID
		}
	case StatusLoggedOut:
		jid = "" // unlinked: a new scan makes a new device
	}
	if st.Status == cur.Status && st.Reason == cur.Reason && jid == cur.JID {
		return cur, false, nil
	}
	// The engine's context may end with the request that caused the change;
	// the change happened all the same.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	sess, err := m.store.SetSessionState(wctx, cur.ID, st.Status, st.Reason, jid)
	if err != nil {
		m.log.Error("recording session state failed", "session_id", cur.ID, "status", st.Status, "err", err)
		return cur, false, err
	}
	md := map[string]any{"reason": st.Reason}
	if jid != "" {
		md["jid"] = jid
	}
	m.publishSession(wctx, sess, events.Inbound{Type: events.TypeSessionStatus, Kind: string(st.Status), Content: st.Reason, Metadata: md})
	return sess, true, nil
}

// publishSession publishes a session event. They are informational: a
// failure is logged, not returned.
func (m *Manager) publishSession(ctx context.Context, sess Session, ev events.Inbound) {
	ev.To = sess.PhoneNumber
	if ev.Timestamp.IsZero() {
		ev.Timestamp = m.now()
	}
	if _, err := m.pub.Publish(ctx, sess, []events.Inbound{ev}); err != nil {
		m.log.Warn("publishing session event failed", "session_id", sess.ID, "type", ev.Type, "err", err)
	}
}

func (m *Manager) getLive(id string) *live {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live[id]
}

// takeLive removes a session from this node's live set and detaches it.
func (m *Manager) takeLive(id string) *live {
	m.mu.Lock()
	l := m.live[id]
	delete(m.live, id)
	m.mu.Unlock()
	if l != nil {
		l.detach()
	}
	return l
}

// Start makes this node run a session: it opens and connects the
// session's connection. Starting a session that already runs here is a
// no-op.
func (m *Manager) Start(ctx context.Context, id string) error {
	unlock := m.locks.Lock(id)
	defer unlock()
	sess, err := m.store.GetSession(ctx, id)
	if err != nil {
		return err
	}
	_, err = m.startLocked(ctx, sess)
	return err
}

// Stop makes this node release a session: its connection is closed and
// its link kept, so it can be started again here or elsewhere.
func (m *Manager) Stop(ctx context.Context, id string) error {
	unlock := m.locks.Lock(id)
	defer unlock()
	m.stopLocked(id)
	return nil
}

func (m *Manager) stopLocked(id string) {
	if l := m.takeLive(id); l != nil && l.conn != nil {
		l.conn.Close()
	}
}

// startLocked runs a session; the caller holds its lock. The row is marked
// reconnecting before the engine starts, and disconnected when it fails.
func (m *Manager) startLocked(ctx context.Context, sess Session) (*live, error) {
	if l := m.getLive(sess.ID); l != nil {
		return l, nil
	}
	// The caller's copy may predate the lock.
	sess, err := m.store.GetSession(ctx, sess.ID)
	if err != nil {
		return nil, err
	}
	eng, ok := m.engines[sess.Engine]
	if !ok {
		err := errs.E(errs.Unavailable, "engine %q is not enabled on this server", sess.Engine)
		m.writeState(ctx, sess, State{Status: StatusDisconnected, Reason: "engine_unavailable"})
		return nil, err
	}
	sess, _, err = m.writeState(ctx, sess, State{Status: StatusReconnecting, Reason: "starting"})
	if err != nil {
		return nil, err
	}
	l := &live{m: m, id: sess.ID, sess: sess, changed: make(chan struct{})}
	conn, err := eng.Open(ctx, sess, l)
	if err == nil {
		// Listed before Connect, which may already report a QR code or a
		// connection that the API must find.
		l.conn = conn
		m.mu.Lock()
		if m.closed {
			err = errs.E(errs.Unavailable, "server is shutting down")
		} else {
			m.live[sess.ID] = l
		}
		m.mu.Unlock()
	}
	if err == nil {
		err = conn.Connect(ctx)
	}
	if err != nil {
		if m.getLive(sess.ID) == l {
			m.takeLive(sess.ID)
		}
		l.detach()
		if conn != nil {
			conn.Close()
		}
		cur, _, _ := l.snapshot()
		m.writeState(ctx, cur, State{Status: StatusDisconnected, Reason: "start_failed: " + errMessage(err)})
		m.log.Warn("starting session failed", "session_id", sess.ID, "engine", sess.Engine, "err", err)
		if errs.CodeOf(err) == errs.Internal {
			err = errs.Wrap(errs.Unavailable, err, "could not start the WhatsApp session")
		}
		return nil, err
	}
	m.log.Info("session started", "session_id", sess.ID, "engine", sess.Engine, "linked", sess.JID != "")
	return l, nil
}

// errMessage is the safe part of an error for a status reason.
func errMessage(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// Resume starts every session that was linked and not logged out: what a
// node does when it boots. A session that fails to start is recorded as
// disconnected and does not stop the others.
func (m *Manager) Resume(ctx context.Context) error {
	list, err := m.store.ResumableSessions(ctx)
	if err != nil {
		return fmt.Errorf("listing sessions to resume: %w", err)
	}
	sem := make(chan struct{}, m.opts.ResumeConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for _, s := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := m.Start(ctx, s.ID); err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	m.log.Info("sessions resumed", "count", len(list)-failed, "failed", failed)
	return nil
}

// owned returns a session of a client; another client's session does not
// exist for it.
func (m *Manager) owned(ctx context.Context, clientID int64, id string) (Session, error) {
	if id == "" || len(id) > 64 {
		return Session{}, errs.E(errs.NotFound, "session not found")
	}
	s, err := m.store.GetSession(ctx, id)
	if err != nil {
		return Session{}, err
	}
	if s.ClientID != clientID {
		return Session{}, errs.E(errs.NotFound, "session not found")
	}
	return s, nil
}

func (m *Manager) info(s Session) Info {
	in := Info{Session: s}
	if l := m.getLive(s.ID); l != nil {
		_, qr, _ := l.snapshot()
		in.QRPending = qr != ""
	}
	return in
}

// Connect is the seed's connect: one session per user of a client. A user
// whose session is connected gets SESSION_EXISTS; one whose session is not
// gets that session back with a fresh QR; a new user gets a new row,
// written before the engine starts.
func (m *Manager) Connect(ctx context.Context, clientID int64, req ConnectRequest) (ConnectResult, error) {
	if strings.TrimSpace(req.UserID) == "" || strings.TrimSpace(req.PhoneNumber) == "" {
		return ConnectResult{}, errs.E(errs.Invalid, "Invalid params")
	}
	userID, err := validateUserID(req.UserID)
	if err != nil {
		return ConnectResult{}, err
	}
	phone, err := NormalizePhone("phone_number", req.PhoneNumber)
	if err != nil {
		return ConnectResult{}, err
	}
	engine := strings.ToLower(strings.TrimSpace(req.Engine))
	if engine != "" {
		if _, ok := m.engines[engine]; !ok {
			return ConnectResult{}, errs.E(errs.Invalid, "engine %q is not available on this server (available: %s)", engine, strings.Join(m.names, ", "))
		}
	}

	unlockUser := m.locks.Lock("user:" + strconv.FormatInt(clientID, 10) + ":" + userID)
	defer unlockUser()
	sess, err := m.store.SessionByUser(ctx, clientID, userID)
	switch {
	case errs.Is(err, errs.NotFound):
		if engine == "" {
			engine = m.def
		}
		sess, err = m.store.CreateSession(ctx, Session{ClientID: clientID, UserID: userID, PhoneNumber: phone,
			Status: StatusReconnecting, Engine: engine})
		if errs.Is(err, errs.Conflict) {
			// Another node created it meanwhile: that one is the session.
			return ConnectResult{}, errs.E(errs.Conflict, "a connect for this user is in progress; retry")
		}
		if err != nil {
			return ConnectResult{}, err
		}
		m.log.Info(fmt.Sprintf("Created DB session record for clientId=%d, userId=%s before starting the engine", clientID, userID),
			"session_id", sess.ID, "engine", engine)
	case err != nil:
		return ConnectResult{}, err
	case sess.Status == StatusConnected:
		return ConnectResult{}, errs.E(errs.SessionExists, "Sessão já existente")
	default:
		if sess, err = m.reuse(ctx, sess, phone, engine); err != nil {
			return ConnectResult{}, err
		}
	}
	return m.restart(ctx, sess)
}

// reuse prepares a user's existing, not connected session for a new
// pairing. A changed phone number or engine drops the old link: it belongs
// to another phone or another engine.
func (m *Manager) reuse(ctx context.Context, sess Session, phone, engine string) (Session, error) {
	if engine == "" {
		engine = sess.Engine
		if _, ok := m.engines[engine]; !ok {
			engine = m.def // its engine was disabled since
		}
	}
	if phone == sess.PhoneNumber && engine == sess.Engine {
		return sess, nil
	}
	unlock := m.locks.Lock(sess.ID)
	defer unlock()
	if sess.JID != "" {
		m.logoutLocked(ctx, sess)
	} else {
		m.stopLocked(sess.ID)
	}
	sess.PhoneNumber, sess.Engine, sess.JID = phone, engine, ""
	sess.Status, sess.Reason = StatusReconnecting, "reconnect"
	return m.store.UpdateSession(ctx, sess)
}

// restart (re)starts a session so it pairs anew, and waits for its first
// QR code or its connection.
func (m *Manager) restart(ctx context.Context, sess Session) (ConnectResult, error) {
	unlock := m.locks.Lock(sess.ID)
	m.stopLocked(sess.ID)
	l, err := m.startLocked(ctx, sess)
	unlock()
	if err != nil {
		return ConnectResult{}, err
	}
	st, qr := m.awaitPairing(ctx, l)
	res := ConnectResult{Status: StatusReconnecting, QRCode: qr, SessionID: sess.ID}
	if st == StatusConnected {
		res.Status = StatusConnected
	}
	return res, nil
}

// awaitPairing waits until a session has a QR code to show or is no longer
// starting, at most QRWait.
func (m *Manager) awaitPairing(ctx context.Context, l *live) (Status, string) {
	timer := time.NewTimer(m.opts.QRWait)
	defer timer.Stop()
	for {
		l.mu.Lock()
		st, qr, ch, detached := l.sess.Status, l.qr, l.changed, l.detached
		l.mu.Unlock()
		if qr != "" || st != StatusReconnecting || detached {
			return st, qr
		}
		select {
		case <-ch:
		case <-timer.C:
			return st, qr
		case <-ctx.Done():
			return st, qr
		}
	}
}

// Get returns one of a client's sessions.
func (m *Manager) Get(ctx context.Context, clientID int64, id string) (Info, error) {
	s, err := m.owned(ctx, clientID, id)
	if err != nil {
		return Info{}, err
	}
	return m.info(s), nil
}

// List pages through a client's sessions (limit 1..100).
func (m *Manager) List(ctx context.Context, clientID int64, cursor string, limit int) ([]Info, string, error) {
	if limit < 1 || limit > 100 {
		return nil, "", errs.E(errs.Invalid, "limit must be between 1 and 100")
	}
	page, next, err := m.store.ListSessions(ctx, clientID, cursor, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]Info, len(page))
	for i, s := range page {
		out[i] = m.info(s)
	}
	return out, next, nil
}

// QR returns the QR code waiting to be scanned.
func (m *Manager) QR(ctx context.Context, clientID int64, id string) (string, error) {
	s, err := m.owned(ctx, clientID, id)
	if err != nil {
		return "", err
	}
	if l := m.getLive(id); l != nil {
		if _, qr, _ := l.snapshot(); qr != "" {
			return qr, nil
		}
	}
	if s.Status == StatusConnected {
		return "", errs.E(errs.NotFound, "no QR code is pending: the session is already connected")
	}
	return "", errs.E(errs.NotFound, "no QR code is pending: start pairing with POST /api/whatsapp/connect or /reconnect")
}

// PairCode asks for a code to type on the phone instead of scanning a QR.
// phone defaults to the session's number.
func (m *Manager) PairCode(ctx context.Context, clientID int64, id, phone string) (string, error) {
	s, err := m.owned(ctx, clientID, id)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(phone) == "" {
		phone = s.PhoneNumber
	}
	if phone, err = NormalizePhone("phone_number", phone); err != nil {
		return "", err
	}
	if s.Status == StatusConnected {
		return "", errs.E(errs.Conflict, "session is already linked")
	}
	unlock := m.locks.Lock(id)
	l, err := m.startLocked(ctx, s)
	unlock()
	if err != nil {
		return "", err
	}
	return l.conn.PairPhone(ctx, phone)
}

// Reconnect restarts a session: a linked one reconnects, an unlinked one
// starts pairing with a fresh QR code.
func (m *Manager) Reconnect(ctx context.Context, clientID int64, id string) (ConnectResult, error) {
	s, err := m.owned(ctx, clientID, id)
	if err != nil {
		return ConnectResult{}, err
	}
	return m.restart(ctx, s)
}

// Logout unlinks a session from the phone; it must be paired again.
func (m *Manager) Logout(ctx context.Context, clientID int64, id string) (Info, error) {
	if _, err := m.owned(ctx, clientID, id); err != nil {
		return Info{}, err
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	// Read again under the lock: the state may have changed meanwhile.
	s, err := m.store.GetSession(ctx, id)
	if err != nil {
		return Info{}, err
	}
	if err := m.logoutLocked(ctx, s); err != nil {
		cur, _ := m.store.GetSession(ctx, id)
		m.writeState(ctx, cur, State{Status: StatusDisconnected, Reason: "logout_failed: " + errMessage(err)})
		return Info{}, err
	}
	cur, err := m.store.GetSession(ctx, id)
	if err != nil {
		return Info{}, err
	}
	cur, _, err = m.writeState(ctx, cur, State{Status: StatusLoggedOut, Reason: "logout"})
	if err != nil {
		return Info{}, err
	}
	m.log.Info("session logged out", "session_id", id)
	return m.info(cur), nil
}

// logoutLocked stops a session and unlinks its device, opening a
// connection just for that when the session does not run here.
func (m *Manager) logoutLocked(ctx context.Context, s Session) error {
	l := m.takeLive(s.ID)
	var conn Conn
	if l != nil {
		conn = l.conn
	}
	if conn == nil {
		if s.JID == "" {
			return nil // never linked: nothing to undo
		}
		eng, ok := m.engines[s.Engine]
		if !ok {
			return errs.E(errs.Unavailable, "engine %q is not enabled on this server", s.Engine)
		}
		c, err := eng.Open(ctx, s, discardSink{})
		if err != nil {
			return err
		}
		conn = c
	}
	defer conn.Close()
	return conn.Logout(ctx)
}

// Delete logs a session out (best effort), stops it and deletes its row.
func (m *Manager) Delete(ctx context.Context, clientID int64, id string) error {
	if _, err := m.owned(ctx, clientID, id); err != nil {
		return err
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	s, err := m.store.GetSession(ctx, id)
	if err != nil {
		return err
	}
	m.logoutBestEffort(ctx, s)
	if err := m.store.DeleteSession(ctx, id); err != nil {
		return err
	}
	m.log.Info("session deleted", "session_id", id)
	return nil
}

func (m *Manager) logoutBestEffort(ctx context.Context, s Session) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.StopTimeout)
	defer cancel()
	if s.Status == StatusLoggedOut {
		m.stopLocked(s.ID)
		return
	}
	if err := m.logoutLocked(lctx, s); err != nil {
		m.log.Warn("logout failed; the phone may still list the device", "session_id", s.ID, "err", err)
	}
}

// StopClient stops every session of a client that is being deleted. Their
// rows go with the client, so their devices are unlinked too (best effort):
// nothing could ever resume them.
func (m *Manager) StopClient(ctx context.Context, clientID int64) error {
	list, err := m.store.ClientSessions(ctx, clientID)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, s := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := m.locks.Lock(s.ID)
			defer unlock()
			if cur, err := m.store.GetSession(ctx, s.ID); err == nil {
				s = cur
			}
			m.logoutBestEffort(ctx, s)
		}()
	}
	wg.Wait()
	return nil
}

// connected returns the live connection of a connected session.
func (m *Manager) connected(s Session) (*live, error) {
	l := m.getLive(s.ID)
	if l == nil {
		return nil, errs.E(errs.NotConnected, "session is not connected (status %s)", s.Status)
	}
	cur, _, _ := l.snapshot()
	if cur.Status != StatusConnected || l.conn == nil {
		return nil, errs.E(errs.NotConnected, "session is not connected (status %s)", cur.Status)
	}
	return l, nil
}

// MarkRead marks messages of a chat as read.
func (m *Manager) MarkRead(ctx context.Context, clientID int64, id string, req ReadRequest) error {
	s, err := m.owned(ctx, clientID, id)
	if err != nil {
		return err
	}
	chat, err := NormalizeRecipient("chat", req.Chat)
	if err != nil {
		return err
	}
	sender := ""
	if strings.TrimSpace(req.Sender) != "" {
		if sender, err = NormalizeRecipient("sender", req.Sender); err != nil {
			return err
		}
	}
	if len(req.MessageIDs) == 0 || len(req.MessageIDs) > MaxBatch {
		return errs.E(errs.Invalid, "message_ids must hold 1 to %d ids", MaxBatch)
	}
	for _, mid := range req.MessageIDs {
		if !ValidMessageID(mid) {
			return errs.E(errs.Invalid, "message_ids: %q is not a message id", mid)
		}
	}
	l, err := m.connected(s)
	if err != nil {
		return err
	}
	return l.conn.MarkRead(ctx, chat, sender, req.MessageIDs)
}

// simulator returns the live connection of a sandbox session.
func (m *Manager) simulator(ctx context.Context, clientID int64, id string) (Session, Simulator, error) {
	s, err := m.owned(ctx, clientID, id)
	if err != nil {
		return s, nil, err
	}
	if _, ok := m.engines[s.Engine].(SimulatorEngine); !ok {
		return s, nil, errs.E(errs.NotFound, "not a sandbox session: these routes only exist for sessions with engine sandbox")
	}
	l := m.getLive(id)
	if l == nil || l.conn == nil {
		return s, nil, errs.E(errs.NotConnected, "session is not started (status %s): connect or reconnect it first", s.Status)
	}
	sim, ok := l.conn.(Simulator)
	if !ok {
		return s, nil, errs.E(errs.NotFound, "not a sandbox session")
	}
	return s, sim, nil
}

// SandboxScan links a sandbox session, as scanning its QR code would.
func (m *Manager) SandboxScan(ctx context.Context, clientID int64, id string) (Info, error) {
	_, sim, err := m.simulator(ctx, clientID, id)
	if err != nil {
		return Info{}, err
	}
	if err := sim.Scan(ctx); err != nil {
		return Info{}, err
	}
	s, err := m.store.GetSession(ctx, id)
	if err != nil {
		return Info{}, err
	}
	return m.info(s), nil
}

// SandboxInject injects inbound messages into a sandbox session, published
// in one batch.
func (m *Manager) SandboxInject(ctx context.Context, clientID int64, id string, msgs []SimMessage) ([]string, error) {
	if len(msgs) == 0 || len(msgs) > MaxBatch {
		return nil, errs.E(errs.Invalid, "messages must hold 1 to %d messages", MaxBatch)
	}
	_, sim, err := m.simulator(ctx, clientID, id)
	if err != nil {
		return nil, err
	}
	return sim.InjectMessages(ctx, msgs)
}

// SandboxReceipts injects delivery, read or played receipts.
func (m *Manager) SandboxReceipts(ctx context.Context, clientID int64, id string, r SimReceipts) ([]string, error) {
	if len(r.MessageIDs) == 0 || len(r.MessageIDs) > MaxBatch {
		return nil, errs.E(errs.Invalid, "message_ids must hold 1 to %d ids", MaxBatch)
	}
	_, sim, err := m.simulator(ctx, clientID, id)
	if err != nil {
		return nil, err
	}
	return sim.InjectReceipts(ctx, r)
}

// SandboxSent lists what a sandbox session sent (most recent last).
func (m *Manager) SandboxSent(ctx context.Context, clientID int64, id string) ([]SentMessage, error) {
	s, err := m.owned(ctx, clientID, id)
	if err != nil {
		return nil, err
	}
	eng, ok := m.engines[s.Engine].(SimulatorEngine)
	if !ok {
		return nil, errs.E(errs.NotFound, "not a sandbox session: these routes only exist for sessions with engine sandbox")
	}
	return eng.Sent(id), nil
}

// discardSink serves connections opened only to log out.
type discardSink struct{}

func (discardSink) Inbound(context.Context, ...events.Inbound) error {
	return errs.E(errs.Unavailable, "session is being logged out")
}
func (discardSink) State(context.Context, State) {}
func (discardSink) QR(context.Context, string)   {}
