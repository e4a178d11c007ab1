// Package config reads wagate's settings from the environment (and an
// optional .env file). Invalid values stop start-up with one line that names
// the variable.
package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/wagate/wagate/internal/ssrf"
)

// Config is every setting wagate reads. Zero values are never used: Load
// fills the documented defaults.
type Config struct {
	Addr        string
	DataDir     string
	DatabaseURL string // PostgreSQL; empty means embedded SQLite in DataDir
	AdminToken  string // empty means generated on first start
	SecretKey   string // encrypts webhook secrets at rest; empty means a key file in DataDir

	LogLevel  slog.Level
	LogFormat string // text | json

	RateLimit      float64 // requests per second per client
	RateBurst      int
	MaxBodyBytes   int64
	MaxMediaBody   int64 // body limit of the send route (base64 media)
	ShutdownGrace  time.Duration
	MetricsToken   string
	Engine         string // default engine for new sessions
	SandboxEnabled bool

	WebhookTimeout      time.Duration
	WebhookAllowCIDRs   []netip.Prefix
	RetrySchedule       []time.Duration // nil means the built-in schedule
	WebhookDisableAfter time.Duration
	SecretGracePeriod   time.Duration
	AlertWebhookURL     string
	Retention           time.Duration
	Workers             int
	MaxInFlightPerHook  int
	NodeID              string // names this node's delivery leases; default: saved in DataDir
}

// Getenv is how Load reads a variable; tests pass a map lookup.
type Getenv func(string) string

// Load reads the configuration. When dotenv is non-empty and the file exists,
// its values fill variables that are not already set in the environment.
func Load(getenv Getenv, dotenv string) (*Config, error) {
	if dotenv != "" {
		if vals, err := godotenv.Read(dotenv); err == nil {
			base := getenv
			getenv = func(k string) string {
				if v := base(k); v != "" {
					return v
				}
				return vals[k]
			}
		} else if !os.IsNotExist(err) {
			return nil, fmt.Errorf("%s: %w", dotenv, err)
		}
	}
	p := parser{getenv: getenv}
	c := &Config{
		Addr:                p.str("WAGATE_ADDR", ":8080"),
		DataDir:             p.str("WAGATE_DATA_DIR", "./data"),
		DatabaseURL:         p.str("DATABASE_URL", ""),
		AdminToken:          p.str("WAGATE_ADMIN_TOKEN", ""),
		SecretKey:           p.str("WAGATE_SECRET_KEY", ""),
		LogLevel:            p.level("WAGATE_LOG_LEVEL", slog.LevelInfo),
		LogFormat:           p.oneOf("WAGATE_LOG_FORMAT", "text", "text", "json"),
		RateLimit:           p.float("WAGATE_RATE_LIMIT", 200),
		RateBurst:           p.int("WAGATE_RATE_BURST", 400),
		MaxBodyBytes:        int64(p.int("WAGATE_MAX_BODY_BYTES", 1<<20)),
		MaxMediaBody:        int64(p.int("WAGATE_MAX_MEDIA_BODY_BYTES", 90<<20)),
		ShutdownGrace:       p.duration("WAGATE_SHUTDOWN_GRACE", 15*time.Second),
		MetricsToken:        p.str("WAGATE_METRICS_TOKEN", ""),
		Engine:              p.oneOf("WAGATE_ENGINE", "whatsmeow", "whatsmeow", "sandbox"),
		SandboxEnabled:      p.bool("WAGATE_SANDBOX", true),
		WebhookTimeout:      p.duration("WAGATE_WEBHOOK_TIMEOUT", 15*time.Second),
		WebhookAllowCIDRs:   p.cidrs("WAGATE_WEBHOOK_ALLOW_CIDRS"),
		RetrySchedule:       p.durations("WAGATE_RETRY_SCHEDULE"),
		WebhookDisableAfter: p.duration("WAGATE_WEBHOOK_DISABLE_AFTER", 24*time.Hour),
		SecretGracePeriod:   p.duration("WAGATE_SECRET_GRACE_PERIOD", 24*time.Hour),
		AlertWebhookURL:     p.str("WAGATE_ALERT_WEBHOOK_URL", ""),
		Retention:           p.duration("WAGATE_RETENTION", 30*24*time.Hour),
		Workers:             p.int("WAGATE_WORKERS", 64),
		MaxInFlightPerHook:  p.int("WAGATE_WEBHOOK_MAX_IN_FLIGHT", 16),
		NodeID:              p.str("WAGATE_NODE_ID", ""),
	}
	if p.err != nil {
		return nil, p.err
	}
	switch {
	case c.RateLimit <= 0:
		return nil, fmt.Errorf("WAGATE_RATE_LIMIT: must be > 0")
	case c.RateBurst < 1:
		return nil, fmt.Errorf("WAGATE_RATE_BURST: must be >= 1")
	case c.MaxBodyBytes < 1024:
		return nil, fmt.Errorf("WAGATE_MAX_BODY_BYTES: must be >= 1024")
	case c.MaxMediaBody < c.MaxBodyBytes:
		return nil, fmt.Errorf("WAGATE_MAX_MEDIA_BODY_BYTES: must be >= WAGATE_MAX_BODY_BYTES")
	case c.WebhookTimeout <= 0:
		return nil, fmt.Errorf("WAGATE_WEBHOOK_TIMEOUT: must be > 0")
	case c.Workers < 1:
		return nil, fmt.Errorf("WAGATE_WORKERS: must be >= 1")
	case c.MaxInFlightPerHook < 1:
		return nil, fmt.Errorf("WAGATE_WEBHOOK_MAX_IN_FLIGHT: must be >= 1")
	case c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://"):
		return nil, fmt.Errorf("DATABASE_URL: must be a postgres:// or postgresql:// URL")
	case c.AdminToken != "" && len(c.AdminToken) < 16:
		return nil, fmt.Errorf("WAGATE_ADMIN_TOKEN: must be at least 16 characters")
	}
	return c, nil
}

// parser keeps the first error so Load reads like a table.
type parser struct {
	getenv Getenv
	err    error
}

func (p *parser) fail(name, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) int(name string, def int) int {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		p.fail(name, "%q is not an integer", v)
	}
	return n
}

func (p *parser) float(name string, def float64) float64 {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.fail(name, "%q is not a number", v)
	}
	return f
}

func (p *parser) bool(name string, def bool) bool {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, "%q is not true or false", v)
	}
	return b
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.fail(name, "%q is not a duration (e.g. 15s, 2m, 24h)", v)
	}
	return d
}

func (p *parser) durations(name string) []time.Duration {
	v := p.str(name, "")
	if v == "" {
		return nil
	}
	var out []time.Duration
	for _, s := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d <= 0 {
			p.fail(name, "%q is not a positive duration", strings.TrimSpace(s))
			return nil
		}
		out = append(out, d)
	}
	return out
}

func (p *parser) cidrs(name string) []netip.Prefix {
	out, err := ssrf.ParseCIDRs(p.str(name, ""))
	if err != nil {
		p.fail(name, "%s", strings.TrimPrefix(err.Error(), "ssrf: "))
	}
	return out
}

func (p *parser) level(name string, def slog.Level) slog.Level {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		p.fail(name, "%q is not one of debug, info, warn, error", v)
	}
	return l
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(p.str(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}
