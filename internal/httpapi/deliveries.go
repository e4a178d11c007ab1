package httpapi

// DeliveryService is what the API needs of the delivery engine: the events
// API, retries, recovery and test events.
type DeliveryService interface{}

func (s *Server) deliveryRoutes() {}
