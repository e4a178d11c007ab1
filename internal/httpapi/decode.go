package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/wagate/wagate/internal/errs"
)

// decode reads a JSON body into v. Every way a body can be wrong is a 4xx:
// too large (413), multipart (415), malformed or wrongly typed (400).
func decode(r *http.Request, v any) error {
	// The body is parsed as JSON whatever the Content-Type says, since curl's
	// -d sends a form type by default; only multipart is clearly not JSON.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); strings.HasPrefix(mt, "multipart/") {
		return errs.E(errs.Unsupported, "Content-Type must be application/json")
	}
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return errs.E(errs.Invalid, "request body must hold a single JSON value")
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return decodeError(err)
	}
	return nil
}

func decodeError(err error) error {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return errs.E(errs.TooLarge, "request body exceeds %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return errs.E(errs.Invalid, "request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.E(errs.Invalid, "request body is truncated JSON")
	case errors.As(err, &syntaxErr):
		return errs.E(errs.Invalid, "malformed JSON at byte %d", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return errs.E(errs.Invalid, "%s must be %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
		}
		return errs.E(errs.Invalid, "request body must be a JSON %s", jsonKind(typeErr.Type.Kind().String()))
	default:
		return errs.Wrap(errs.Invalid, err, "invalid request body: "+err.Error())
	}
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

// queryInt reads an optional integer query parameter within [lo, hi].
func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, errs.E(errs.Invalid, "%s must be an integer between %d and %d", name, lo, hi)
	}
	return n, nil
}

// pathInt reads an integer path value; anything else is a 404, as no such
// resource can exist.
func pathInt(r *http.Request, name, what string) (int64, error) {
	n, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || n < 1 {
		return 0, errs.E(errs.NotFound, "%s not found", what)
	}
	return n, nil
}

// queryBool reads an optional boolean query parameter.
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errs.E(errs.Invalid, "%s must be true or false", name)
	}
	return b, nil
}
