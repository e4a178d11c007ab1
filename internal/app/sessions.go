package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/wagate/wagate/internal/httpapi"
	"github.com/wagate/wagate/internal/sandbox"
	"github.com/wagate/wagate/internal/sessions"
	"github.com/wagate/wagate/internal/ssrf"
	"github.com/wagate/wagate/internal/whatsmeow"
)

// startSessions builds the engines and the session manager, and resumes
// every linked session. It runs after startDelivery, which provides the
// Publisher that inbound events go through.
func (m *Main) startSessions(ctx context.Context) error {
	if m.Publisher == nil {
		return errors.New("sessions: no event publisher: the delivery engine must start before the sessions")
	}
	log := m.Log.With("component", "sessions")
	var engines []sessions.Engine
	wm, err := whatsmeow.New(ctx, m.DB.SQL(), m.DB.Dialect(), m.Log.With("component", "whatsmeow"), whatsmeow.Options{})
	if err != nil {
		return fmt.Errorf("whatsmeow engine: %w", err)
	}
	engines = append(engines, wm)
	if m.Config.SandboxEnabled {
		engines = append(engines, sandbox.New(sandbox.Options{Log: m.Log.With("component", "sandbox")}))
	} else if m.Config.Engine == sandbox.Name {
		return errors.New("WAGATE_ENGINE: sandbox is the default engine but WAGATE_SANDBOX=false disables it")
	}
	// Media URLs are fetched under the same SSRF policy as webhooks: the
	// operator's allow-list is the one exception to "public addresses only".
	guard := ssrf.New(m.Config.WebhookAllowCIDRs)
	opts := sessions.Options{
		Store:         m.DB,
		Publisher:     m.Publisher,
		Engines:       engines,
		DefaultEngine: m.Config.Engine,
		Log:           log,
		HTTPClient:    sessions.NewMediaClient(guard),
	}
	if m.Secrets != nil {
		// Media references hold the files' decryption keys: sealed at rest
		// with the key of the webhook secrets.
		opts.Sealer = m.Secrets
	}
	mgr, err := sessions.NewManager(opts)
	if err != nil {
		return err
	}
	m.Sessions = mgr
	// Registered before Resume, so sessions started by a failing Resume are
	// closed too; closers run in reverse, so sessions stop before delivery.
	m.closers = append(m.closers, mgr.Close)
	return mgr.Resume(ctx)
}

func (m *Main) sessionService() httpapi.SessionService {
	if m.Sessions == nil {
		return nil
	}
	return m.Sessions
}

// stopClient stops a client's sessions before the client is deleted.
func (m *Main) stopClient(ctx context.Context, clientID int64) error {
	if m.Sessions == nil {
		return nil
	}
	return m.Sessions.StopClient(ctx, clientID)
}
