package app

import (
	"context"
	"fmt"

	"github.com/wagate/wagate/internal/httpapi"
	"github.com/wagate/wagate/internal/secretbox"
	"github.com/wagate/wagate/internal/ssrf"
	"github.com/wagate/wagate/internal/webhooks"
)

// startWebhooks builds the secret box and the webhooks service, and checks
// the key opens the secrets already stored.
func (m *Main) startWebhooks(ctx context.Context) error {
	key, err := secretbox.LoadOrCreateKey(m.Config.DataDir, m.Config.SecretKey, m.Log)
	if err != nil {
		return err
	}
	box, err := secretbox.New(key)
	if err != nil {
		return fmt.Errorf("%s: %w", secretbox.EnvKey, err)
	}
	if m.Config.DatabaseURL != "" && m.Config.SecretKey == "" {
		// Every node must seal and open with the same key; a per-node key
		// file only works for a single node.
		m.Log.Warn("PostgreSQL is shared but WAGATE_SECRET_KEY is not set: every node needs the same key; copy secret.key's content into WAGATE_SECRET_KEY on all nodes")
	}
	grace := m.Config.SecretGracePeriod
	if grace == 0 {
		grace = -1 // configured as none: the service reads 0 as "default"
	}
	svc := webhooks.NewService(m.DB, box, ssrf.New(m.Config.WebhookAllowCIDRs), webhooks.Options{
		Log:         m.Log.With("component", "webhooks"),
		GracePeriod: grace,
		// The delivery engine caches webhooks; changes must reach it at once.
		OnChange: func(id string) {
			if m.Delivery != nil {
				m.Delivery.Invalidate(id)
			}
		},
	})
	if err := svc.CheckKey(ctx); err != nil {
		return err
	}
	m.Secrets, m.Webhooks = box, svc
	return nil
}

// webhookService returns an untyped nil when unset, so the API sees a nil
// interface and mounts no webhook routes.
func (m *Main) webhookService() httpapi.WebhookService {
	if m.Webhooks == nil {
		return nil
	}
	return m.Webhooks
}
