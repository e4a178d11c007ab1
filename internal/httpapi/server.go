// Package httpapi is wagate's HTTP adapter: routes on Go's ServeMux,
// authentication, the error envelope, and JSON in and out. Use cases live in
// the domain packages; handlers only translate.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/wagate/wagate/internal/clients"
)

// ClientService is what the API needs of the clients use cases.
type ClientService interface {
	Create(ctx context.Context, name string) (clients.Client, string, error)
	List(ctx context.Context) ([]clients.Client, error)
	Get(ctx context.Context, id int64) (clients.Client, error)
	Delete(ctx context.Context, id int64) error
	RotateToken(ctx context.Context, id int64, revokeOthers bool) (string, error)
	Authenticate(ctx context.Context, token string) (clients.Client, error)
}

// Config wires the server to the rest of wagate.
type Config struct {
	Log          *slog.Logger
	Clients      ClientService
	AdminToken   string
	MaxBodyBytes int64
	// MaxMediaBodyBytes bounds the send route, whose body may carry a
	// base64 file; default 90 MiB (a 64 MiB document, encoded).
	MaxMediaBodyBytes int64
	RateLimit         float64 // requests per second per client
	RateBurst         int
	Version           string
	// Ready reports whether the node can serve (database reachable, schema current).
	Ready func(ctx context.Context) error
	// StopClient stops a client's sessions before the client is deleted.
	StopClient func(ctx context.Context, clientID int64) error
	// Observe is told about every request (metrics); optional.
	Observe RequestObserver
	// Extra mounts more routes (metrics, docs) on the same mux; optional.
	Extra func(mux *http.ServeMux)

	// The domain services; each route group is mounted only when its
	// service is set. Their interfaces live beside their handlers.
	Webhooks   WebhookService
	Sessions   SessionService
	Deliveries DeliveryService
}

// Server is the HTTP API.
type Server struct {
	log          *slog.Logger
	clients      ClientService
	adminToken   string
	maxBody      int64
	maxMediaBody int64
	limit        *limiter
	version      string
	ready        func(ctx context.Context) error
	stopClient   func(ctx context.Context, clientID int64) error
	observe      RequestObserver
	webhooks     WebhookService
	sessions     SessionService
	deliveries   DeliveryService
	mux          *http.ServeMux
	handler      http.Handler
	routes       []string // "METHOD /pattern" of every route, for Routes
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	s := &Server{
		log:          cfg.Log,
		clients:      cfg.Clients,
		adminToken:   cfg.AdminToken,
		maxBody:      cfg.MaxBodyBytes,
		maxMediaBody: cfg.MaxMediaBodyBytes,
		limit:        newLimiter(cfg.RateLimit, cfg.RateBurst),
		version:      cfg.Version,
		ready:        cfg.Ready,
		stopClient:   cfg.StopClient,
		observe:      cfg.Observe,
		webhooks:     cfg.Webhooks,
		sessions:     cfg.Sessions,
		deliveries:   cfg.Deliveries,
		mux:          http.NewServeMux(),
	}
	if s.maxBody == 0 {
		s.maxBody = 1 << 20
	}
	if s.maxMediaBody == 0 {
		s.maxMediaBody = 90 << 20
	}
	if s.limit.rate == 0 {
		s.limit = newLimiter(200, 400)
	}
	s.register()
	if cfg.Extra != nil {
		cfg.Extra(s.mux)
	}
	s.handler = s.outer(s.mux)
	return s
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Mux exposes the router, so tests can walk its patterns against the spec.
func (s *Server) Mux() *http.ServeMux { return s.mux }
