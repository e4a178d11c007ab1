package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	valerrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/wagate/wagate/internal/app"
	"github.com/wagate/wagate/internal/openapi"
	"github.com/wagate/wagate/internal/store"
)

// extraRoutes are mounted through httpapi.Config.Extra, outside httpapi.Routes.
var extraRoutes = []string{"GET /metrics", "GET /openapi.json", "GET /docs"}

func specModel(t *testing.T) (libopenapi.Document, *v3.Document) {
	t.Helper()
	spec, err := openapi.JSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		t.Fatal(err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	return doc, &model.Model
}

// specRoutes lists the spec's operations as ServeMux-style "METHOD /path".
func specRoutes(model *v3.Document) []string {
	var out []string
	for path, item := range model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIMatchesRoutes fails when a route is served but not documented,
// or documented but not served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	m := startServer(t, store.SQLite, nil)
	if m.Webhooks == nil || m.Delivery == nil || m.Sessions == nil {
		t.Fatal("every service must be running for the route list to be complete")
	}
	served := append(m.API.Routes(), extraRoutes...)
	sort.Strings(served)
	_, model := specModel(t)
	documented := specRoutes(model)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is served but not in internal/openapi/openapi.yaml", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("the spec documents %q, which the server does not have", r)
		}
	}
	// Each documented route reaches a handler of its own, not the JSON 404
	// of /api/ or the mux's 404.
	for _, r := range documented {
		method, path, _ := strings.Cut(r, " ")
		path = strings.NewReplacer("{id}", "1", "{eventId}", "1", "{messageId}", "1").Replace(path)
		req := httptest.NewRequest(method, path, nil)
		if _, pattern := m.API.Mux().Handler(req); pattern == "" || pattern == "/api/" {
			t.Errorf("%s: no route of its own (pattern %q)", r, pattern)
		}
	}
}

// specOp is one operation of the spec, ready to exercise.
type specOp struct {
	method, path string
	op           *v3.Operation
}

// TestOpenAPIExamplesAgainstServer sends every operation of the spec, with
// each of its request examples, to a real server with real credentials,
// and validates requests and responses against the spec. An example
// answered 400, 422 or 500 is wrong, and so is any answer the spec does
// not describe (status code or body).
func TestOpenAPIExamplesAgainstServer(t *testing.T) {
	t.Parallel()
	doc, model := specModel(t)
	v, verrs := validator.NewValidator(doc)
	if len(verrs) > 0 {
		t.Fatal(verrs)
	}

	m := startServer(t, store.SQLite, pipelineEnv(nil))
	c, clientID := newClient(t, m, "Examples")
	rc := newReceiver(t, nil)
	// Fixtures the path parameters name: a webhook to the loopback
	// receiver, a linked sandbox session, and a delivery event.
	hookID, _ := registerWebhook(t, c, map[string]any{"webhook_url": rc.URL(), "events": []string{"*"}})
	sessionID := linkedSandbox(t, c, "openapi-user", "5511988887777")
	if r := c.do("POST", "/api/webhooks/"+hookID+"/test", nil); r.Status != http.StatusAccepted {
		t.Fatalf("test event: %d %s", r.Status, r.Body)
	}
	var eventID string
	waitFor(t, "a delivery event", 5*time.Second, func() bool {
		if evs := listEvents(t, c, hookID, ""); len(evs) > 0 {
			eventID = evs[0]["id"].(string)
		}
		return eventID != ""
	})
	// An inbound image, whose file the media route returns.
	mediaID := inject(t, c, sessionID, map[string]any{"from": "5511977776666", "type": "image", "mime_type": "image/png",
		"media_base64": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="})[0]
	params := func(path string) string {
		var id string
		switch {
		case strings.HasPrefix(path, "/api/admin/clients/"):
			id = fmt.Sprint(clientID)
		case strings.HasPrefix(path, "/api/webhooks/"):
			id = hookID
		case strings.HasPrefix(path, "/api/whatsapp/sessions/"):
			id = sessionID
		}
		return strings.NewReplacer("{id}", id, "{eventId}", eventID, "{messageId}", mediaID).Replace(path)
	}

	var ops []specOp
	for path, item := range model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			ops = append(ops, specOp{strings.ToUpper(method), path, op})
		}
	}
	// What ends the fixtures goes last, the client's deletion very last.
	rank := func(o specOp) int {
		switch {
		case o.method == "DELETE" && strings.HasPrefix(o.path, "/api/admin/"):
			return 3
		case o.method == "DELETE":
			return 2
		case strings.HasSuffix(o.path, "/logout") || strings.HasSuffix(o.path, "/reconnect"):
			return 1
		}
		return 0
	}
	sort.SliceStable(ops, func(i, j int) bool {
		if rank(ops[i]) != rank(ops[j]) {
			return rank(ops[i]) < rank(ops[j])
		}
		return ops[i].path+ops[i].method < ops[j].path+ops[j].method
	})

	examples := 0
	for _, o := range ops {
		token := c.token // the spec's default security
		if o.op.Security != nil {
			token = ""
			for _, req := range o.op.Security {
				if req.ContainsEmptyRequirement || req.Requirements == nil || req.Requirements.Len() == 0 {
					token = "" // optional: try without
					break
				}
				if _, ok := req.Requirements.Get("adminToken"); ok {
					token = m.AdminToken
				}
				if _, ok := req.Requirements.Get("clientToken"); ok {
					token = c.token
				}
			}
		}
		bodies := requestExamples(t, o.op)
		if len(bodies) == 0 {
			bodies = []namedBody{{name: "no body"}}
		}
		for _, b := range bodies {
			name := o.method + " " + o.path + " (" + b.name + ")"
			body := withLoopbackURLs(t, b.body, rc.URL())
			status := specExercise(t, v, m, name, o.method, params(o.path), token, body, true)
			if b.body != nil {
				examples++
				if status == 400 || status == 422 || status >= 500 {
					t.Errorf("%s: the example is answered %d", name, status)
				}
			} else if status >= 500 {
				t.Errorf("%s: answered %d", name, status)
			}
		}
		// Without credentials a protected route answers the documented 401.
		if token != "" && rank(o) == 0 {
			name := o.method + " " + o.path + " (no token)"
			if status := specExercise(t, v, m, name, o.method, params(o.path), "", nil, false); status != http.StatusUnauthorized {
				t.Errorf("%s: answered %d, want 401", name, status)
			}
		}
	}

	// What the receiver got is what the spec's webhooks section describes.
	payload := model.Components.Schemas.GetOrZero("MessagePayload").Schema()
	seen := map[string]bool{}
	waitFor(t, "a message delivery", 5*time.Second, func() bool {
		for _, d := range rc.deliveries() {
			var p struct {
				Event string `json:"event"`
			}
			json.Unmarshal(d.Body, &p)
			seen[p.Event] = true
		}
		return seen["message"]
	})
	for _, d := range rc.deliveries() {
		if ok, errs := schema_validation.NewSchemaValidator().ValidateSchemaBytes(payload, d.Body); !ok {
			t.Errorf("a delivered payload does not match MessagePayload:\n%s%s", specErrors(errs), d.Body)
		}
		for _, h := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
			if d.Header.Get(h) == "" {
				t.Errorf("delivery without %s header", h)
			}
		}
	}
	if examples < 15 {
		t.Errorf("only %d request examples exercised", examples)
	}
}

