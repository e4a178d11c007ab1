// Package webhooksig signs and verifies webhooks as the Standard Webhooks
// specification (https://www.standardwebhooks.com/) describes. wagate uses
// it to sign every delivery; receivers can use it to check them.
//
// A delivery carries three headers:
//
//	webhook-id:        the event's stable id (use it to drop duplicates)
//	webhook-timestamp: Unix seconds when the attempt was signed
//	webhook-signature: space-separated "v1,<base64 HMAC-SHA256>" entries
//
// The HMAC is computed over "<id>.<timestamp>.<raw body>" with the secret's
// decoded bytes as key. During a secret rotation one entry per active
// secret is sent, so a receiver holding either secret accepts it.
//
// A receiver, in short:
//
//	v, err := webhooksig.NewVerifier(os.Getenv("WAGATE_WEBHOOK_SECRET"))
//	...
//	func handle(w http.ResponseWriter, r *http.Request) {
//		body, err := v.VerifyRequest(r)
//		if err != nil {
//			http.Error(w, "bad signature", http.StatusUnauthorized)
//			return
//		}
//		// body is authentic; dedupe on r.Header.Get("webhook-id").
//	}
package webhooksig

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Header names. Verify also accepts the svix- prefixed equivalents.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

const (
	// SecretPrefix marks a serialized secret; the rest is standard base64.
	SecretPrefix = "whsec_"
	// MinSecretBytes and MaxSecretBytes bound secret sizes per the spec;
	// ParseSecret enforces only the minimum so that longer secrets from
	// other senders still verify.
	MinSecretBytes = 24
	MaxSecretBytes = 64
	// DefaultTolerance is how far webhook-timestamp may be from the
	// receiver's clock, in either direction, before a message is refused
	// as a possible replay.
	DefaultTolerance = 5 * time.Minute
	// DefaultMaxBodyBytes bounds how much of a request body VerifyRequest
	// reads.
	DefaultMaxBodyBytes = 1 << 20
)

// newSecretBytes is the size NewSecret generates: comfortably inside the
// spec's 24–64 byte range and the full width of SHA-256.
const newSecretBytes = 32

// sigLen is len("v1,") plus the base64 length of a SHA-256 MAC.
const sigLen = 3 + 44

// Errors are distinct so a receiver can log why a delivery was refused.
// ErrInvalidSecret is a configuration error; the others reject a request
// (answer 401, or 413 for ErrBodyTooLarge).
var (
	ErrInvalidSecret       = errors.New("webhooksig: invalid secret")
	ErrMissingHeaders      = errors.New("webhooksig: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidTimestamp    = errors.New("webhooksig: invalid webhook-timestamp header")
	ErrTimestampTooOld     = errors.New("webhooksig: message timestamp too old")
	ErrTimestampTooNew     = errors.New("webhooksig: message timestamp too new")
	ErrNoMatchingSignature = errors.New("webhooksig: no matching signature")
	ErrBodyTooLarge        = errors.New("webhooksig: request body too large")
)

// NewSecret returns a fresh "whsec_" secret of 32 random bytes.
func NewSecret() (string, error) {
	var b [newSecretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("webhooksig: generating secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// ParseSecret decodes a secret with or without the "whsec_" prefix into
// the HMAC key. Surrounding whitespace is ignored, since secrets are often
// pasted or read from files with a trailing newline.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), SecretPrefix)
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not standard base64 after %q", ErrInvalidSecret, SecretPrefix)
	}
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrInvalidSecret, len(key), MinSecretBytes)
	}
	return key, nil
}

// Sign returns the "v1,<base64>" signature of body for msgID and ts with
// the given key (as returned by ParseSecret).
func Sign(secret []byte, msgID string, ts time.Time, body []byte) string {
	// One buffer holds the signed prefix, then the output and the raw MAC
	// behind it, so the call allocates little beyond hmac.New itself.
	buf := make([]byte, 0, len(msgID)+22+sigLen+sha256.Size)
	buf = appendPrefix(buf, msgID, ts.Unix())
	n := len(buf)
	buf = appendSignature(buf, secret, buf[:n], body)
	return string(buf[n:])
}

// Headers returns the three header values for one delivery attempt. With
// several secrets (a rotation in progress) the signature holds one
// space-separated entry per secret, in the order given.
func Headers(secrets [][]byte, msgID string, ts time.Time, body []byte) (id, timestamp, signature string) {
	unix := ts.Unix()
	prefix := appendPrefix(make([]byte, 0, len(msgID)+22), msgID, unix)
	out := make([]byte, 0, len(secrets)*(sigLen+1)+sha256.Size)
	for i, s := range secrets {
		if i > 0 {
			out = append(out, ' ')
		}
		out = appendSignature(out, s, prefix, body)
	}
	return msgID, strconv.FormatInt(unix, 10), string(out)
}

// appendPrefix appends "msgID.unix." to dst.
func appendPrefix(dst []byte, msgID string, unix int64) []byte {
	dst = append(dst, msgID...)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, unix, 10)
	return append(dst, '.')
}

// appendSignature appends "v1,<base64 HMAC-SHA256(secret, prefix+body)>" to
// dst. The raw MAC is parked in dst's spare capacity just past where its
// encoding goes, so no separate buffer escapes to the heap.
func appendSignature(dst, secret, prefix, body []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write(prefix)
	mac.Write(body)
	n := len(dst)
	dst = slices.Grow(dst, sigLen+sha256.Size)
	sum := mac.Sum(dst[n+sigLen : n+sigLen])
	dst = append(dst, "v1,"...)
	return base64.StdEncoding.AppendEncode(dst, sum)
}

