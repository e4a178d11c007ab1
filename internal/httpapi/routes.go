package httpapi

import (
	"net/http"

	"github.com/wagate/wagate/internal/errs"
)

// Routes lists every route as "METHOD /pattern". The OpenAPI consistency
// test compares it with the spec.
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

func (s *Server) handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.routes = appendOnce(s.routes, pattern)
}

func appendOnce(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

func (s *Server) register() {
	s.handle("GET /healthz", s.public(s.healthz))
	s.handle("GET /readyz", s.public(s.readyz))

	s.handle("POST /api/admin/clients", s.admin(s.createClient))
	s.handle("GET /api/admin/clients", s.admin(s.listClients))
	s.handle("GET /api/admin/clients/{id}", s.admin(s.getClient))
	s.handle("DELETE /api/admin/clients/{id}", s.admin(s.deleteClient))
	s.handle("POST /api/admin/clients/{id}/tokens", s.admin(s.rotateClientToken))

	s.handle("GET /api/me", s.client(s.me))

	if s.webhooks != nil {
		s.webhookRoutes()
	}
	if s.deliveries != nil {
		s.deliveryRoutes()
	}
	if s.sessions != nil {
		s.sessionRoutes()
	}

	// Anything else under /api is a JSON 404, not the mux's plain text.
	s.mux.Handle("/api/", s.public(func(w http.ResponseWriter, r *http.Request) error {
		return errs.E(errs.NotFound, "Cannot %s %s", r.Method, r.URL.Path)
	}))
}
