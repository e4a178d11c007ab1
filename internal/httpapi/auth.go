package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/wagate/wagate/internal/clients"
	"github.com/wagate/wagate/internal/errs"
)

// bearer extracts the token as the seed's TokenAuthGuard does: exactly
// "Bearer <token>", else no token at all.
func bearer(r *http.Request) string {
	parts := strings.Split(r.Header.Get("Authorization"), " ")
	if len(parts) != 2 || parts[0] != "Bearer" || parts[1] == "" {
		return ""
	}
	return parts[1]
}

// clientFrom returns the authenticated client of a request.
func clientFrom(ctx context.Context) clients.Client {
	c, _ := ctx.Value(keyClient).(clients.Client)
	return c
}

// client wraps a handler that needs an authenticated client, and applies
// that client's rate limit.
func (s *Server) client(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		if tok == "" {
			writeError(w, r, s.log, errs.E(errs.Unauthorized, "Token not found"))
			return
		}
		c, err := s.clients.Authenticate(r.Context(), tok)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if ok, wait := s.limit.allow(c.ID, time.Now()); !ok {
			w.Header().Set("Retry-After", retryAfterSeconds(wait))
			writeError(w, r, s.log, errs.E(errs.RateLimited, "Too many requests: retry after %s", retryAfterSeconds(wait)+"s"))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), keyClient, c))
		if err := h(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

// admin wraps an operator handler guarded by WAGATE_ADMIN_TOKEN.
func (s *Server) admin(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	want := sha256.Sum256([]byte(s.adminToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		if tok == "" {
			writeError(w, r, s.log, errs.E(errs.Unauthorized, "Token not found"))
			return
		}
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			writeError(w, r, s.log, errs.E(errs.Unauthorized, "Invalid token"))
			return
		}
		if err := h(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

// public wraps an unauthenticated handler.
func (s *Server) public(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}
