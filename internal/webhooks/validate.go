package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/ssrf"
)

// Limits on what a client may register. They bound the work and storage one
// tenant can cause, and are part of the API's documented contract.
const (
	DefaultMaxRetries = 5 // when max_retries is omitted: about an hour of backoff
	MaxMaxRetries     = 25
	MaxURLLength      = 2048
	MaxHeaders        = 20
	MaxHeaderName     = 256
	MaxHeaderValue    = 1024
	MaxDescription    = 500 // characters
	MinPhoneDigits    = 8
	MaxPhoneDigits    = 15 // E.164
	MaxGracePeriod    = 7 * 24 * time.Hour
	AllEvents         = "*"
)

// DefaultEvents is what a webhook registered without "events" receives:
// the seed's only event.
func DefaultEvents() []string { return []string{events.TypeMessage} }

// NormalizePhone reduces a phone number to its digits, dropping the
// punctuation people write numbers with. "" stays "" (every session).
func NormalizePhone(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' || r == ' ' || r == '-' || r == '(' || r == ')':
		default:
			return "", errs.E(errs.Invalid, "phone_number may only contain digits, spaces, '+', '-', '(' and ')'")
		}
	}
	if d := b.String(); len(d) >= MinPhoneDigits && len(d) <= MaxPhoneDigits {
		return d, nil
	}
	return "", errs.E(errs.Invalid, "phone_number must have %d to %d digits", MinPhoneDigits, MaxPhoneDigits)
}

func validateMaxRetries(n int) error {
	if n < 0 || n > MaxMaxRetries {
		return errs.E(errs.Invalid, "max_retries must be between 0 and %d", MaxMaxRetries)
	}
	return nil
}

// normalizeEvents validates a subscription list and returns it without
// duplicates; a list holding "*" becomes just "*".
func normalizeEvents(list []string) ([]string, error) {
	if len(list) == 0 {
		return nil, errs.E(errs.Invalid, "events must list at least one event type (or \"*\" for all)")
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		e = strings.TrimSpace(e)
		if e == AllEvents {
			return []string{AllEvents}, nil
		}
		if !slices.Contains(events.Types, e) {
			return nil, errs.E(errs.Invalid, "events: unknown event type %q; known types: %s, or \"*\" for all",
				e, strings.Join(events.Types, ", "))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// reservedHeader reports whether a canonical header name may not be set
// by a client: wagate sets it on every delivery, it controls the connection,
// or it is a signature header (or a Svix alias, which verifiers also read).
func reservedHeader(canon string) bool {
	switch canon {
	case "Connection", "Content-Encoding", "Content-Length", "Content-Type", "Expect", "Host",
		"Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent":
		return true
	}
	return strings.HasPrefix(canon, "Webhook-") || strings.HasPrefix(canon, "Svix-")
}

// normalizeHeaders validates custom delivery headers and returns them with
// canonical names, so that "x-api-key" and "X-Api-Key" are one header.
func normalizeHeaders(h map[string]string) (map[string]string, error) {
	if len(h) > MaxHeaders {
		return nil, errs.E(errs.Invalid, "headers: at most %d custom headers", MaxHeaders)
	}
	out := make(map[string]string, len(h))
	for name, value := range h {
		if name == "" || len(name) > MaxHeaderName || !isToken(name) {
			return nil, errs.E(errs.Invalid, "headers: %q is not a valid header name", truncate(name, 64))
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if reservedHeader(canon) {
			return nil, errs.E(errs.Invalid, "headers: %s is reserved: wagate sets it, or it controls the connection", canon)
		}
		if len(value) > MaxHeaderValue {
			return nil, errs.E(errs.Invalid, "headers: the value of %s exceeds %d bytes", canon, MaxHeaderValue)
		}
		if !validHeaderValue(value) {
			return nil, errs.E(errs.Invalid, "headers: the value of %s contains a control character (CR, LF, NUL...)", canon)
		}
		if _, dup := out[canon]; dup {
			return nil, errs.E(errs.Invalid, "headers: %s is given twice", canon)
		}
		out[canon] = value
	}
	return out, nil
}

// isToken reports whether s is an RFC 9110 token (a valid field name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters other than tab: CR and LF
// would let a value inject headers, and net/http rejects the rest.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

func normalizeDescription(s string) (string, error) {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > MaxDescription {
		return "", errs.E(errs.Invalid, "description must be at most %d characters", MaxDescription)
	}
	if !utf8.ValidString(s) {
		return "", errs.E(errs.Invalid, "description must be valid UTF-8")
	}
	return s, nil
}

// checkURL validates a destination URL: the SSRF guard's rules plus a
// length bound. field names the JSON field in messages.
func (s *Service) checkURL(ctx context.Context, field, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	switch {
	case raw == "":
		return "", errs.E(errs.Invalid, "%s is required", field)
	case len(raw) > MaxURLLength:
		return "", errs.E(errs.Invalid, "%s must be at most %d characters", field, MaxURLLength)
	}
	// Resolution of a name is bounded: a slow DNS server must not hold the
	// request (or, on SQLite, anything else) for long.
	ctx, cancel := context.WithTimeout(ctx, s.resolveTimeout)
	defer cancel()
	if err := s.guard.CheckURL(ctx, raw, s.resolver); err != nil {
		var ue *ssrf.URLError
		if errors.As(err, &ue) {
			return "", errs.Wrap(errs.Invalid, err, fmt.Sprintf("invalid %s: %s", field, ue.Reason))
		}
		return "", errs.Wrap(errs.Invalid, err, fmt.Sprintf("invalid %s", field))
	}
	return raw, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
