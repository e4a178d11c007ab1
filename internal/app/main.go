// Package app assembles wagate: configuration, storage, use cases and the
// HTTP server, behind one Main type that the CLI runs and tests start on :0.
package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wagate/wagate/internal/clients"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/httpapi"
	"github.com/wagate/wagate/internal/metrics"
	"github.com/wagate/wagate/internal/secretbox"
	"github.com/wagate/wagate/internal/sessions"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/webhooks"
)

// Main is one running wagate node.
type Main struct {
	Config *config.Config
	Log    *slog.Logger

	DB      *store.DB
	Clients *clients.Service
	API     *httpapi.Server

	// AdminToken is the token admin routes take (configured or generated).
	AdminToken string
	// NodeID names this node's delivery leases.
	NodeID string
	// Delivery is the webhook delivery engine; it is also the Publisher.
	Delivery  *delivery.Engine
	Publisher sessions.Publisher
	Webhooks  *webhooks.Service
	Secrets   *secretbox.Box
	// Metrics is this node's Prometheus registry and collectors.
	Metrics *metrics.Metrics
	// Sessions is the session manager: this node's live WhatsApp sessions.
	Sessions *sessions.Manager

	server   *http.Server
	listener net.Listener
	serveErr chan error
	closers  []func(context.Context) error
}

// NewLogger builds the process logger from the configuration.
func NewLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Open connects to the database and applies migrations. It is all that
// `wagate migrate` and the client subcommands need.
func (m *Main) Open(ctx context.Context) error {
	db, err := store.Open(ctx, m.Config.DatabaseURL, m.Config.DataDir, m.Log, store.Options{})
	if err != nil {
		return err
	}
	m.DB = db
	m.closers = append(m.closers, func(context.Context) error { return db.Close() })
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	m.Clients = clients.NewService(db)
	return nil
}

// Start opens everything and starts serving on Config.Addr. It returns once
// the listener is bound; Addr tells where.
func (m *Main) Start(ctx context.Context) error {
	if m.DB == nil {
		if err := m.Open(ctx); err != nil {
			return err
		}
	}
	tok, err := m.adminToken()
	if err != nil {
		return err
	}
	m.AdminToken = tok

	// Each part starts in dependency order and registers its own closer.
	for _, start := range []func(context.Context) error{m.startWebhooks, m.startDelivery, m.startSessions} {
		if err := start(ctx); err != nil {
			return err
		}
	}

	m.API = httpapi.New(httpapi.Config{
		Log:               m.Log,
		Clients:           m.Clients,
		AdminToken:        m.AdminToken,
		MaxBodyBytes:      m.Config.MaxBodyBytes,
		MaxMediaBodyBytes: m.Config.MaxMediaBody,
		RateLimit:         m.Config.RateLimit,
		RateBurst:         m.Config.RateBurst,
		Version:           Version(),
		Webhooks:          m.webhookService(),
		Deliveries:        m.deliveryService(),
		Sessions:          m.sessionService(),
		StopClient:        m.stopClient,
		Observe:           m.metrics().ObserveRequest,
		Extra:             m.mountExtra,
		Ready: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := m.DB.Ping(ctx); err != nil {
				return fmt.Errorf("database unreachable: %w", err)
			}
			return m.DB.CheckSchema(ctx)
		},
	})

	ln, err := net.Listen("tcp", m.Config.Addr)
	if err != nil {
		return fmt.Errorf("WAGATE_ADDR: %w", err)
	}
	m.listener = ln
	m.server = &http.Server{
		Handler:           m.API,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.Log.Handler(), slog.LevelWarn),
	}
	m.serveErr = make(chan error, 1)
	go func() { m.serveErr <- m.server.Serve(ln) }()
	m.Log.Info("wagate listening", "addr", ln.Addr().String(), "database", m.DB.Dialect(), "version", Version())
	return nil
}

// Addr is the bound listen address (useful with :0).
func (m *Main) Addr() string { return m.listener.Addr().String() }

// URL is the base URL of the server on loopback.
func (m *Main) URL() string {
	_, port, _ := net.SplitHostPort(m.Addr())
	return "http://127.0.0.1:" + port
}

// Wait blocks until the server stops on its own (an error) or ctx ends.
func (m *Main) Wait(ctx context.Context) error {
	select {
	case err := <-m.serveErr:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		return nil
	}
}

// Close stops accepting requests, lets in-flight ones finish within the
// grace period, then stops the rest in reverse order of start.
func (m *Main) Close(ctx context.Context) error {
	var errsOut []error
	if m.server != nil {
		sctx, cancel := context.WithTimeout(ctx, m.Config.ShutdownGrace)
		if err := m.server.Shutdown(sctx); err != nil {
			errsOut = append(errsOut, err)
		}
		cancel()
	}
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i](ctx); err != nil {
			errsOut = append(errsOut, err)
		}
	}
	m.closers = nil
	return errors.Join(errsOut...)
}

// adminToken returns WAGATE_ADMIN_TOKEN, or the token saved in the data
// directory, generating it on first start. Only its path is logged.
func (m *Main) adminToken() (string, error) {
	if m.Config.AdminToken != "" {
		return m.Config.AdminToken, nil
	}
	path := filepath.Join(m.Config.DataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(b)); len(tok) >= 16 {
			return tok, nil
		}
		return "", fmt.Errorf("%s: admin token file is empty or too short; delete it to generate a new one", path)
	} else if !os.IsNotExist(err) {
		return "", err
	}
	if err := os.MkdirAll(m.Config.DataDir, 0o700); err != nil {
		return "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "wga_" + base64.RawURLEncoding.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("save admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	abs, _ := filepath.Abs(path)
	m.Log.Warn("WAGATE_ADMIN_TOKEN is not set: generated an admin token", "path", abs)
	return tok, nil
}
