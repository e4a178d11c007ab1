// Package whatsmeow is wagate's real WhatsApp engine: it implements
// sessions.Engine on top of go.mau.fi/whatsmeow, keeping whatsmeow's device
// store (keys, sessions, LID map) in wagate's own database.
package whatsmeow

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCompanionReg"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/sessions"
)

// Options tunes the engine. The zero value is usable.
type Options struct {
	// OSName is shown on the phone's "Linked devices" list. Default "wagate".
	OSName string
	// Platform decides the icon on that list: a waCompanionReg.DeviceProps
	// platform name such as "DESKTOP" or "CHROME". Default "DESKTOP".
	Platform string
	// PairDisplayName is sent with pairing-code requests. WhatsApp only
	// accepts "Browser (OS)" pairs it knows. Default "Chrome (Linux)".
	PairDisplayName string
	// CommitTimeout bounds one Sink.Inbound call. Past it the event is not
	// acknowledged, so WhatsApp delivers it again. Default 30s.
	CommitTimeout time.Duration
	// RecentMessages is how many recent messages per session are kept in
	// memory so replies can quote them and reactions can address them
	// without Outbound.TargetSender. Default 500.
	RecentMessages int
}

func (o Options) withDefaults() Options {
	if o.OSName == "" {
		o.OSName = "wagate"
	}
	if o.Platform == "" {
		o.Platform = "DESKTOP"
	}
	if o.PairDisplayName == "" {
		o.PairDisplayName = "Chrome (Linux)"
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 30 * time.Second
	}
	if o.RecentMessages <= 0 {
		o.RecentMessages = 500
	}
	return o
}

// Engine opens whatsmeow connections for sessions. Safe for concurrent use.
type Engine struct {
	container *sqlstore.Container
	log       *slog.Logger
	opts      Options
}

var _ sessions.Engine = (*Engine)(nil)

// devicePropsOnce guards whatsmeow's device properties. They are package
// variables of whatsmeow (store.DeviceProps), read by every client of the
// process when it registers, so they can only be set once per process: the
// first New wins and later Options.OSName/Platform values are ignored.
var devicePropsOnce sync.Once

func setDeviceProps(osName, platform string) {
	devicePropsOnce.Do(func() {
		store.DeviceProps.Os = proto.String(osName)
		if v, ok := waCompanionReg.DeviceProps_PlatformType_value[strings.ToUpper(platform)]; ok {
			store.DeviceProps.PlatformType = waCompanionReg.DeviceProps_PlatformType(v).Enum()
		}
	})
}

// New creates the whatsmeow tables (whatsmeow_*) in db if needed and returns
// an engine storing its devices there. dialect is "sqlite" (modernc, whose
// DSN must enable foreign keys: _pragma=foreign_keys(1)) or "postgres"
// (pgx). db stays owned by the caller; the engine never closes it.
func New(ctx context.Context, db *sql.DB, dialect string, log *slog.Logger, opts Options) (*Engine, error) {
	if db == nil {
		return nil, errs.E(errs.Invalid, "whatsmeow: nil database")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var d string
	switch strings.ToLower(dialect) {
	case "sqlite", "sqlite3":
		d = "sqlite3"
	case "postgres", "postgresql", "pgx":
		d = "postgres"
	default:
		// sqlstore.NewWithDB panics on an unknown dialect; refuse it first.
		return nil, errs.E(errs.Invalid, "whatsmeow: unsupported database dialect %q", dialect)
	}
	opts = opts.withDefaults()
	setDeviceProps(opts.OSName, opts.Platform)

	container := sqlstore.NewWithDB(db, d, newWALogger(log, "Database"))
	if err := container.Upgrade(ctx); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "whatsmeow: preparing device store tables (SQLite needs foreign keys on)")
	}
	return &Engine{container: container, log: log, opts: opts}, nil
}

// Name is stored in the sessions' engine column.
func (e *Engine) Name() string { return "whatsmeow" }

// Container exposes the device store, for maintenance tools and tests.
func (e *Engine) Container() *sqlstore.Container { return e.container }

// Open loads the session's device (or creates an unlinked one) and builds
// its client. Nothing is dialled until Conn.Connect.
func (e *Engine) Open(ctx context.Context, s sessions.Session, sink sessions.Sink) (sessions.Conn, error) {
	if sink == nil {
		return nil, errs.E(errs.Invalid, "whatsmeow: nil sink")
	}
	log := e.log.With("session_id", s.ID)
	var dev *store.Device
	if s.JID != "" {
		jid, err := types.ParseJID(s.JID)
		if err == nil && (jid.User == "" || jid.Server != types.DefaultUserServer) {
			err = errors.New("not a phone-number device JID") // ParseJID is lenient
		}
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "stored WhatsApp id is malformed")
		}
		dev, err = e.container.GetDevice(ctx, jid)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "loading WhatsApp device")
		}
		if dev == nil {
			// Unlinked meanwhile (logout elsewhere, store wiped): a new scan is needed.
			log.Warn("whatsmeow device not found; session needs a new link", "jid", s.JID)
		}
	}
	if dev == nil {
		dev = e.container.NewDevice()
	}
	return newConn(ctx, dev, sink, log, e.opts), nil
}

// newConn builds the client and registers the event handler.
func newConn(ctx context.Context, dev *store.Device, sink sessions.Sink, log *slog.Logger, opts Options) *conn {
	cli := whatsmeow.NewClient(dev, newWALogger(log, "Client"))
	cli.EnableAutoReconnect = true
	// Acks go out only after our handler returned true, i.e. after the sink
	// committed: a crash in between makes WhatsApp deliver again.
	cli.SynchronousAck = true
	// A redelivered message can no longer be decrypted (the Signal ratchet
	// moved on); the buffer keeps its plaintext until it was handled.
	cli.EnableDecryptedEventBuffer = true
	// Ask the phone for messages this device could not decrypt.
	cli.AutomaticMessageRerequestFromPhone = true
	c := &conn{
		client: cli,
		sink:   sink,
		log:    log,
		opts:   opts,
		base:   context.WithoutCancel(ctx),
		recent: newRecent(opts.RecentMessages),
	}
	cli.BackgroundEventCtx = c.base
	// With a success status, a false return (sink commit failed) makes
	// whatsmeow skip the ack/receipt of that message or receipt node, so the
	// server keeps it and redelivers it on the next connection.
	cli.AddEventHandlerWithSuccessStatus(c.handle)
	return c
}
