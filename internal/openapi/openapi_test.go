package openapi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"gopkg.in/yaml.v3"

	"github.com/wagate/wagate/internal/openapi"
)

// TestSpecIsValidOpenAPI31 checks the embedded spec against the OpenAPI 3.1
// schema with a library made for it, and that every $ref resolves.
func TestSpecIsValidOpenAPI31(t *testing.T) {
	spec, err := openapi.JSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1") {
		t.Fatalf("spec version %q, want 3.1.x", v)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build model (unresolved references?): %v", err)
	}
	if model.Model.Paths == nil || model.Model.Paths.PathItems.Len() == 0 {
		t.Fatal("spec has no paths")
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s: %s", e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s at %s (%s)", se.Reason, se.FieldPath, se.KeywordLocation)
			}
		}
	}
}

// TestSpecExamplesMatchSchemas validates every example of a request or
// response body, and every schema-level example, against its schema: an
// example that lies is worse than none.
func TestSpecExamplesMatchSchemas(t *testing.T) {
	spec, _ := openapi.JSON()
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		t.Fatal(err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			where := strings.ToUpper(method) + " " + path
			if op.RequestBody != nil {
				for mt, media := range op.RequestBody.Content.FromOldest() {
					n += validateExamples(t, where+" request "+mt, media)
				}
			}
			if op.Responses != nil {
				for code, resp := range op.Responses.Codes.FromOldest() {
					if resp.Content == nil {
						continue
					}
					for mt, media := range resp.Content.FromOldest() {
						n += validateExamples(t, where+" "+code+" "+mt, media)
					}
				}
			}
		}
	}
	for name, item := range model.Model.Webhooks.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			for mt, media := range op.RequestBody.Content.FromOldest() {
				n += validateExamples(t, "webhook "+name+" "+method+" "+mt, media)
			}
		}
	}
	for name, sp := range model.Model.Components.Schemas.FromOldest() {
		s := sp.Schema()
		if s.Example != nil {
			var ex any
			if err := s.Example.Decode(&ex); err != nil {
				t.Fatal(err)
			}
			n += validateValue(t, "schema "+name+" example", sp, ex)
		}
	}
	if n < 20 {
		t.Fatalf("only %d examples checked; the spec should carry more", n)
	}
}

// TestDocsPageIsSelfContained: the page and its script name no other host,
// and its CSP allows exactly the inlined script and style.
func TestDocsPageIsSelfContained(t *testing.T) {
	mux := http.NewServeMux()
	openapi.Mount(mux)
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/docs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "script-src 'sha256-", "style-src 'sha256-"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") {
		t.Errorf("CSP allows too much: %q", csp)
	}
	// Any URL with a scheme, or a protocol-relative src/href, would load
	// something from elsewhere.
	if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindAll(body, -1); len(m) > 0 {
		t.Errorf("docs page references other hosts: %q", m)
	}
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["'](https?:|//)`).FindAll(body, -1); len(m) > 0 {
		t.Errorf("docs page loads from other hosts: %q", m)
	}
	for _, want := range []string{`fetch("openapi.json"`, "<script>", "</script>", "<style>"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("docs page lacks %q", want)
		}
	}
	// The hashes in the CSP are those of the inlined script and style, or
	// a browser would refuse to run the page.
	page, wantCSP := openapi.DocsPage()
	if csp != wantCSP || !bytes.Equal(page, body) {
		t.Errorf("served page or CSP differ from DocsPage()")
	}
	script := between(string(body), "<script>", "</script>")
	style := between(string(body), "<style>", "</style>")
	if !strings.Contains(csp, hash(script)) || !strings.Contains(csp, hash(style)) {
		t.Errorf("CSP hashes do not match the inlined script and style")
	}
}

// TestOpenAPIJSONServed: /openapi.json is the embedded YAML as JSON.
func TestOpenAPIJSONServed(t *testing.T) {
	mux := http.NewServeMux()
	openapi.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	raw, _ := io.ReadAll(resp.Body)
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	// Keys keep the spec's order, so the docs page follows it.
	if i, j := bytes.Index(raw, []byte(`"/healthz"`)), bytes.Index(raw, []byte(`"/api/admin/clients"`)); i < 0 || j < i {
		t.Error("paths are not in the order of openapi.yaml")
	}
	want, _ := openapi.JSON()
	var w map[string]any
	json.Unmarshal(want, &w)
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatal("served spec differs from the embedded one")
	}
	if got["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v", got["openapi"])
	}
	// Status codes are strings in JSON (YAML keys like 200 become "200").
	paths := got["paths"].(map[string]any)
	resps := paths["/healthz"].(map[string]any)["get"].(map[string]any)["responses"].(map[string]any)
	if _, ok := resps["200"]; !ok {
		t.Fatalf("responses keys: %v", resps)
	}
}

// validateExamples checks the example and examples of one media type
// against its schema and returns how many it checked.
func validateExamples(t *testing.T, where string, media *v3.MediaType) int {
	t.Helper()
	if media.Schema == nil {
		return 0
	}
	n := 0
	if media.Example != nil {
		var ex any
		if err := media.Example.Decode(&ex); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		n += validateValue(t, where+" example", media.Schema, ex)
	}
	for name, ex := range media.Examples.FromOldest() {
		var v any
		if err := ex.Value.Decode(&v); err != nil {
			t.Fatalf("%s %s: %v", where, name, err)
		}
		n += validateValue(t, where+" example "+name, media.Schema, v)
	}
	return n
}

func validateValue(t *testing.T, where string, sp *base.SchemaProxy, v any) int {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	schema := sp.Schema()
	if schema == nil {
		t.Fatalf("%s: schema does not build: %v", where, sp.GetBuildError())
	}
	if ok, errs := schema_validation.NewSchemaValidator().ValidateSchemaBytes(schema, b); !ok {
		for _, e := range errs {
			t.Errorf("%s: %s: %s", where, e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s at %s (%s)", se.Reason, se.FieldPath, se.KeywordLocation)
			}
		}
	}
	return 1
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// TestSpecHasNoImplicitNulls catches a YAML trap: in a flow mapping such as
// { description: Text, caption or emoji }, commas split the description
// into keys with empty (null) values, which JSON Schema silently ignores.
func TestSpecHasNoImplicitNulls(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal(openapi.Spec(), &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if v := n.Content[i+1]; v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == "" {
					t.Errorf("openapi.yaml line %d: key %q has no value (quote a text that holds commas)", n.Content[i].Line, n.Content[i].Value)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	j := strings.Index(s, b)
	if i < 0 || j < i {
		return ""
	}
	return s[i+len(a) : j]
}
