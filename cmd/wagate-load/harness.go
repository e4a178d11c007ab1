package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/wagate/wagate/internal/clients"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/httpapi"
	"github.com/wagate/wagate/internal/metrics"
	"github.com/wagate/wagate/internal/sandbox"
	"github.com/wagate/wagate/internal/secretbox"
	"github.com/wagate/wagate/internal/sessions"
	"github.com/wagate/wagate/internal/ssrf"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/webhooks"
)

// startHarness assembles, in this process, the parts app.Main assembles
// (store, clients, webhooks, the delivery engine, the sandbox session
// manager, the HTTP API with its metrics) with one difference when
// durable is false: the delivery engine's Store is memStore, so events,
// deliveries and results never reach the database. Clients, sessions and
// webhooks stay in the real database; they are not on the per-event path
// except as reads, which both variants make.
//
// This is the "durability switched off" comparison of the benchmark
// harness only; wagate itself has no such setting. The wiring follows
// internal/app (delivery.go, sessions.go, webhooks.go, main.go): when
// those change, compare --mode inprocess with --mode harness.
func startHarness(ctx context.Context, o *options, durable bool, dataDir, dbURL, adminToken string) (*target, error) {
	cfg, err := config.Load(mapGetenv(serverEnv(o, "127.0.0.1:0", dataDir, dbURL, adminToken)), "")
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	h := &harness{}
	if err := h.start(ctx, cfg, durable, log); err != nil {
		h.close(context.Background())
		return nil, err
	}
	scope := "this process: the harness, the load generator and the receiver"
	return &target{
		baseURL: "http://" + h.ln.Addr().String(), adminToken: cfg.AdminToken, pid: os.Getpid(),
		rssScope: scope, outbox: h.outbox.OutboxStats, stop: h.close,
	}, nil
}

type harness struct {
	db     *store.DB
	outbox delivery.Store
	eng    *delivery.Engine
	mgr    *sessions.Manager
	srv    *http.Server
	ln     net.Listener
	tr     *http.Transport
}

func (h *harness) start(ctx context.Context, cfg *config.Config, durable bool, log *slog.Logger) error {
	db, err := store.Open(ctx, cfg.DatabaseURL, cfg.DataDir, log, store.Options{})
	if err != nil {
		return err
	}
	h.db = db
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	cl := clients.NewService(db)

	key, err := secretbox.LoadOrCreateKey(cfg.DataDir, cfg.SecretKey, log)
	if err != nil {
		return err
	}
	box, err := secretbox.New(key)
	if err != nil {
		return err
	}
	guard := ssrf.New(cfg.WebhookAllowCIDRs)
	grace := cfg.SecretGracePeriod
	if grace == 0 {
		grace = -1
	}
	hooks := webhooks.NewService(db, box, guard, webhooks.Options{
		Log: log, GracePeriod: grace,
		OnChange: func(id string) {
			if h.eng != nil {
				h.eng.Invalidate(id)
			}
		},
	})
	h.outbox = db
	if !durable {
		h.outbox = newMemStore(db, time.Now)
	}
	met := metrics.New(metrics.Options{
		Version: "harness", Log: log, OutboxStats: h.outbox.OutboxStats,
		Sessions: metrics.CountSessions(db.SQL()), Engines: []string{sandbox.Name},
	})
	h.tr = guard.Transport(ssrf.TransportOptions{MaxIdleConns: cfg.Workers * 2, MaxIdleConnsPerHost: cfg.Workers})
	h.eng = delivery.New(delivery.Config{
		Store: h.outbox, Webhooks: hooks, Log: log.With("component", "delivery"), Metrics: met,
		NodeID: "wagate-load-harness", Transport: h.tr, UserAgent: "wagate/harness",
		Workers: cfg.Workers, MaxInFlightPerWebhook: cfg.MaxInFlightPerHook, Timeout: cfg.WebhookTimeout,
		Schedule: cfg.RetrySchedule, DisableAfter: cfg.WebhookDisableAfter, AlertURL: cfg.AlertWebhookURL,
		Retention: cfg.Retention, IngestConcurrency: ingestConcurrency(db.Dialect()),
	})
	if err := h.eng.Start(ctx); err != nil {
		h.eng = nil
		return err
	}
	h.mgr, err = sessions.NewManager(sessions.Options{
		Store: db, Publisher: h.eng, Engines: []sessions.Engine{sandbox.New(sandbox.Options{Log: log})},
		DefaultEngine: sandbox.Name, Log: log, HTTPClient: sessions.NewMediaClient(guard),
	})
	if err != nil {
		return err
	}
	if err := h.mgr.Resume(ctx); err != nil {
		return err
	}
	srv := httpapi.New(httpapi.Config{
		Log: log, Clients: cl, AdminToken: cfg.AdminToken, MaxBodyBytes: cfg.MaxBodyBytes,
		RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst, Version: "harness",
		Webhooks: hooks, Deliveries: h.eng, Sessions: h.mgr,
		StopClient: h.mgr.StopClient, Observe: met.ObserveRequest,
		Ready: func(ctx context.Context) error { return db.Ping(ctx) },
		Extra: func(mux *http.ServeMux) { mux.Handle("GET /metrics", met.Handler("")) },
	})
	h.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	h.srv = &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 120 * time.Second, IdleTimeout: 120 * time.Second}
	go h.srv.Serve(h.ln)
	return nil
}

// close stops the parts in reverse order, as app.Main.Close does.
func (h *harness) close(ctx context.Context) error {
	var errs []error
	if h.srv != nil {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		errs = append(errs, h.srv.Shutdown(sctx))
		cancel()
	}
	if h.mgr != nil {
		errs = append(errs, h.mgr.Close(ctx))
	}
	if h.eng != nil {
		errs = append(errs, h.eng.Close(ctx))
	}
	if h.tr != nil {
		h.tr.CloseIdleConnections()
	}
	if h.db != nil {
		errs = append(errs, h.db.Close())
	}
	return errors.Join(errs...)
}

// ingestConcurrency is app.Main's: one inbound batch stored at a time on
// SQLite's single writer, four on PostgreSQL.
func ingestConcurrency(dialect string) int {
	if dialect == store.Postgres {
		return 4
	}
	return 1
}
