package app

import (
	"context"

	"github.com/wagate/wagate/internal/httpapi"
)

// startDelivery starts the outbox workers.
func (m *Main) startDelivery(ctx context.Context) error { return nil }

func (m *Main) deliveryService() httpapi.DeliveryService { return nil }
