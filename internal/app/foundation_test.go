package app_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/app"
	"github.com/wagate/wagate/internal/testdb"
)

func TestFoundationEndToEnd(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			m := startServer(t, dialect, nil)
			anon := apiClient{t: t, base: m.URL()}

			if r := anon.do("GET", "/healthz", nil); r.Status != 200 {
				t.Fatalf("healthz %d", r.Status)
			}
			if r := anon.do("GET", "/readyz", nil); r.Status != 200 {
				t.Fatalf("readyz %d %s", r.Status, r.Body)
			}

			cl, id := newClient(t, m, "Acme")
			r := cl.do("GET", "/api/me", nil)
			if r.Status != 200 || int64(r.json(t)["id"].(float64)) != id {
				t.Fatalf("me: %d %s", r.Status, r.Body)
			}
			if r.Header.Get("X-Request-Id") == "" {
				t.Fatal("no request id")
			}

			// The seed's 401 messages.
			m1 := expectError(t, anon.do("GET", "/api/me", nil), 401, "UNAUTHORIZED")
			if m1["message"] != "Token not found" {
				t.Fatalf("missing token: %v", m1["message"])
			}
			bad := apiClient{t: t, base: m.URL(), token: "wg_nope"}
			if m := expectError(t, bad.do("GET", "/api/me", nil), 401, "UNAUTHORIZED"); m["message"] != "Invalid token" {
				t.Fatalf("wrong token: %v", m["message"])
			}
			for _, h := range []string{"Basic abc", "Bearer", "Bearer a b", "bearer " + cl.token, "Token " + cl.token} {
				r := anon.do("GET", "/api/me", nil, "Authorization", h)
				if msg := expectError(t, r, 401, "")["message"]; msg != "Token not found" {
					t.Fatalf("%q: %v", h, msg)
				}
			}
			// Admin routes refuse client tokens.
			if msg := expectError(t, cl.do("GET", "/api/admin/clients", nil), 401, "")["message"]; msg != "Invalid token" {
				t.Fatalf("client token on admin route: %v", msg)
			}

			// A second token, then revoke the first.
			admin := apiClient{t: t, base: m.URL(), token: m.AdminToken}
			r = admin.do("POST", "/api/admin/clients/"+itoa(id)+"/tokens?revoke_others=true", nil)
			if r.Status != 201 {
				t.Fatalf("rotate: %d %s", r.Status, r.Body)
			}
			newTok := r.json(t)["token"].(string)
			expectError(t, cl.do("GET", "/api/me", nil), 401, "")
			cl.token = newTok
			if r := cl.do("GET", "/api/me", nil); r.Status != 200 {
				t.Fatalf("new token: %d", r.Status)
			}

			r = admin.do("GET", "/api/admin/clients", nil)
			if r.Status != 200 || !bytes.Contains(r.Body, []byte(`"Acme"`)) || bytes.Contains(r.Body, []byte("token\"")) {
				t.Fatalf("list: %s", r.Body)
			}

			// Deleting the client kills its tokens.
			if r := admin.do("DELETE", "/api/admin/clients/"+itoa(id), nil); r.Status != 204 {
				t.Fatalf("delete: %d %s", r.Status, r.Body)
			}
			expectError(t, cl.do("GET", "/api/me", nil), 401, "")
			expectError(t, admin.do("DELETE", "/api/admin/clients/"+itoa(id), nil), 404, "NOT_FOUND")
		})
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", map[string]string{"WAGATE_MAX_BODY_BYTES": "4096"})
	admin := apiClient{t: t, base: m.URL(), token: m.AdminToken}
	cases := []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"malformed json", "POST", "/api/admin/clients", `{"name":`, 400},
		{"not json", "POST", "/api/admin/clients", `name=x`, 400},
		{"wrong type", "POST", "/api/admin/clients", `{"name":12}`, 400},
		{"array body", "POST", "/api/admin/clients", `[1,2]`, 400},
		{"empty body", "POST", "/api/admin/clients", ``, 400},
		{"two values", "POST", "/api/admin/clients", `{"name":"a"}{"name":"b"}`, 400},
		{"missing name", "POST", "/api/admin/clients", `{}`, 400},
		{"huge body", "POST", "/api/admin/clients", `{"name":"` + strings.Repeat("a", 10000) + `"}`, 413},
		{"long name", "POST", "/api/admin/clients", `{"name":"` + strings.Repeat("a", 300) + `"}`, 400},
		{"unknown client", "GET", "/api/admin/clients/999", nil, 404},
		{"non-numeric id", "GET", "/api/admin/clients/abc", nil, 404},
		{"negative id", "DELETE", "/api/admin/clients/-1", nil, 404},
		{"bad bool", "POST", "/api/admin/clients/1/tokens?revoke_others=maybe", nil, 400},
		{"unknown route", "GET", "/api/nope", nil, 404},
		{"wrong method", "PUT", "/api/admin/clients", `{}`, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, admin.do(tc.method, tc.path, tc.body), tc.status, "")
		})
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", map[string]string{"WAGATE_RATE_LIMIT": "1", "WAGATE_RATE_BURST": "3"})
	a, _ := newClient(t, m, "a")
	b, _ := newClient(t, m, "b")
	for i := 0; i < 3; i++ {
		if r := a.do("GET", "/api/me", nil); r.Status != 200 {
			t.Fatalf("request %d: %d", i, r.Status)
		}
	}
	r := a.do("GET", "/api/me", nil)
	expectError(t, r, http.StatusTooManyRequests, "RATE_LIMITED")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// Another client is not starved by a's burst.
	if r := b.do("GET", "/api/me", nil); r.Status != 200 {
		t.Fatalf("other client: %d", r.Status)
	}
}

