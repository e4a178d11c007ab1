package webhooks_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/secretbox"
	"github.com/wagate/wagate/internal/ssrf"
	"github.com/wagate/wagate/internal/webhooks"
)

// memStore is an in-memory webhooks.Store; the SQL one is tested in
// internal/store against both databases.
type memStore struct {
	mu     sync.Mutex
	rows   map[string]webhooks.Record
	alerts map[int64]string
}

func newMemStore() *memStore {
	return &memStore{rows: map[string]webhooks.Record{}, alerts: map[int64]string{}}
}

func (m *memStore) CreateWebhook(_ context.Context, r webhooks.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[r.ID] = r
	return nil
}

func (m *memStore) ListWebhooks(_ context.Context, clientID int64) ([]webhooks.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []webhooks.Record
	for _, r := range m.rows {
		if r.ClientID == clientID {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b webhooks.Record) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (m *memStore) CountWebhooks(ctx context.Context, clientID int64) (int, error) {
	l, _ := m.ListWebhooks(ctx, clientID)
	return len(l), nil
}

func (m *memStore) GetWebhook(_ context.Context, clientID int64, id string) (webhooks.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok || r.ClientID != clientID {
		return webhooks.Record{}, errs.E(errs.NotFound, "webhook not found")
	}
	return r, nil
}

func (m *memStore) WebhookByID(_ context.Context, id string) (webhooks.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok {
		return webhooks.Record{}, errs.E(errs.NotFound, "webhook not found")
	}
	return r, nil
}

func (m *memStore) UpdateWebhook(_ context.Context, clientID int64, id string, fn func(*webhooks.Record) error) (webhooks.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok || r.ClientID != clientID {
		return webhooks.Record{}, errs.E(errs.NotFound, "webhook not found")
	}
	if err := fn(&r); err != nil {
		return webhooks.Record{}, err
	}
	m.rows[id] = r
	return r, nil
}

func (m *memStore) DeleteWebhook(_ context.Context, clientID int64, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok || r.ClientID != clientID {
		return errs.E(errs.NotFound, "webhook not found")
	}
	delete(m.rows, id)
	return nil
}

func (m *memStore) SetClientAlertURL(_ context.Context, clientID int64, url string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alerts[clientID] = url
	return nil
}

func (m *memStore) AnySealedSecret(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rows {
		return r.SecretSealed, nil
	}
	return nil, nil
}

// stubResolver answers from a table and never touches the network.
type stubResolver map[string][]netip.Addr

func (s stubResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := s[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

var testResolver = stubResolver{
	"hooks.example.com":    {netip.MustParseAddr("93.184.215.14")},
	"internal.example.com": {netip.MustParseAddr("10.1.2.3")},
	"rebind.example.com":   {netip.MustParseAddr("127.0.0.1")},
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newService(t *testing.T, allow ...netip.Prefix) (*webhooks.Service, *memStore, *fakeClock, *secretbox.Box) {
	t.Helper()
	key, _ := secretbox.GenerateKey()
	box, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	clk := &fakeClock{t: time.Date(2025, 11, 5, 14, 23, 0, 123456789, time.UTC)}
	svc := webhooks.NewService(st, box, ssrf.New(allow), webhooks.Options{
		Resolver: testResolver, Now: clk.Now, MaxPerClient: 3,
	})
	return svc, st, clk, box
}

func ptr[T any](v T) *T { return &v }

func TestRegisterDefaultsAndSecret(t *testing.T) {
	t.Parallel()
	svc, st, _, _ := newService(t)
	ctx := context.Background()
	w, err := svc.Register(ctx, 1, webhooks.Input{URL: "https://hooks.example.com/receive"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.Secret, "whsec_") || w.MaxRetries != webhooks.DefaultMaxRetries ||
		!slices.Equal(w.Events, []string{"message"}) || w.PhoneNumber != "" || !w.Active ||
		len(w.Headers) != 0 || w.ClientID != 1 || w.CreatedAt.Nanosecond()%int(time.Millisecond) != 0 {
		t.Fatalf("registered %+v", w)
	}
	rec := st.rows[w.ID]
	if strings.Contains(string(rec.SecretSealed), w.Secret) || rec.HeadersSealed != nil {
		t.Fatalf("stored record %+v", rec)
	}
	got, err := svc.Get(ctx, 1, w.ID)
	if err != nil || got.Secret != "" || got.URL != w.URL || !got.CreatedAt.Equal(w.CreatedAt) {
		t.Fatalf("get: %+v %v", got, err)
	}
	d, err := svc.ForDelivery(ctx, w.ID)
	if err != nil || d.Secret != w.Secret || d.PrevSecret != "" {
		t.Fatalf("for delivery: %+v %v", d, err)
	}
	if err := svc.CheckKey(ctx); err != nil {
		t.Fatal(err)
	}
	// Another key cannot open what this one sealed.
	otherKey, _ := secretbox.GenerateKey()
	other, _ := secretbox.New(otherKey)
	if err := webhooks.NewService(st, other, ssrf.New(nil), webhooks.Options{}).CheckKey(ctx); err == nil ||
		!strings.Contains(err.Error(), "WAGATE_SECRET_KEY") {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestRegisterValidation(t *testing.T) {
	t.Parallel()
	svc, _, _, _ := newService(t)
	ctx := context.Background()
	ok := webhooks.Input{URL: "https://hooks.example.com/x"}
	long := strings.Repeat("a", 501)
	cases := []struct {
		name string
		edit func(*webhooks.Input)
		msg  string
	}{
		{"no url", func(in *webhooks.Input) { in.URL = "" }, "webhook_url is required"},
		{"ftp", func(in *webhooks.Input) { in.URL = "ftp://hooks.example.com/x" }, "scheme"},
		{"credentials", func(in *webhooks.Input) { in.URL = "https://u:p@hooks.example.com/x" }, "credentials"},
		{"too long", func(in *webhooks.Input) { in.URL = "https://hooks.example.com/" + strings.Repeat("a", 2048) }, "2048"},
		{"loopback literal", func(in *webhooks.Input) { in.URL = "http://127.0.0.1:9/x" }, "loopback"},
		{"ipv6 loopback", func(in *webhooks.Input) { in.URL = "http://[::1]:9/x" }, "loopback"},
		{"metadata", func(in *webhooks.Input) { in.URL = "http://169.254.169.254/latest" }, "metadata"},
		{"private name", func(in *webhooks.Input) { in.URL = "https://internal.example.com/x" }, "blocked"},
		{"unresolvable", func(in *webhooks.Input) { in.URL = "https://nope.invalid/x" }, "does not resolve"},
		{"phone letters", func(in *webhooks.Input) { in.PhoneNumber = "55 11 abc" }, "phone_number"},
		{"phone short", func(in *webhooks.Input) { in.PhoneNumber = "+55 11" }, "8 to 15 digits"},
		{"phone long", func(in *webhooks.Input) { in.PhoneNumber = "1234567890123456" }, "8 to 15 digits"},
		{"retries negative", func(in *webhooks.Input) { in.MaxRetries = ptr(-1) }, "max_retries"},
		{"retries high", func(in *webhooks.Input) { in.MaxRetries = ptr(26) }, "max_retries"},
		{"events empty", func(in *webhooks.Input) { in.Events = []string{} }, "at least one"},
		{"events unknown", func(in *webhooks.Input) { in.Events = []string{"message", "nope"} }, `"nope"`},
		{"header bad name", func(in *webhooks.Input) { in.Headers = map[string]string{"X Bad": "v"} }, "valid header name"},
		{"header empty name", func(in *webhooks.Input) { in.Headers = map[string]string{"": "v"} }, "valid header name"},
		{"header host", func(in *webhooks.Input) { in.Headers = map[string]string{"host": "v"} }, "Host"},
		{"header content-type", func(in *webhooks.Input) { in.Headers = map[string]string{"Content-Type": "v"} }, "Content-Type"},
		{"header connection", func(in *webhooks.Input) { in.Headers = map[string]string{"connection": "close"} }, "Connection"},
		{"header transfer-encoding", func(in *webhooks.Input) { in.Headers = map[string]string{"Transfer-Encoding": "x"} }, "Transfer-Encoding"},
		{"header user-agent", func(in *webhooks.Input) { in.Headers = map[string]string{"User-Agent": "x"} }, "User-Agent"},
		{"header content-length", func(in *webhooks.Input) { in.Headers = map[string]string{"Content-Length": "1"} }, "Content-Length"},
		{"header webhook-", func(in *webhooks.Input) { in.Headers = map[string]string{"webhook-signature": "v1,x"} }, "Webhook-Signature"},
		{"header svix-", func(in *webhooks.Input) { in.Headers = map[string]string{"Svix-Id": "x"} }, "Svix-Id"},
		{"header crlf", func(in *webhooks.Input) { in.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }, "control character"},
		{"header nul", func(in *webhooks.Input) { in.Headers = map[string]string{"X-A": "a\x00"} }, "control character"},
		{"header value long", func(in *webhooks.Input) { in.Headers = map[string]string{"X-A": strings.Repeat("v", 1025)} }, "1024"},
		{"header duplicate", func(in *webhooks.Input) { in.Headers = map[string]string{"x-a": "1", "X-A": "2"} }, "twice"},
		{"too many headers", func(in *webhooks.Input) {
			in.Headers = map[string]string{}
			for i := range 21 {
				in.Headers["X-H"+strings.Repeat("a", i)] = "v"
			}
		}, "at most 20"},
		{"description long", func(in *webhooks.Input) { in.Description = long }, "500"},
	}
	for _, c := range cases {
		in := ok
		c.edit(&in)
		_, err := svc.Register(ctx, 1, in)
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var e *errs.Error
		errors.As(err, &e)
		if !strings.Contains(e.Message, c.msg) {
			t.Errorf("%s: message %q lacks %q", c.name, e.Message, c.msg)
		}
		if strings.Contains(e.Message, "no such host") {
			t.Errorf("%s: resolver error leaked: %q", c.name, e.Message)
		}
	}
	if l, _ := svc.List(ctx, 1); len(l) != 0 {
		t.Fatalf("invalid registrations stored: %d", len(l))
	}
}

func TestRegisterNormalizes(t *testing.T) {
	t.Parallel()
	svc, _, _, _ := newService(t)
	ctx := context.Background()
	w, err := svc.Register(ctx, 1, webhooks.Input{
		URL:         " https://hooks.example.com/r?token=abc ",
		PhoneNumber: "+55 (11) 99999-9999",
		MaxRetries:  ptr(0),
		Events:      []string{"message.ack", "message", "message.ack"},
		Headers:     map[string]string{"x-api-key": "k1", "Authorization": "Bearer t"},
		Description: "  orders  ",
	})
	if err != nil {
		t.Fatal(err)
	}
	if w.PhoneNumber != "5511999999999" || w.MaxRetries != 0 || w.URL != "https://hooks.example.com/r?token=abc" ||
		!slices.Equal(w.Events, []string{"message.ack", "message"}) || w.Description != "orders" ||
		w.Headers["X-Api-Key"] != "k1" || w.Headers["Authorization"] != "Bearer t" || len(w.Headers) != 2 {
		t.Fatalf("normalized %+v", w)
	}
	if !w.Matches("message.ack") || w.Matches("session.qr") || !w.MatchesPhone("5511999999999") || w.MatchesPhone("5511888888888") {
		t.Fatal("matching")
	}
	all, err := svc.Register(ctx, 1, webhooks.Input{URL: "https://hooks.example.com/all", Events: []string{"message", "*"}})
	if err != nil || !slices.Equal(all.Events, []string{"*"}) || !all.Matches("session.status") || !all.MatchesPhone("1") {
		t.Fatalf("all: %+v %v", all, err)
	}
	got, _ := svc.Get(ctx, 1, w.ID)
	if got.Headers["X-Api-Key"] != "k1" {
		t.Fatalf("headers not read back: %+v", got.Headers)
	}
	// A host name that resolves only to loopback is refused like the literal.
	if _, err := svc.Register(ctx, 1, webhooks.Input{URL: "http://rebind.example.com/"}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("rebind host: %v", err)
	}
	// The per-client limit (3 in these tests).
	if _, err := svc.Register(ctx, 1, webhooks.Input{URL: "https://hooks.example.com/3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Register(ctx, 1, webhooks.Input{URL: "https://hooks.example.com/4"}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := svc.Register(ctx, 2, webhooks.Input{URL: "https://hooks.example.com/4"}); err != nil {
		t.Fatalf("the limit is per client: %v", err)
	}
}

func TestAllowCIDRs(t *testing.T) {
	t.Parallel()
	svc, _, _, _ := newService(t, netip.MustParsePrefix("127.0.0.0/8"))
	ctx := context.Background()
	if _, err := svc.Register(ctx, 1, webhooks.Input{URL: "http://127.0.0.1:9/x"}); err != nil {
		t.Fatalf("allowed loopback: %v", err)
	}
	if _, err := svc.Register(ctx, 1, webhooks.Input{URL: "http://10.0.0.1/x"}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("private address outside the allow list: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	svc, st, clk, _ := newService(t)
	ctx := context.Background()
	w, err := svc.Register(ctx, 1, webhooks.Input{URL: "https://hooks.example.com/a",
		Headers: map[string]string{"X-Api-Key": "k1"}, Description: "d"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)

	// Invalid patches change nothing.
	for name, p := range map[string]webhooks.Patch{
		"url":     {URL: ptr("http://127.0.0.1/x")},
		"retries": {MaxRetries: ptr(99)},
		"events":  {Events: ptr([]string{})},
		"headers": {Headers: ptr(map[string]string{"Host": "x"})},
		"phone":   {PhoneNumber: ptr("12")},
		"desc":    {Description: ptr(strings.Repeat("é", 501))},
	} {
		if _, err := svc.Update(ctx, 1, w.ID, p); !errs.Is(err, errs.Invalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got, _ := svc.Get(ctx, 1, w.ID); !got.UpdatedAt.Equal(w.UpdatedAt) {
		t.Fatal("an invalid patch changed the webhook")
	}

	// An empty patch is a read.
	if got, err := svc.Update(ctx, 1, w.ID, webhooks.Patch{}); err != nil || got.URL != w.URL {
		t.Fatalf("empty patch: %+v %v", got, err)
	}

	u, err := svc.Update(ctx, 1, w.ID, webhooks.Patch{
		URL: ptr("https://hooks.example.com/b"), MaxRetries: ptr(7), Events: ptr([]string{"*"}),
		PhoneNumber: ptr("5511999999999"), Description: ptr(""),
	})
	if err != nil {
		t.Fatal(err)
	}
	if u.URL != "https://hooks.example.com/b" || u.MaxRetries != 7 || u.Events[0] != "*" || u.PhoneNumber != "5511999999999" ||
		u.Description != "" || u.Headers["X-Api-Key"] != "k1" || !u.UpdatedAt.After(w.UpdatedAt) || !u.CreatedAt.Equal(w.CreatedAt) {
		t.Fatalf("updated %+v", u)
	}
	if u, err = svc.Update(ctx, 1, w.ID, webhooks.Patch{Headers: ptr(map[string]string{}), PhoneNumber: ptr("")}); err != nil ||
		len(u.Headers) != 0 || u.PhoneNumber != "" || st.rows[w.ID].HeadersSealed != nil {
		t.Fatalf("clear headers: %+v %v", u, err)
	}

	// Disable, then a failing streak recorded by the delivery engine, then
	// re-enable: the failure state is reset.
	off, err := svc.Update(ctx, 1, w.ID, webhooks.Patch{Active: ptr(false)})
	if err != nil || off.Active || off.DisabledReason != webhooks.ReasonDisabledByClient || off.DisabledAt == nil {
		t.Fatalf("disable: %+v %v", off, err)
	}
	r := st.rows[w.ID]
	r.DisabledReason, r.FailingSince, r.ConsecutiveFailures = "endpoint answered 410 Gone", clk.Now(), 9
	st.rows[w.ID] = r
	if again, _ := svc.Update(ctx, 1, w.ID, webhooks.Patch{Active: ptr(false)}); again.DisabledReason != "endpoint answered 410 Gone" {
		t.Fatalf("disabling a disabled webhook changed its reason: %q", again.DisabledReason)
	}
	on, err := svc.Update(ctx, 1, w.ID, webhooks.Patch{Active: ptr(true)})
	if err != nil || !on.Active || on.DisabledReason != "" || on.DisabledAt != nil || on.FailingSince != nil || on.ConsecutiveFailures != 0 {
		t.Fatalf("re-enable: %+v %v", on, err)
	}

	// Scoping: another client's id and malformed ids are not found.
	for _, id := range []string{w.ID, "nope", "", "00000000-0000-0000-0000-000000000000"} {
		cl := int64(2)
		if id != w.ID {
			cl = 1
		}
		if _, err := svc.Get(ctx, cl, id); !errs.Is(err, errs.NotFound) {
			t.Errorf("get %q: %v", id, err)
		}
		if _, err := svc.Update(ctx, cl, id, webhooks.Patch{MaxRetries: ptr(1)}); !errs.Is(err, errs.NotFound) {
			t.Errorf("update %q: %v", id, err)
		}
		if _, err := svc.RotateSecret(ctx, cl, id, -1); !errs.Is(err, errs.NotFound) {
			t.Errorf("rotate %q: %v", id, err)
		}
		if err := svc.Delete(ctx, cl, id); !errs.Is(err, errs.NotFound) {
			t.Errorf("delete %q: %v", id, err)
		}
	}
	// Ids are case-insensitive UUIDs.
	if _, err := svc.Get(ctx, 1, strings.ToUpper(w.ID)); err != nil {
		t.Fatalf("upper-case id: %v", err)
	}
	if err := svc.Delete(ctx, 1, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ForDelivery(ctx, w.ID); !errs.Is(err, errs.NotFound) {
		t.Fatalf("deleted: %v", err)
	}
}

func TestRotateSecret(t *testing.T) {
	t.Parallel()
	svc, _, clk, _ := newService(t)
	ctx := context.Background()
	w, err := svc.Register(ctx, 1, webhooks.Input{URL: "https://hooks.example.com/a"})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := svc.RotateSecret(ctx, 1, w.ID, -1) // the default: 24h
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now().Truncate(time.Millisecond)
	if rot.ID != w.ID || rot.Secret == w.Secret || !strings.HasPrefix(rot.Secret, "whsec_") ||
		!rot.PreviousSecretExpiresAt.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("rotation %+v", rot)
	}
	d, _ := svc.ForDelivery(ctx, w.ID)
	if d.Secret != rot.Secret || d.PrevSecret != w.Secret || !slices.Equal(d.Secrets(now), []string{rot.Secret, w.Secret}) ||
		!slices.Equal(d.Secrets(now.Add(25*time.Hour)), []string{rot.Secret}) {
		t.Fatalf("after rotation %+v", d)
	}
	rot2, err := svc.RotateSecret(ctx, 1, w.ID, 0)
	if err != nil || !rot2.PreviousSecretExpiresAt.IsZero() {
		t.Fatalf("no grace: %+v %v", rot2, err)
	}
	if d, _ := svc.ForDelivery(ctx, w.ID); d.Secret != rot2.Secret || d.PrevSecret != "" {
		t.Fatalf("after a rotation without grace: %+v", d)
	}
	if _, err := svc.RotateSecret(ctx, 1, w.ID, 8*24*time.Hour); !errs.Is(err, errs.Invalid) {
		t.Fatalf("grace too long: %v", err)
	}
}

func TestSetAlertURL(t *testing.T) {
	t.Parallel()
	svc, st, _, _ := newService(t)
	ctx := context.Background()
	if err := svc.SetAlertURL(ctx, 1, "https://hooks.example.com/alerts"); err != nil || st.alerts[1] != "https://hooks.example.com/alerts" {
		t.Fatalf("set: %v %q", err, st.alerts[1])
	}
	for _, u := range []string{"http://127.0.0.1/x", "file:///etc/passwd", "https://u:p@hooks.example.com/"} {
		err := svc.SetAlertURL(ctx, 1, u)
		var e *errs.Error
		if !errors.As(err, &e) || e.Code != errs.Invalid || !strings.HasPrefix(e.Message, "invalid url") {
			t.Errorf("%s: %v", u, err)
		}
	}
	if err := svc.SetAlertURL(ctx, 1, ""); err != nil || st.alerts[1] != "" {
		t.Fatalf("clear: %v", err)
	}
}

func TestNormalizePhone(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"": "", "  ": "", "5511999999999": "5511999999999", "+55 (11) 99999-9999": "5511999999999",
		"12345678": "12345678", "123456789012345": "123456789012345",
	} {
		if got, err := webhooks.NormalizePhone(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"1234567", "1234567890123456", "+", "55.11.9999.9999", "5511９99999999"} {
		if _, err := webhooks.NormalizePhone(in); !errs.Is(err, errs.Invalid) {
			t.Errorf("%q accepted", in)
		}
	}
}
