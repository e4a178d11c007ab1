package httpapi

// WebhookService is what the API needs of the webhooks use cases.
type WebhookService interface{}

func (s *Server) webhookRoutes() {}
