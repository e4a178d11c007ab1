package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/app"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

// startServer starts a real wagate on 127.0.0.1:0 with the given dialect
// and extra environment, and stops it at cleanup.
func startServer(t *testing.T, dialect string, env map[string]string) *app.Main {
	t.Helper()
	vars := map[string]string{
		"WAGATE_ADDR":     "127.0.0.1:0",
		"WAGATE_DATA_DIR": t.TempDir(),
		"WAGATE_SANDBOX":  "true",
		"WAGATE_ENGINE":   "sandbox",
	}
	if dialect == store.Postgres {
		vars["DATABASE_URL"] = testdb.PostgresURL(t)
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] }, "")
	if err != nil {
		t.Fatal(err)
	}
	m := &app.Main{Config: cfg, Log: testdb.Logger(t)}
	if err := m.Start(context.Background()); err != nil {
		m.Close(context.Background())
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

// apiClient calls a running server with a bearer token.
type apiClient struct {
	t     *testing.T
	base  string
	token string
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

func (c apiClient) do(method, path string, body any, hdr ...string) response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// expectError checks a response is the error envelope with this status.
func expectError(t *testing.T, r response, status int, code string) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	m := r.json(t)
	if int(m["statusCode"].(float64)) != status || m["message"] == "" || m["error"] != http.StatusText(status) {
		t.Fatalf("not the error envelope: %s", r.Body)
	}
	if code != "" && m["code"] != code {
		t.Fatalf("code %v, want %s: %s", m["code"], code, r.Body)
	}
	return m
}

// newClient creates a client through the admin API and returns its API client.
func newClient(t *testing.T, m *app.Main, name string) (apiClient, int64) {
	t.Helper()
	admin := apiClient{t: t, base: m.URL(), token: m.AdminToken}
	r := admin.do("POST", "/api/admin/clients", map[string]any{"name": name})
	if r.Status != http.StatusCreated {
		t.Fatalf("create client: %d %s", r.Status, r.Body)
	}
	body := r.json(t)
	return apiClient{t: t, base: m.URL(), token: body["token"].(string)}, int64(body["id"].(float64))
}
