package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(env(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.DataDir != "./data" || c.WebhookTimeout != 15*time.Second || c.LogLevel != slog.LevelInfo ||
		c.Engine != "whatsmeow" || !c.SandboxEnabled || c.RetrySchedule != nil || c.WebhookDisableAfter != 24*time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"WAGATE_WEBHOOK_TIMEOUT":      "soon",
		"WAGATE_RATE_LIMIT":           "-1",
		"WAGATE_LOG_LEVEL":            "loud",
		"WAGATE_LOG_FORMAT":           "xml",
		"WAGATE_ENGINE":               "baileys",
		"WAGATE_SANDBOX":              "maybe",
		"WAGATE_RETRY_SCHEDULE":       "1s,,x",
		"WAGATE_WEBHOOK_ALLOW_CIDRS":  "127.0.0.0/8,not-a-cidr",
		"DATABASE_URL":                "mysql://x",
		"WAGATE_ADMIN_TOKEN":          "short",
		"WAGATE_WORKERS":              "0",
		"WAGATE_MAX_MEDIA_BODY_BYTES": "2048",
	}
	for name, val := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load(env(map[string]string{name: val}), "")
			if err == nil || !strings.HasPrefix(err.Error(), name+":") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%s=%q: %v", name, val, err)
			}
		})
	}
}

func TestParsesValues(t *testing.T) {
	t.Parallel()
	c, err := Load(env(map[string]string{
		"WAGATE_RETRY_SCHEDULE":      "1s, 2s,4s",
		"WAGATE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8, ::1, 10.1.2.3/8",
		"WAGATE_LOG_LEVEL":           "DEBUG",
		"DATABASE_URL":               "postgresql://u@h/db",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.RetrySchedule) != 3 || c.RetrySchedule[2] != 4*time.Second {
		t.Fatalf("schedule %v", c.RetrySchedule)
	}
	if len(c.WebhookAllowCIDRs) != 3 || c.WebhookAllowCIDRs[2].String() != "10.0.0.0/8" || c.WebhookAllowCIDRs[1].Bits() != 128 {
		t.Fatalf("cidrs %v", c.WebhookAllowCIDRs)
	}
	if c.LogLevel != slog.LevelDebug {
		t.Fatalf("level %v", c.LogLevel)
	}
}

func TestDotEnv(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("WAGATE_ADDR=:9999\nWAGATE_DATA_DIR=/from/file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The environment wins over the file.
	c, err := Load(env(map[string]string{"WAGATE_DATA_DIR": "/from/env"}), path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":9999" || c.DataDir != "/from/env" {
		t.Fatalf("addr %q dir %q", c.Addr, c.DataDir)
	}
	// A missing file is fine.
	if _, err := Load(env(nil), filepath.Join(t.TempDir(), "none")); err != nil {
		t.Fatal(err)
	}
}
