package app

import (
	"net/http"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/metrics"
	"github.com/wagate/wagate/internal/openapi"
	"github.com/wagate/wagate/internal/sessions"
)

// deliveryMetrics returns the Prometheus side of the delivery engine.
func (m *Main) deliveryMetrics() delivery.Metrics { return m.metrics() }

// metrics builds this node's collectors on first use: the delivery engine
// asks for them before the HTTP server exists. Each Main has its own
// registry, so several nodes in one process (tests) never share series.
func (m *Main) metrics() *metrics.Metrics {
	if m.Metrics != nil {
		return m.Metrics
	}
	ver, commit, _ := BuildInfo()
	m.Metrics = metrics.New(metrics.Options{
		Version: ver,
		Commit:  commit,
		Log:     m.Log.With("component", "metrics"),
		// The store answers for the engine (Engine.Stats is the same query),
		// and does so whether or not the engine has started yet.
		OutboxStats: m.DB.OutboxStats,
		// Sessions are counted in their table directly, so the gauge does
		// not depend on the session manager's internals.
		Sessions: metrics.CountSessions(m.DB.SQL()),
		Engines:  m.sessionEngines(),
		Statuses: []string{
			string(sessions.StatusConnected), string(sessions.StatusReconnecting),
			string(sessions.StatusDisconnected), string(sessions.StatusLoggedOut),
		},
	})
	return m.Metrics
}

// sessionEngines are the engines whose session gauges are exported at 0.
func (m *Main) sessionEngines() []string {
	list := []string{"whatsmeow"}
	if m.Config.SandboxEnabled || m.Config.Engine == "sandbox" {
		list = append(list, "sandbox")
	}
	return list
}

// mountExtra mounts the routes that live outside the API proper
// (httpapi.Config.Extra): /metrics, /openapi.json and /docs.
func (m *Main) mountExtra(mux *http.ServeMux) {
	mux.Handle("GET /metrics", m.metrics().Handler(m.Config.MetricsToken))
	openapi.Mount(mux)
}
