// Package openapi serves wagate's API description: the OpenAPI 3.1 spec at
// /openapi.json and a self-contained docs page at /docs that renders it in
// the browser without fetching anything from another host.
package openapi

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"gopkg.in/yaml.v3"
)

// The spec is written in YAML for people and served as JSON for tools.
//
//go:embed openapi.yaml docs.html docs.js docs.css
var files embed.FS

// Spec returns the embedded spec as YAML, as written.
func Spec() []byte {
	b, err := files.ReadFile("openapi.yaml")
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	return b
}

// JSON returns the spec converted to JSON. Keys keep the order they have in
// the YAML, so /docs lists paths and properties as the spec is written.
func JSON() ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(Spec(), &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// writeJSON writes a YAML node as JSON. Mapping keys are written as strings
// (a YAML key like 200 is the status code "200" in OpenAPI).
func writeJSON(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return fmt.Errorf("line %d: expected one document", n.Line)
		}
		return writeJSON(buf, n.Content[0])
	case yaml.AliasNode:
		return writeJSON(buf, n.Alias)
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeScalar(buf, n.Content[i].Value); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, c); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str", "!!timestamp", "!!binary":
			return writeScalar(buf, n.Value)
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		return writeScalar(buf, v)
	}
	return fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

func writeScalar(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline
	return nil
}

// Mount registers GET /openapi.json and GET /docs on mux. Both bodies are
// rendered once, here: a broken spec fails at start-up and in the tests
// rather than at the first request.
func Mount(mux *http.ServeMux) {
	spec, err := JSON()
	if err != nil {
		panic(err) // the embedded spec is checked by the package tests
	}
	page, csp := DocsPage()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(spec)
	})
	mux.HandleFunc("GET /docs", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		w.Write(page)
	})
}

// DocsPage returns the docs page, its script and style inlined, and the
// Content-Security-Policy that allows exactly those (by hash) plus fetching
// the spec from the same origin: nothing can be loaded from another host.
// Inlining keeps /docs a single route.
func DocsPage() (page []byte, csp string) {
	read := func(name string) string {
		b, err := files.ReadFile(name)
		if err != nil {
			panic(err) // embedded at build time: cannot happen
		}
		return string(b)
	}
	js, css := read("docs.js"), read("docs.css")
	html := strings.Replace(read("docs.html"), "/*JS*/", js, 1)
	html = strings.Replace(html, "/*CSS*/", css, 1)
	csp = "default-src 'none'; script-src " + hashSource(js) + "; style-src " + hashSource(css) +
		"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return []byte(html), csp
}

// hashSource is the CSP source expression of an inline script or style.
func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}
