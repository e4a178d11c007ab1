package httpapi

// SessionService is what the API needs of the session manager.
type SessionService interface{}

func (s *Server) sessionRoutes() {}
