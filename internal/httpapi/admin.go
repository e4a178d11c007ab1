package httpapi

import (
	"net/http"

	"github.com/wagate/wagate/internal/clients"
	"github.com/wagate/wagate/internal/errs"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.version})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.ready != nil {
		if err := s.ready(r.Context()); err != nil {
			s.log.Warn("not ready", "err", err)
			return errs.Wrap(errs.Unavailable, err, "not ready: "+err.Error())
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

type createClientRequest struct {
	Name string `json:"name"`
}

type clientWithToken struct {
	clients.Client
	Token string `json:"token"`
}

func (s *Server) createClient(w http.ResponseWriter, r *http.Request) error {
	var req createClientRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	c, tok, err := s.clients.Create(r.Context(), req.Name)
	if err != nil {
		return err
	}
	s.log.Info("client created", "client_id", c.ID)
	writeJSON(w, http.StatusCreated, clientWithToken{Client: c, Token: tok})
	return nil
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) error {
	list, err := s.clients.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": list})
	return nil
}

func (s *Server) getClient(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id", "client")
	if err != nil {
		return err
	}
	c, err := s.clients.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *Server) deleteClient(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id", "client")
	if err != nil {
		return err
	}
	if _, err := s.clients.Get(r.Context(), id); err != nil {
		return err
	}
	if s.stopClient != nil {
		if err := s.stopClient(r.Context(), id); err != nil {
			return err
		}
	}
	if err := s.clients.Delete(r.Context(), id); err != nil {
		return err
	}
	s.log.Info("client deleted", "client_id", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) rotateClientToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id", "client")
	if err != nil {
		return err
	}
	revoke, err := queryBool(r, "revoke_others")
	if err != nil {
		return err
	}
	tok, err := s.clients.RotateToken(r.Context(), id, revoke)
	if err != nil {
		return err
	}
	s.log.Info("client token issued", "client_id", id, "revoked_others", revoke)
	writeJSON(w, http.StatusCreated, map[string]any{"client_id": id, "token": tok, "revoked_others": revoke})
	return nil
}

// me lets a client check its token.
func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, clientFrom(r.Context()))
	return nil
}
