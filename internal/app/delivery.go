package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/httpapi"
	"github.com/wagate/wagate/internal/ssrf"
	"github.com/wagate/wagate/internal/store"
)

// startDelivery starts the outbox workers; the engine is also the
// Publisher the sessions write their events through.
func (m *Main) startDelivery(ctx context.Context) error {
	id, err := m.nodeID()
	if err != nil {
		return err
	}
	m.NodeID = id
	guard := ssrf.New(m.Config.WebhookAllowCIDRs)
	// The pool is sized to the workers: every worker may hold a connection.
	tr := guard.Transport(ssrf.TransportOptions{
		MaxIdleConns:        m.Config.Workers * 2,
		MaxIdleConnsPerHost: m.Config.Workers,
	})
	// SQLite has one writer: one inbound batch stored at a time leaves the
	// result writer and the poller their turn. PostgreSQL stores batches in
	// parallel on its own cores.
	ingest := 1
	if m.DB.Dialect() == store.Postgres {
		ingest = 4
	}
	m.Delivery = delivery.New(delivery.Config{
		IngestConcurrency:     ingest,
		Store:                 m.DB,
		Webhooks:              m.Webhooks,
		Log:                   m.Log.With("component", "delivery"),
		Metrics:               m.deliveryMetrics(),
		NodeID:                id,
		Transport:             tr,
		UserAgent:             "wagate/" + Version(),
		Workers:               m.Config.Workers,
		MaxInFlightPerWebhook: m.Config.MaxInFlightPerHook,
		Timeout:               m.Config.WebhookTimeout,
		Schedule:              m.Config.RetrySchedule,
		DisableAfter:          m.Config.WebhookDisableAfter,
		AlertURL:              m.Config.AlertWebhookURL,
		Retention:             m.Config.Retention,
	})
	if err := m.Delivery.Start(ctx); err != nil {
		return err
	}
	m.closers = append(m.closers, func(ctx context.Context) error {
		tr.CloseIdleConnections()
		return nil
	}, m.Delivery.Close)
	m.Publisher = m.Delivery
	return nil
}

func (m *Main) deliveryService() httpapi.DeliveryService {
	if m.Delivery == nil {
		return nil
	}
	return m.Delivery
}

// nodeID is WAGATE_NODE_ID, or an id saved in the data directory on first
// start, so that a restarted node takes back its own leases at once.
func (m *Main) nodeID() (string, error) {
	if m.Config.NodeID != "" {
		return m.Config.NodeID, nil
	}
	path := filepath.Join(m.Config.DataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !os.IsNotExist(err) {
		return "", err
	}
	if err := os.MkdirAll(m.Config.DataDir, 0o700); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	id := fmt.Sprintf("%s-%s", host, hex.EncodeToString(b))
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save node id: %w", err)
	}
	return id, nil
}