func TestAdminTokenGenerated(t *testing.T) {
	t.Parallel()
	m := startServer(t, "sqlite", nil)
	path := filepath.Join(m.Config.DataDir, "admin-token")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file mode %v", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != m.AdminToken || len(m.AdminToken) < 32 {
		t.Fatal("admin token file does not hold the token")
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := func(k string) string {
		if k == "WAGATE_DATA_DIR" {
			return dir
		}
		return ""
	}
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := app.Run(context.Background(), args, env, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, _ := run("client", "create", "--name", "Acme")
	if code != 0 || !strings.Contains(out, "token: wg_") {
		t.Fatalf("create: %d %q", code, out)
	}
	code, out, _ = run("client", "list")
	if code != 0 || !strings.Contains(out, "Acme") {
		t.Fatalf("list: %d %q", code, out)
	}
	code, out, _ = run("client", "rotate-token", "--revoke-others", "1")
	if code != 0 || !strings.Contains(out, "token: wg_") {
		t.Fatalf("rotate: %d %q", code, out)
	}
	if code, _, _ := run("client", "rotate-token", "42"); code != 1 {
		t.Fatalf("rotate unknown: %d", code)
	}
	if code, _, _ := run("client", "create"); code != 2 {
		t.Fatalf("create without name: %d", code)
	}
	if code, _, _ := run("migrate"); code != 0 {
		t.Fatalf("migrate: %d", code)
	}
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "wagate ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, _ := run("bogus"); code != 2 {
		t.Fatalf("bogus: %d", code)
	}
	for _, c := range [][]string{{"serve", "--help"}, {"migrate", "--help"}, {"client", "create", "--help"}, {"client", "--help"}} {
		if code, _, errOut := run(c...); code != 0 || !strings.Contains(errOut, "Usage") {
			t.Fatalf("%v: %d %q", c, code, errOut)
		}
	}
	// An invalid setting stops start-up with one line naming the variable.
	bad := func(k string) string {
		if k == "WAGATE_WEBHOOK_TIMEOUT" {
			return "soon"
		}
		return env(k)
	}
	var errOut bytes.Buffer
	if code := app.Run(context.Background(), []string{"serve"}, bad, &bytes.Buffer{}, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "WAGATE_WEBHOOK_TIMEOUT") || strings.Count(errOut.String(), "\n") != 1 {
		t.Fatalf("bad config: %d %q", code, errOut.String())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
