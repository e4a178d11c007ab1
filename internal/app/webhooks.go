package app

import (
	"context"

	"github.com/wagate/wagate/internal/httpapi"
)

// startWebhooks builds the secret box and the webhooks service.
func (m *Main) startWebhooks(ctx context.Context) error { return nil }

func (m *Main) webhookService() httpapi.WebhookService { return nil }