type namedBody struct {
	name string
	body []byte
}

// requestExamples returns the JSON request examples of an operation.
func requestExamples(t *testing.T, op *v3.Operation) []namedBody {
	t.Helper()
	if op.RequestBody == nil || op.RequestBody.Content == nil {
		return nil
	}
	media := op.RequestBody.Content.GetOrZero("application/json")
	if media == nil {
		return nil
	}
	var out []namedBody
	add := func(name string, node interface{ Decode(any) error }) {
		var v any
		if err := node.Decode(&v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, namedBody{name: name, body: b})
	}
	if media.Example != nil {
		add("example", media.Example)
	}
	for name, ex := range media.Examples.FromOldest() {
		add(name, ex.Value)
	}
	return out
}

// withLoopbackURLs points every URL of an example at the loopback
// receiver: the examples name public hosts, and tests reach only loopback.
func withLoopbackURLs(t *testing.T, body []byte, url string) []byte {
	t.Helper()
	if body == nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, y := range x {
				x[k] = walk(y)
			}
		case []any:
			for i, y := range x {
				x[i] = walk(y)
			}
		case string:
			if strings.HasPrefix(x, "http://") || strings.HasPrefix(x, "https://") {
				return url
			}
		}
		return x
	}
	out, _ := json.Marshal(walk(v))
	return out
}

// specExercise sends one request, validates it (when it is meant to be
// valid) and its answer against the spec, and returns the status.
func specExercise(t *testing.T, v validator.Validator, m *app.Main, name, method, path, token string, body []byte, validRequest bool) int {
	t.Helper()
	newReq := func() *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, m.URL()+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req
	}
	if ok, errs := v.ValidateHttpRequest(newReq()); validRequest && !ok {
		t.Errorf("%s: the request does not match the spec:\n%s", name, specErrors(errs))
	}
	resp, err := http.DefaultClient.Do(newReq())
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if ok, errs := v.ValidateHttpResponse(newReq(), resp); !ok {
		t.Errorf("%s: the answer %d does not match the spec:\n%s\n%s", name, resp.StatusCode, specErrors(errs), specTruncate(b, 600))
	}
	return resp.StatusCode
}

func specErrors(errs []*valerrors.ValidationError) string {
	var sb strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&sb, "  %s: %s\n", e.Message, e.Reason)
		for _, se := range e.SchemaValidationErrors {
			fmt.Fprintf(&sb, "    %s at %s\n", se.Reason, se.FieldPath)
		}
	}
	return sb.String()
}

func specTruncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
