package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/ssrf"
	"github.com/wagate/wagate/webhooksig"
)

// Record is a webhook as stored: the signing secrets and the custom headers
// (a JSON object) are sealed, so the store never handles them in clear.
// Zero times stand for NULL.
type Record struct {
	ID                  string
	ClientID            int64
	PhoneNumber         string
	URL                 string
	MaxRetries          int
	Events              []string
	HeadersSealed       []byte // nil: no custom headers
	Description         string
	SecretSealed        []byte
	PrevSecretSealed    []byte // nil: no rotation in its grace period
	PrevSecretUntil     time.Time
	Active              bool
	DisabledReason      string
	DisabledAt          time.Time
	FailingSince        time.Time
	ConsecutiveFailures int
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// Store is what the service needs from storage. Lookups scoped by client
// answer errs.NotFound for another client's webhook, so its existence never
// leaks across tenants.
type Store interface {
	CreateWebhook(ctx context.Context, r Record) error
	ListWebhooks(ctx context.Context, clientID int64) ([]Record, error)
	CountWebhooks(ctx context.Context, clientID int64) (int, error)
	GetWebhook(ctx context.Context, clientID int64, id string) (Record, error)
	// WebhookByID is the unscoped lookup the delivery engine needs.
	WebhookByID(ctx context.Context, id string) (Record, error)
	// UpdateWebhook runs fn on the current row and writes the result, in
	// one transaction with the row locked, so concurrent updates (and the
	// delivery engine's failure bookkeeping) are never lost. fn must not
	// change ID, ClientID or CreatedAt.
	UpdateWebhook(ctx context.Context, clientID int64, id string, fn func(*Record) error) (Record, error)
	DeleteWebhook(ctx context.Context, clientID int64, id string) error
	SetClientAlertURL(ctx context.Context, clientID int64, url string) error
	// AnySealedSecret returns one stored sealed secret, or nil when there
	// are no webhooks; CheckKey uses it to detect a wrong key at start-up.
	AnySealedSecret(ctx context.Context) ([]byte, error)
}

// Sealer encrypts values at rest; *secretbox.Box is one.
type Sealer interface {
	Seal(plain []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// URLChecker validates a destination URL; *ssrf.Guard is one.
type URLChecker interface {
	CheckURL(ctx context.Context, raw string, r ssrf.Resolver) error
}

// DefaultGracePeriod is how long a rotated-out secret keeps signing when
// neither the operator (WAGATE_SECRET_GRACE_PERIOD) nor the caller says.
const DefaultGracePeriod = 24 * time.Hour

// DefaultMaxPerClient bounds how many webhooks one client may register:
// every event fans out to each of them.
const DefaultMaxPerClient = 100

// ReasonDisabledByClient is the disabled_reason of a webhook the client
// turned off with {"active": false}.
const ReasonDisabledByClient = "disabled by client"

// Options tune NewService. Zero values take the documented defaults.
type Options struct {
	// Resolver resolves webhook host names when they are registered;
	// nil means the system resolver. Tests pass a stub.
	Resolver ssrf.Resolver
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Log defaults to a discarding logger.
	Log *slog.Logger
	// GracePeriod is the default rotation grace period: 0 means
	// DefaultGracePeriod, a negative value means none.
	GracePeriod time.Duration
	// MaxPerClient defaults to DefaultMaxPerClient.
	MaxPerClient int
	// ResolveTimeout bounds a URL's DNS check; default 5 s.
	ResolveTimeout time.Duration
	// OnChange is told the id of a webhook that was updated, rotated or
	// deleted, so caches (the delivery engine's) drop it at once.
	OnChange func(id string)
}

// Service is the webhooks use cases. Safe for concurrent use.
type Service struct {
	store          Store
	box            Sealer
	guard          URLChecker
	resolver       ssrf.Resolver
	now            func() time.Time
	log            *slog.Logger
	grace          time.Duration
	maxPerClient   int
	resolveTimeout time.Duration
	onChange       func(id string)
}

// NewService returns the webhooks service. box seals secrets and headers
// before they reach store; guard vets every destination URL.
func NewService(store Store, box Sealer, guard URLChecker, opts Options) *Service {
	s := &Service{
		store:          store,
		box:            box,
		guard:          guard,
		resolver:       opts.Resolver,
		now:            opts.Now,
		log:            opts.Log,
		grace:          opts.GracePeriod,
		maxPerClient:   opts.MaxPerClient,
		resolveTimeout: opts.ResolveTimeout,
		onChange:       opts.OnChange,
	}
	if s.onChange == nil {
		s.onChange = func(string) {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case s.grace == 0:
		s.grace = DefaultGracePeriod
	case s.grace < 0:
		s.grace = 0
	}
	if s.maxPerClient <= 0 {
		s.maxPerClient = DefaultMaxPerClient
	}
	if s.resolveTimeout <= 0 {
		s.resolveTimeout = 5 * time.Second
	}
	return s
}

// Input registers a webhook: the seed's {"phone_number","webhook_url",
// "max_retries"} plus wagate's optional fields.
type Input struct {
	PhoneNumber string            `json:"phone_number"` // "" or omitted: every session of the client
	URL         string            `json:"webhook_url"`
	MaxRetries  *int              `json:"max_retries"` // omitted: DefaultMaxRetries
	Events      []string          `json:"events"`      // omitted: ["message"]; ["*"]: all
	Headers     map[string]string `json:"headers"`     // sent with every delivery
	Description string            `json:"description"`
}

// Patch changes a webhook; nil fields are left alone. {"headers": {}}
// removes every custom header; {"phone_number": ""} makes the webhook
// client-wide; {"active": true} re-enables a disabled webhook and resets its
// failure state.
type Patch struct {
	PhoneNumber *string            `json:"phone_number"`
	URL         *string            `json:"webhook_url"`
	MaxRetries  *int               `json:"max_retries"`
	Events      *[]string          `json:"events"`
	Headers     *map[string]string `json:"headers"`
	Description *string            `json:"description"`
	Active      *bool              `json:"active"`
}

// Rotation is the answer to a secret rotation.
type Rotation struct {
	ID     string
	Secret string
	// PreviousSecretExpiresAt is when the old secret stops signing; zero
	// when it stopped at once.
	PreviousSecretExpiresAt time.Time
}

// clock returns now at the stored precision, so what Register returns
// equals what a later Get reads back.
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

// Register creates a webhook and returns it with its new signing secret,
// the only time (besides a rotation) the secret is handed out.
func (s *Service) Register(ctx context.Context, clientID int64, in Input) (Webhook, error) {
	phone, err := NormalizePhone(in.PhoneNumber)
	if err != nil {
		return Webhook{}, err
	}
	maxRetries := DefaultMaxRetries
	if in.MaxRetries != nil {
		maxRetries = *in.MaxRetries
	}
	if err := validateMaxRetries(maxRetries); err != nil {
		return Webhook{}, err
	}
	evs := DefaultEvents()
	if in.Events != nil {
		if evs, err = normalizeEvents(in.Events); err != nil {
			return Webhook{}, err
		}
	}
	headers, err := normalizeHeaders(in.Headers)
	if err != nil {
		return Webhook{}, err
	}
	desc, err := normalizeDescription(in.Description)
	if err != nil {
		return Webhook{}, err
	}
	// The URL last: it may need DNS, and the cheap checks should fail first.
	u, err := s.checkURL(ctx, "webhook_url", in.URL)
	if err != nil {
		return Webhook{}, err
	}
	n, err := s.store.CountWebhooks(ctx, clientID)
	if err != nil {
		return Webhook{}, err
	}
	if n >= s.maxPerClient {
		return Webhook{}, errs.E(errs.Invalid, "a client may register at most %d webhooks; delete one first", s.maxPerClient)
	}

	secret, err := webhooksig.NewSecret()
	if err != nil {
		return Webhook{}, err
	}
	secretSealed, err := s.box.Seal([]byte(secret))
	if err != nil {
		return Webhook{}, err
	}
	headersSealed, err := s.sealHeaders(headers)
	if err != nil {
		return Webhook{}, err
	}
	now := s.clock()
	// Time-ordered (v7) ids keep listings in creation order even when two
	// webhooks share a millisecond.
	id, err := uuid.NewV7()
	if err != nil {
		return Webhook{}, err
	}
	rec := Record{
		ID:            id.String(),
		ClientID:      clientID,
		PhoneNumber:   phone,
		URL:           u,
		MaxRetries:    maxRetries,
		Events:        evs,
		HeadersSealed: headersSealed,
		Description:   desc,
		SecretSealed:  secretSealed,
		Active:        true,
		CreatedAt:     now,
		UpdatedAt:     now,
	}
	if err := s.store.CreateWebhook(ctx, rec); err != nil {
		return Webhook{}, err
	}
	s.log.InfoContext(ctx, "webhook registered", "client_id", clientID, "webhook_id", rec.ID,
		"host", hostOf(u), "phone_number", phone, "events", evs)
	w := fromRecord(rec, headers)
	w.Secret = secret
	return w, nil
}

// List returns the client's webhooks, oldest first. Secret fields are left
// empty: only the delivery engine needs them (ForDelivery).
func (s *Service) List(ctx context.Context, clientID int64) ([]Webhook, error) {
	recs, err := s.store.ListWebhooks(ctx, clientID)
	if err != nil {
		return nil, err
	}
	out := make([]Webhook, 0, len(recs))
	for _, r := range recs {
		w, err := s.decode(r, false)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// Get returns one of the client's webhooks, secrets left empty. An unknown
// or malformed id, or another client's, is errs.NotFound.
func (s *Service) Get(ctx context.Context, clientID int64, id string) (Webhook, error) {
	id, err := parseID(id)
	if err != nil {
		return Webhook{}, err
	}
	r, err := s.store.GetWebhook(ctx, clientID, id)
	if err != nil {
		return Webhook{}, err
	}
	return s.decode(r, false)
}

// ForDelivery returns any client's webhook with its secrets and headers in
// clear, for the delivery engine, which never sees ciphertext.
func (s *Service) ForDelivery(ctx context.Context, id string) (Webhook, error) {
	id, err := parseID(id)
	if err != nil {
		return Webhook{}, err
	}
	r, err := s.store.WebhookByID(ctx, id)
	if err != nil {
		return Webhook{}, err
	}
	return s.decode(r, true)
}

// Update applies a patch and returns the webhook, secrets left empty.
func (s *Service) Update(ctx context.Context, clientID int64, id string, p Patch) (Webhook, error) {
	id, err := parseID(id)
	if err != nil {
		return Webhook{}, err
	}
	// Everything is validated before the row is locked: a URL check can
	// wait on DNS, and nothing here depends on the current row.
	var (
		phone, u, desc string
		evs            []string
		headersSealed  []byte
	)
	if p.PhoneNumber != nil {
		if phone, err = NormalizePhone(*p.PhoneNumber); err != nil {
			return Webhook{}, err
		}
	}
	if p.MaxRetries != nil {
		if err := validateMaxRetries(*p.MaxRetries); err != nil {
			return Webhook{}, err
		}
	}
	if p.Events != nil {
		if evs, err = normalizeEvents(*p.Events); err != nil {
			return Webhook{}, err
		}
	}
	if p.Headers != nil {
		h, err := normalizeHeaders(*p.Headers)
		if err != nil {
			return Webhook{}, err
		}
		if headersSealed, err = s.sealHeaders(h); err != nil {
			return Webhook{}, err
		}
	}
	if p.Description != nil {
		if desc, err = normalizeDescription(*p.Description); err != nil {
			return Webhook{}, err
		}
	}
	if p.URL != nil {
		if u, err = s.checkURL(ctx, "webhook_url", *p.URL); err != nil {
			return Webhook{}, err
		}
	}
	if p == (Patch{}) {
		return s.Get(ctx, clientID, id)
	}

	now := s.clock()
	r, err := s.store.UpdateWebhook(ctx, clientID, id, func(r *Record) error {
		if p.PhoneNumber != nil {
			r.PhoneNumber = phone
		}
		if p.URL != nil {
			r.URL = u
		}
		if p.MaxRetries != nil {
			r.MaxRetries = *p.MaxRetries
		}
		if p.Events != nil {
			r.Events = evs
		}
		if p.Headers != nil {
			r.HeadersSealed = headersSealed
		}
		if p.Description != nil {
			r.Description = desc
		}
		if p.Active != nil && *p.Active != r.Active {
			if *p.Active {
				// Re-enabling starts the failure count afresh, or the next
				// failure would disable it again at once.
				r.Active, r.DisabledReason, r.DisabledAt = true, "", time.Time{}
				r.FailingSince, r.ConsecutiveFailures = time.Time{}, 0
			} else {
				r.Active, r.DisabledReason, r.DisabledAt = false, ReasonDisabledByClient, now
			}
		}
		r.UpdatedAt = now
		return nil
	})
	if err != nil {
		return Webhook{}, err
	}
	s.onChange(id)
	s.log.InfoContext(ctx, "webhook updated", "client_id", clientID, "webhook_id", id, "active", r.Active)
	return s.decode(r, false)
}

// Delete removes a webhook and, with it, its delivery history.
func (s *Service) Delete(ctx context.Context, clientID int64, id string) error {
	id, err := parseID(id)
	if err != nil {
		return err
	}
	if err := s.store.DeleteWebhook(ctx, clientID, id); err != nil {
		return err
	}
	s.onChange(id)
	s.log.InfoContext(ctx, "webhook deleted", "client_id", clientID, "webhook_id", id)
	return nil
}

// RotateSecret makes a new signing secret current. The old one keeps
// signing (a second signature on every delivery) for grace, so receivers
// can switch without dropping anything; a negative grace means the
// service's default. A rotation during another's grace period ends that one.
func (s *Service) RotateSecret(ctx context.Context, clientID int64, id string, grace time.Duration) (Rotation, error) {
	id, err := parseID(id)
	if err != nil {
		return Rotation{}, err
	}
	if grace < 0 {
		grace = s.grace
	} else if grace > MaxGracePeriod {
		return Rotation{}, errs.E(errs.Invalid, "the grace period must be at most %s", MaxGracePeriod)
	}
	secret, err := webhooksig.NewSecret()
	if err != nil {
		return Rotation{}, err
	}
	sealed, err := s.box.Seal([]byte(secret))
	if err != nil {
		return Rotation{}, err
	}
	now := s.clock()
	var until time.Time
	if grace > 0 {
		until = now.Add(grace).Truncate(time.Millisecond)
	}
	_, err = s.store.UpdateWebhook(ctx, clientID, id, func(r *Record) error {
		// The old secret moves over still sealed: no need to open it.
		if grace > 0 {
			r.PrevSecretSealed, r.PrevSecretUntil = r.SecretSealed, until
		} else {
			r.PrevSecretSealed, r.PrevSecretUntil = nil, time.Time{}
		}
		r.SecretSealed = sealed
		r.UpdatedAt = now
		return nil
	})
	if err != nil {
		return Rotation{}, err
	}
	s.onChange(id)
	s.log.InfoContext(ctx, "webhook secret rotated", "client_id", clientID, "webhook_id", id, "grace", grace.String())
	return Rotation{ID: id, Secret: secret, PreviousSecretExpiresAt: until}, nil
}

// SetAlertURL sets the client's alert webhook, told when one of its
// webhooks is disabled. It is vetted like a webhook URL; "" clears it.
func (s *Service) SetAlertURL(ctx context.Context, clientID int64, raw string) error {
	u := ""
	if raw != "" {
		var err error
		if u, err = s.checkURL(ctx, "url", raw); err != nil {
			return err
		}
	}
	if err := s.store.SetClientAlertURL(ctx, clientID, u); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "client alert webhook set", "client_id", clientID, "host", hostOf(u))
	return nil
}

// CheckKey fails when stored secrets were sealed with another key, so a
// misconfigured WAGATE_SECRET_KEY stops start-up instead of failing every
// delivery.
func (s *Service) CheckKey(ctx context.Context) error {
	sealed, err := s.store.AnySealedSecret(ctx)
	if err != nil || sealed == nil {
		return err
	}
	if _, err := s.box.Open(sealed); err != nil {
		return errors.New("WAGATE_SECRET_KEY (or the secret.key file in WAGATE_DATA_DIR) is not the key the stored webhook secrets were sealed with; restore the original key")
	}
	return nil
}

// parseID canonicalises a webhook id; anything but a UUID cannot exist.
func parseID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", errs.E(errs.NotFound, "webhook not found")
	}
	return u.String(), nil
}

func (s *Service) sealHeaders(h map[string]string) ([]byte, error) {
	if len(h) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return s.box.Seal(b)
}

// decode opens a record's sealed headers, and its secrets when asked.
func (s *Service) decode(r Record, withSecrets bool) (Webhook, error) {
	headers := map[string]string{}
	if r.HeadersSealed != nil {
		b, err := s.box.Open(r.HeadersSealed)
		if err == nil {
			err = json.Unmarshal(b, &headers)
		}
		if err != nil {
			return Webhook{}, s.openError(r, err)
		}
	}
	w := fromRecord(r, headers)
	if !withSecrets {
		return w, nil
	}
	b, err := s.box.Open(r.SecretSealed)
	if err != nil {
		return Webhook{}, s.openError(r, err)
	}
	w.Secret = string(b)
	if r.PrevSecretSealed != nil {
		b, err := s.box.Open(r.PrevSecretSealed)
		if err != nil {
			return Webhook{}, s.openError(r, err)
		}
		w.PrevSecret = string(b)
	}
	return w, nil
}

func (s *Service) openError(r Record, err error) error {
	return errs.Wrap(errs.Internal, err, "webhook "+r.ID+": stored secrets cannot be decrypted (wrong WAGATE_SECRET_KEY?)")
}

func fromRecord(r Record, headers map[string]string) Webhook {
	w := Webhook{
		ID:                  r.ID,
		ClientID:            r.ClientID,
		PhoneNumber:         r.PhoneNumber,
		URL:                 r.URL,
		MaxRetries:          r.MaxRetries,
		Events:              r.Events,
		Headers:             headers,
		Description:         r.Description,
		Active:              r.Active,
		DisabledReason:      r.DisabledReason,
		DisabledAt:          timePtr(r.DisabledAt),
		FailingSince:        timePtr(r.FailingSince),
		ConsecutiveFailures: r.ConsecutiveFailures,
		CreatedAt:           r.CreatedAt,
		UpdatedAt:           r.UpdatedAt,
	}
	if r.PrevSecretSealed != nil {
		// Not a secret: the API shows when a rotation's grace period ends.
		w.PrevSecretUntil = r.PrevSecretUntil
	}
	if w.Events == nil {
		w.Events = []string{}
	}
	if w.Headers == nil {
		w.Headers = map[string]string{}
	}
	return w
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// hostOf is what logs show of a URL: paths and queries can carry tokens.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