// Verifier checks signed webhooks against one or more secrets. Set its
// fields before first use; after that it is safe for concurrent use.
type Verifier struct {
	// Tolerance is the accepted distance between webhook-timestamp and
	// Now, in both directions. Zero or negative means DefaultTolerance.
	Tolerance time.Duration
	// Now returns the current time; nil means time.Now. Tests inject a
	// fixed clock here.
	Now func() time.Time
	// MaxBodyBytes bounds the body VerifyRequest reads; zero or negative
	// means DefaultMaxBodyBytes.
	MaxBodyBytes int64

	keys [][]byte
}

// NewVerifier returns a Verifier accepting a signature by any of the given
// secrets ("whsec_..." or bare base64). Pass both the old and the new
// secret while a rotation is in progress.
func NewVerifier(secrets ...string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret given", ErrInvalidSecret)
	}
	v := &Verifier{}
	for i, s := range secrets {
		k, err := ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i+1, err)
		}
		v.keys = append(v.keys, k)
	}
	return v, nil
}

// Verify checks that h carries a valid, fresh signature of body. It returns
// nil or one of ErrMissingHeaders, ErrInvalidTimestamp,
// ErrTimestampTooOld, ErrTimestampTooNew or ErrNoMatchingSignature. body
// must be the raw bytes received, before any JSON decoding.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	if v == nil {
		return ErrNoMatchingSignature
	}
	id, ts, sigs := headerValues(h, "webhook-")
	if id == "" && ts == "" && sigs == "" {
		id, ts, sigs = headerValues(h, "svix-")
	}
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}

	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrInvalidTimestamp
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	nowT := now()
	nowSec := nowT.Unix()
	// The distance between two int64s always fits in a uint64. Deciding
	// timestamps more than 2^40 s (~35,000 years, beyond any time.Duration
	// tolerance) away on that keeps time.Unix clear of values that overflow
	// its internal representation.
	const far = 1 << 40
	if unix < nowSec && uint64(nowSec)-uint64(unix) > far {
		return ErrTimestampTooOld
	}
	if unix > nowSec && uint64(unix)-uint64(nowSec) > far {
		return ErrTimestampTooNew
	}
	age := nowT.Sub(time.Unix(unix, 0))
	if age > tol {
		return ErrTimestampTooOld
	}
	if age < -tol { // not -age > tol: negating a saturated minimum overflows
		return ErrTimestampTooNew
	}

	// The signed content uses the timestamp exactly as sent, not a
	// re-formatted number, so it matches what the sender hashed.
	prefix := make([]byte, 0, len(id)+len(ts)+2)
	prefix = append(append(append(append(prefix, id...), '.'), ts...), '.')
	expected := make([][sha256.Size]byte, len(v.keys))
	for i, k := range v.keys {
		mac := hmac.New(sha256.New, k)
		mac.Write(prefix)
		mac.Write(body)
		mac.Sum(expected[i][:0])
	}

	var got [sha256.Size + 1]byte // DecodedLen(44) is 33
	for entry := range strings.FieldsSeq(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		// Unknown versions (e.g. asymmetric "v1a") are skipped, not errors,
		// so senders can add schemes without breaking receivers.
		if !ok || version != "v1" || len(sig) != 44 {
			continue
		}
		// Strict: a signer always emits canonical base64, and accepting
		// variants with stray padding bits would only widen the input space.
		n, err := base64.StdEncoding.Strict().Decode(got[:], []byte(sig))
		if err != nil || n != sha256.Size {
			continue
		}
		for i := range expected {
			if hmac.Equal(got[:n], expected[i][:]) {
				return nil
			}
		}
	}
	return ErrNoMatchingSignature
}

// headerValues reads the id, timestamp and signature headers with the
// given prefix. Several signature header lines are joined, as a proxy may
// split them. Non-canonical keys (a hand-built http.Header with lower-case
// names) are looked up too.
func headerValues(h http.Header, prefix string) (id, ts, sigs string) {
	get := func(name string) []string {
		if vs := h.Values(name); len(vs) > 0 {
			return vs
		}
		return h[name]
	}
	first := func(vs []string) string {
		if len(vs) == 0 {
			return ""
		}
		return vs[0]
	}
	id = first(get(prefix + "id"))
	ts = first(get(prefix + "timestamp"))
	sigs = strings.Join(get(prefix+"signature"), " ")
	return id, ts, sigs
}

// VerifyRequest reads r's body (at most MaxBodyBytes), verifies it and
// returns it. r.Body is replaced with a reader over the same bytes so that
// later handlers can still read it. On any error the body is not returned.
func (v *Verifier) VerifyRequest(r *http.Request) ([]byte, error) {
	if v == nil {
		return nil, ErrNoMatchingSignature
	}
	limit := v.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
		r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("webhooksig: reading body: %w", err)
		}
	}
	if int64(len(body)) > limit {
		return nil, ErrBodyTooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := v.Verify(r.Header, body); err != nil {
		return nil, err
	}
	return body, nil
}

// VerifyRequest is a one-shot form of Verifier.VerifyRequest. A receiver
// handling many requests should build one Verifier and reuse it instead of
// parsing the secret on every call.
func VerifyRequest(r *http.Request, secret string) ([]byte, error) {
	v, err := NewVerifier(secret)
	if err != nil {
		return nil, err
	}
	return v.VerifyRequest(r)
}
