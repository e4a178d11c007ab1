package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A client may hold at most 100 webhooks (webhooks.DefaultMaxPerClient):
// sessions are spread over as many clients as their webhooks need, and
// each client keeps reservedHooks free for the --hang-webhooks.
const (
	maxHooksPerClient = 100
	reservedHooks     = 10
)

// api calls wagate's HTTP API.
type api struct {
	base   string
	client *http.Client
}

func newAPI(base string, conns int) *api {
	tr := &http.Transport{
		MaxIdleConns:        conns + 8,
		MaxIdleConnsPerHost: conns + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &api{base: base, client: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

// apiError is a non-2xx answer.
type apiError struct {
	status int
	body   string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// call sends a JSON request and decodes a JSON answer into out (when set).
func (a *api) call(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return &apiError{status: resp.StatusCode, body: truncate(string(b), 300)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// loadClient is a client (tenant) this run created.
type loadClient struct {
	id    int64
	token string
}

// loadSession is a linked sandbox session and the client that owns it.
type loadSession struct {
	id     string
	phone  string
	client *loadClient
	path   string       // its sandbox messages route
	hooks  []string     // ids of its measured webhooks
	sent   atomic.Int64 // messages accepted for it
}

// fleet is what setup created on the server.
type fleet struct {
	clients  []*loadClient
	sessions []*loadSession
	hooks    int // measured webhooks: sessions × webhooks-per-session
	hang     []string

	pendingSession *loadSession // --pending: the session whose webhook is down
}

// phoneOf is session i's phone number: international digits, unique per run.
func phoneOf(i int) string { return fmt.Sprintf("55119%08d", i) }

// createClient creates a client through the admin API.
func (a *api) createClient(ctx context.Context, adminToken, name string) (*loadClient, error) {
	var out struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if err := a.call(ctx, "POST", "/api/admin/clients", adminToken, map[string]any{"name": name}, &out); err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &loadClient{id: out.ID, token: out.Token}, nil
}

// linkSession connects a sandbox session and scans its QR code.
func (a *api) linkSession(ctx context.Context, c *loadClient, user, phone string) (*loadSession, error) {
	var out struct {
		SessionID string `json:"session_id"`
	}
	err := a.call(ctx, "POST", "/api/whatsapp/connect", c.token,
		map[string]any{"user_id": user, "phone_number": phone, "engine": "sandbox"}, &out)
	if err != nil {
		return nil, fmt.Errorf("connect session: %w", err)
	}
	if err := a.call(ctx, "POST", "/api/whatsapp/sessions/"+out.SessionID+"/sandbox/scan", c.token, nil, nil); err != nil {
		return nil, fmt.Errorf("scan session: %w", err)
	}
	return &loadSession{id: out.SessionID, phone: phone, client: c,
		path: "/api/whatsapp/sessions/" + out.SessionID + "/sandbox/messages"}, nil
}

// registerWebhook registers url for phone's events and returns its id and
// signing secret.
func (a *api) registerWebhook(ctx context.Context, c *loadClient, phone, url string, maxRetries int) (string, string, error) {
	var out struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	err := a.call(ctx, "POST", "/api/webhooks/register", c.token, map[string]any{
		"phone_number": phone, "webhook_url": url, "max_retries": maxRetries,
		"events": []string{"message"}, "description": "wagate-load",
	}, &out)
	if err != nil {
		return "", "", fmt.Errorf("register webhook: %w", err)
	}
	return out.ID, out.Secret, nil
}

// setup creates the clients, sessions and webhooks of a run, a few
// requests at a time.
func setup(ctx context.Context, a *api, adminToken string, o *options, rv *receiver, runID string) (*fleet, error) {
	k := o.webhooksPerSession
	perClient := max(1, (maxHooksPerClient-reservedHooks)/k)
	nClients := (o.sessions + perClient - 1) / perClient
	f := &fleet{hooks: o.sessions * k}
	for c := range nClients {
		cl, err := a.createClient(ctx, adminToken, "wagate-load "+runID+" "+strconv.Itoa(c))
		if err != nil {
			return f, err
		}
		f.clients = append(f.clients, cl)
	}
	f.sessions = make([]*loadSession, o.sessions)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range o.sessions {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := linkWithHooks(ctx, a, f, i, perClient, k, rv, runID); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return f, err
	}
	// Hanging receivers get session 0's events: one customer whose
	// endpoint stopped answering. The most retries, so none fails.
	for j := range o.hangWebhooks {
		s := f.sessions[0]
		id, _, err := a.registerWebhook(ctx, s.client, s.phone, rv.hangURL(j), 25)
		if err != nil {
			return f, err
		}
		f.hang = append(f.hang, id)
	}
	return f, nil
}

// linkWithHooks links session i and registers its measured webhooks.
func linkWithHooks(ctx context.Context, a *api, f *fleet, i, perClient, k int, rv *receiver, runID string) error {
	cl := f.clients[i/perClient]
	s, err := a.linkSession(ctx, cl, "load-"+runID+"-"+strconv.Itoa(i), phoneOf(i))
	if err != nil {
		return err
	}
	for slot := range k {
		n := i*k + slot
		id, secret, err := a.registerWebhook(ctx, cl, s.phone, rv.okURL(n), 5)
		if err != nil {
			return err
		}
		if err := rv.addSecret(n, secret); err != nil {
			return err
		}
		s.hooks = append(s.hooks, id)
	}
	f.sessions[i] = s
	return nil
}

// setupPending creates a client, a session and a webhook whose receiver is
// down, and injects n events for it in batches.
func setupPending(ctx context.Context, a *api, adminToken string, n int, runID string) (*loadSession, error) {
	cl, err := a.createClient(ctx, adminToken, "wagate-load "+runID+" pending")
	if err != nil {
		return nil, err
	}
	s, err := a.linkSession(ctx, cl, "load-"+runID+"-pending", "5521900000000")
	if err != nil {
		return nil, err
	}
	addr, err := closedPort()
	if err != nil {
		return nil, err
	}
	id, _, err := a.registerWebhook(ctx, cl, s.phone, "http://"+addr+"/down", 25)
	if err != nil {
		return nil, err
	}
	s.hooks = []string{id}
	var body bytes.Buffer
	for done := 0; done < n; {
		size := min(1000, n-done)
		body.Reset()
		body.WriteString(`{"messages":[`)
		for i := range size {
			if i > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"from":"5511988887777","type":"text","content":"pending %d","message_id":"WP%s-%d"}`, done+i, runID, done+i)
		}
		body.WriteString(`]}`)
		if err := a.post(ctx, s.path, cl.token, body.Bytes()); err != nil {
			return nil, fmt.Errorf("inject pending events: %w", err)
		}
		done += size
	}
	return s, nil
}

// post sends a prepared JSON body and expects 202.
func (a *api) post(ctx context.Context, path, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", a.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return &apiError{status: resp.StatusCode, body: truncate(string(b), 300)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// teardown deletes the clients a run created on a server it did not start.
func teardown(ctx context.Context, a *api, adminToken string, f *fleet) error {
	var errs []error
	for _, c := range f.clients {
		if err := a.call(ctx, "DELETE", "/api/admin/clients/"+strconv.FormatInt(c.id, 10), adminToken, nil, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if f.pendingSession != nil {
		c := f.pendingSession.client
		if err := a.call(ctx, "DELETE", "/api/admin/clients/"+strconv.FormatInt(c.id, 10), adminToken, nil, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
