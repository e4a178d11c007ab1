package webhooksig

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Published Standard Webhooks test vector (used by the official libraries'
// test suites).
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specMsgID  = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustKey(t testing.TB, s string) []byte {
	t.Helper()
	k, err := ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixedVerifier returns a verifier whose clock is stopped at now.
func fixedVerifier(t testing.TB, now time.Time, secrets ...string) *Verifier {
	t.Helper()
	v, err := NewVerifier(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return now }
	return v
}

func header(id, ts, sig string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set(HeaderID, id)
	}
	if ts != "" {
		h.Set(HeaderTimestamp, ts)
	}
	if sig != "" {
		h.Set(HeaderSignature, sig)
	}
	return h
}

func TestSpecVector(t *testing.T) {
	got := Sign(mustKey(t, specSecret), specMsgID, time.Unix(specTS, 0), []byte(specBody))
	if got != specSig {
		t.Fatalf("Sign = %s, want %s", got, specSig)
	}
	v := fixedVerifier(t, time.Unix(specTS, 0), specSecret)
	if err := v.Verify(header(specMsgID, strconv.Itoa(specTS), specSig), []byte(specBody)); err != nil {
		t.Fatalf("Verify(spec vector) = %v", err)
	}
}

// TestKnownAnswerIndependent recomputes the signature straight from the
// definition with crypto/hmac, without any of the package's helpers.
func TestKnownAnswerIndependent(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	msgID := "evt_01J9Z8Q6"
	ts := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	body := []byte(`{"event":"message","content":"olá"}`)

	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.%s", msgID, ts.Unix(), body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))

	if got := Sign(mustKey(t, secret), msgID, ts, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	id, tsHdr, sig := Headers([][]byte{key}, msgID, ts, body)
	if id != msgID || tsHdr != "1740830400" || sig != want {
		t.Fatalf("Headers = %q %q %q", id, tsHdr, sig)
	}
}

// TestOfficialLibrary cross-checks against the Standard Webhooks Go
// library in both directions.
func TestOfficialLibrary(t *testing.T) {
	wh, err := standardwebhooks.NewWebhook(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	key := mustKey(t, specSecret)
	body := []byte(`{"event":"message","from":"5511999999999"}`)

	// Theirs signs, ours verifies.
	ts := time.Unix(1700000000, 0)
	theirs, err := wh.Sign("evt_1", ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if ours := Sign(key, "evt_1", ts, body); ours != theirs {
		t.Fatalf("Sign = %s, official library = %s", ours, theirs)
	}
	v := fixedVerifier(t, ts, specSecret)
	if err := v.Verify(header("evt_1", "1700000000", theirs), body); err != nil {
		t.Fatalf("Verify(official signature) = %v", err)
	}

	// Ours signs (with a rotation pair), theirs verifies against its clock.
	other, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	id, tsHdr, sig := Headers([][]byte{mustKey(t, other), key}, "evt_2", now, body)
	if err := wh.Verify(body, header(id, tsHdr, sig)); err != nil {
		t.Fatalf("official Verify(our headers) = %v", err)
	}
	if err := wh.Verify(append(body, ' '), header(id, tsHdr, sig)); err == nil {
		t.Fatal("official Verify accepted a tampered body")
	}
}

func TestRoundTrip(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1750000000, 0)
	v := fixedVerifier(t, now, secret)
	for _, body := range [][]byte{nil, {}, []byte("{}"), bytes.Repeat([]byte("x"), 1<<16)} {
		id, ts, sig := Headers([][]byte{mustKey(t, secret)}, "evt_rt", now, body)
		if err := v.Verify(header(id, ts, sig), body); err != nil {
			t.Errorf("Verify(len %d) = %v", len(body), err)
		}
	}
}

func TestRotation(t *testing.T) {
	oldS, _ := NewSecret()
	newS, _ := NewSecret()
	now := time.Unix(1750000000, 0)
	body := []byte(`{"event":"message"}`)
	id, ts, sig := Headers([][]byte{mustKey(t, newS), mustKey(t, oldS)}, "evt_rot", now, body)
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("signature %q has %d entries, want 2", sig, n)
	}
	for name, secrets := range map[string][]string{
		"old only": {oldS},
		"new only": {newS},
		"both":     {oldS, newS},
	} {
		if err := fixedVerifier(t, now, secrets...).Verify(header(id, ts, sig), body); err != nil {
			t.Errorf("%s: Verify = %v", name, err)
		}
	}
	// Receiver mid-rotation, sender still on the old secret only.
	_, ts, oldSig := Headers([][]byte{mustKey(t, oldS)}, "evt_rot", now, body)
	if err := fixedVerifier(t, now, newS, oldS).Verify(header(id, ts, oldSig), body); err != nil {
		t.Errorf("receiver with both secrets rejected old-only signature: %v", err)
	}
	third, _ := NewSecret()
	if err := fixedVerifier(t, now, third).Verify(header(id, ts, sig), body); !errors.Is(err, ErrNoMatchingSignature) {
		t.Errorf("unrelated secret: Verify = %v, want ErrNoMatchingSignature", err)
	}
	if _, _, s := Headers(nil, "evt", now, body); s != "" {
		t.Errorf("Headers without secrets gave signature %q", s)
	}
}

func TestTampering(t *testing.T) {
	now := time.Unix(specTS, 0)
	v := fixedVerifier(t, now, specSecret)
	ts := strconv.Itoa(specTS)
	body := []byte(specBody)
	tests := []struct {
		name      string
		id, ts    string
		sig       string
		body      []byte
		want      error
		unchanged bool
	}{
		{name: "valid", id: specMsgID, ts: ts, sig: specSig, body: body},
		{name: "body", id: specMsgID, ts: ts, sig: specSig, body: []byte(`{"test": 2432232315}`), want: ErrNoMatchingSignature},
		{name: "body appended", id: specMsgID, ts: ts, sig: specSig, body: append([]byte(specBody), '\n'), want: ErrNoMatchingSignature},
		{name: "id", id: specMsgID + "x", ts: ts, sig: specSig, body: body, want: ErrNoMatchingSignature},
		{name: "timestamp", id: specMsgID, ts: strconv.Itoa(specTS + 1), sig: specSig, body: body, want: ErrNoMatchingSignature},
		{name: "timestamp leading zero", id: specMsgID, ts: "0" + ts, sig: specSig, body: body, want: ErrNoMatchingSignature},
		{name: "non-canonical base64 (padding bit set)", id: specMsgID, ts: ts, sig: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=", body: body, want: ErrNoMatchingSignature},
		{name: "signature bit", id: specMsgID, ts: ts, sig: "v1,h0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", body: body, want: ErrNoMatchingSignature},
		{name: "id/ts boundary shifted", id: specMsgID + ".1614265330", ts: "0", sig: specSig, body: body, want: ErrTimestampTooOld},
	}
	for _, tc := range tests {
		err := v.Verify(header(tc.id, tc.ts, tc.sig), tc.body)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestToleranceEdges(t *testing.T) {
	key := mustKey(t, specSecret)
	base := time.Unix(1750000000, 0)
	body := []byte("{}")
	check := func(v *Verifier, offset time.Duration, want error) {
		t.Helper()
		ts := base.Add(offset)
		err := v.Verify(header("evt", strconv.FormatInt(ts.Unix(), 10), Sign(key, "evt", ts, body)), body)
		if !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("tolerance %v, offset %v: Verify = %v, want %v", v.Tolerance, offset, err, want)
		}
	}
	v := fixedVerifier(t, base, specSecret)
	check(v, 0, nil)
	check(v, -5*time.Minute, nil)
	check(v, -5*time.Minute-time.Second, ErrTimestampTooOld)
	check(v, 5*time.Minute, nil)
	check(v, 5*time.Minute+time.Second, ErrTimestampTooNew)
	check(v, -24*time.Hour, ErrTimestampTooOld)
	check(v, 24*time.Hour, ErrTimestampTooNew)

	v.Tolerance = 10 * time.Second
	check(v, -10*time.Second, nil)
	check(v, -11*time.Second, ErrTimestampTooOld)
	check(v, 10*time.Second, nil)
	check(v, 11*time.Second, ErrTimestampTooNew)

	v.Tolerance = -1 // falls back to the default
	check(v, -5*time.Minute, nil)
	check(v, -5*time.Minute-time.Second, ErrTimestampTooOld)

	// The default clock is the real one.
	real, _ := NewVerifier(specSecret)
	now := time.Now()
	if err := real.Verify(header("evt", strconv.FormatInt(now.Unix(), 10), Sign(key, "evt", now, body)), body); err != nil {
		t.Errorf("default clock: Verify = %v", err)
	}
}

func TestMalformedHeaders(t *testing.T) {
	now := time.Unix(specTS, 0)
	v := fixedVerifier(t, now, specSecret)
	ts := strconv.Itoa(specTS)
	good := specSig[3:]
	body := []byte(specBody)
	huge := strings.Repeat("v1,"+strings.Repeat("A", 43)+"= ", 20000)
	tests := []struct {
		name       string
		id, ts     string
		sig        string
		want       error
		wantAccept bool
	}{
		{name: "no headers", want: ErrMissingHeaders},
		{name: "no id", ts: ts, sig: specSig, want: ErrMissingHeaders},
		{name: "no timestamp", id: specMsgID, sig: specSig, want: ErrMissingHeaders},
		{name: "no signature", id: specMsgID, ts: ts, want: ErrMissingHeaders},
		{name: "timestamp not a number", id: specMsgID, ts: "yesterday", sig: specSig, want: ErrInvalidTimestamp},
		{name: "timestamp float", id: specMsgID, ts: ts + ".5", sig: specSig, want: ErrInvalidTimestamp},
		{name: "timestamp spaces", id: specMsgID, ts: " " + ts, sig: specSig, want: ErrInvalidTimestamp},
		{name: "timestamp overflow", id: specMsgID, ts: "99999999999999999999999", sig: specSig, want: ErrInvalidTimestamp},
		{name: "timestamp min int64", id: specMsgID, ts: "-9223372036854775808", sig: specSig, want: ErrTimestampTooOld},
		{name: "timestamp max int64", id: specMsgID, ts: "9223372036854775807", sig: specSig, want: ErrTimestampTooNew},
		{name: "timestamp 300 years ahead", id: specMsgID, ts: strconv.Itoa(specTS + 300*366*86400), sig: specSig, want: ErrTimestampTooNew},
		{name: "timestamp 300 years behind", id: specMsgID, ts: strconv.Itoa(specTS - 300*366*86400), sig: specSig, want: ErrTimestampTooOld},
		{name: "timestamp just under 2^40 s ahead", id: specMsgID, ts: strconv.Itoa(specTS + 1<<40 - 1), sig: specSig, want: ErrTimestampTooNew},
		{name: "timestamp in ms", id: specMsgID, ts: ts + "000", sig: specSig, want: ErrTimestampTooNew},
		{name: "whitespace only signature", id: specMsgID, ts: ts, sig: "   ", want: ErrNoMatchingSignature},
		{name: "no comma", id: specMsgID, ts: ts, sig: "v1" + good, want: ErrNoMatchingSignature},
		{name: "empty v1", id: specMsgID, ts: ts, sig: "v1,", want: ErrNoMatchingSignature},
		{name: "comma only", id: specMsgID, ts: ts, sig: ",", want: ErrNoMatchingSignature},
		{name: "wrong version", id: specMsgID, ts: ts, sig: "v2," + good, want: ErrNoMatchingSignature},
		{name: "asymmetric version", id: specMsgID, ts: ts, sig: "v1a," + good, want: ErrNoMatchingSignature},
		{name: "upper-case version", id: specMsgID, ts: ts, sig: "V1," + good, want: ErrNoMatchingSignature},
		{name: "bad base64", id: specMsgID, ts: ts, sig: "v1," + strings.Repeat("!", 44), want: ErrNoMatchingSignature},
		{name: "url-safe base64", id: specMsgID, ts: ts, sig: "v1," + strings.NewReplacer("+", "-", "/", "_").Replace(good), want: ErrNoMatchingSignature},
		{name: "unpadded", id: specMsgID, ts: ts, sig: "v1," + strings.TrimRight(good, "="), want: ErrNoMatchingSignature},
		{name: "truncated", id: specMsgID, ts: ts, sig: "v1," + good[:40], want: ErrNoMatchingSignature},
		{name: "extra char", id: specMsgID, ts: ts, sig: "v1," + good + "A", want: ErrNoMatchingSignature},
		{name: "double comma", id: specMsgID, ts: ts, sig: "v1,," + good, want: ErrNoMatchingSignature},
		{name: "huge", id: specMsgID, ts: ts, sig: huge, want: ErrNoMatchingSignature},
		{name: "huge then valid", id: specMsgID, ts: ts, sig: huge + specSig, wantAccept: true},
		{name: "unknown versions around valid", id: specMsgID, ts: ts, sig: "  v2,zzz  v1a,abc " + specSig + "  v1,", wantAccept: true},
		{name: "bad entry before valid", id: specMsgID, ts: ts, sig: "v1,!!!! " + specSig, wantAccept: true},
	}
	for _, tc := range tests {
		start := time.Now()
		err := v.Verify(header(tc.id, tc.ts, tc.sig), body)
		if tc.wantAccept {
			if err != nil {
				t.Errorf("%s: Verify = %v, want nil", tc.name, err)
			}
		} else if !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: Verify took %v", tc.name, d)
		}
	}
}

func TestHeaderVariants(t *testing.T) {
	now := time.Unix(specTS, 0)
	v := fixedVerifier(t, now, specSecret)
	ts := strconv.Itoa(specTS)
	body := []byte(specBody)

	svix := http.Header{}
	svix.Set("svix-id", specMsgID)
	svix.Set("svix-timestamp", ts)
	svix.Set("svix-signature", specSig)
	if err := v.Verify(svix, body); err != nil {
		t.Errorf("svix- headers: %v", err)
	}

	// A hand-built header map with non-canonical lower-case keys.
	lower := http.Header{"webhook-id": {specMsgID}, "webhook-timestamp": {ts}, "webhook-signature": {specSig}}
	if err := v.Verify(lower, body); err != nil {
		t.Errorf("lower-case keys: %v", err)
	}

	// The signature split over two header lines.
	split := header(specMsgID, ts, "v2,abc")
	split.Add(HeaderSignature, specSig)
	if err := v.Verify(split, body); err != nil {
		t.Errorf("split signature header: %v", err)
	}

	// webhook- headers win; svix- ones are not mixed in.
	mixed := header(specMsgID, ts, "")
	mixed.Set("svix-signature", specSig)
	if err := v.Verify(mixed, body); !errors.Is(err, ErrMissingHeaders) {
		t.Errorf("mixed prefixes: Verify = %v, want ErrMissingHeaders", err)
	}

	if err := v.Verify(nil, body); !errors.Is(err, ErrMissingHeaders) {
		t.Errorf("nil header: Verify = %v", err)
	}
	var nilV *Verifier
	if err := nilV.Verify(header(specMsgID, ts, specSig), body); err == nil {
		t.Error("nil Verifier accepted a message")
	}
	var zero Verifier
	if err := zero.Verify(header(specMsgID, strconv.FormatInt(time.Now().Unix(), 10), specSig), body); !errors.Is(err, ErrNoMatchingSignature) {
		t.Errorf("zero Verifier: Verify = %v, want ErrNoMatchingSignature", err)
	}
}

func TestSecrets(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if a == b {
		t.Fatal("two NewSecret calls returned the same secret")
	}
	if !strings.HasPrefix(a, SecretPrefix) {
		t.Fatalf("secret %q lacks %q", a, SecretPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, SecretPrefix))
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret %q: %d bytes, %v", a, len(raw), err)
	}

	b24 := base64.StdEncoding.EncodeToString(make([]byte, 24))
	b23 := base64.StdEncoding.EncodeToString(make([]byte, 23))
	b64 := base64.StdEncoding.EncodeToString(make([]byte, 64))
	tests := []struct {
		in    string
		bytes int // 0 = error expected
	}{
		{a, 32},
		{strings.TrimPrefix(a, SecretPrefix), 32},
		{" " + a + "\n", 32},
		{specSecret, 24},
		{"whsec_" + b24, 24},
		{"whsec_" + b64, 64},
		{"whsec_" + b23, 0},
		{"", 0},
		{"whsec_", 0},
		{"whsec_not base64!", 0},
		{"whsec_" + strings.TrimRight(base64.StdEncoding.EncodeToString(make([]byte, 32)), "="), 0},
		{"whsec_" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, 16)), 0},
	}
	for _, tc := range tests {
		k, err := ParseSecret(tc.in)
		if tc.bytes == 0 {
			if !errors.Is(err, ErrInvalidSecret) {
				t.Errorf("ParseSecret(%q) = %d bytes, %v; want ErrInvalidSecret", tc.in, len(k), err)
			}
			continue
		}
		if err != nil || len(k) != tc.bytes {
			t.Errorf("ParseSecret(%q) = %d bytes, %v; want %d", tc.in, len(k), err, tc.bytes)
		}
	}

	if _, err := NewVerifier(); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("NewVerifier() = %v, want ErrInvalidSecret", err)
	}
	if _, err := NewVerifier(a, "whsec_short"); !errors.Is(err, ErrInvalidSecret) || !strings.Contains(err.Error(), "secret 2") {
		t.Errorf("NewVerifier(good, bad) = %v, want ErrInvalidSecret naming secret 2", err)
	}
}

func TestVerifyRequest(t *testing.T) {
	secret, _ := NewSecret()
	key := mustKey(t, secret)
	body := []byte(`{"event":"message"}`)
	newReq := func(b []byte, sign bool) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(b))
		if sign {
			id, ts, sig := Headers([][]byte{key}, "evt_req", time.Now(), b)
			r.Header.Set(HeaderID, id)
			r.Header.Set(HeaderTimestamp, ts)
			r.Header.Set(HeaderSignature, sig)
		}
		return r
	}

	r := newReq(body, true)
	got, err := VerifyRequest(r, secret)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("VerifyRequest = %q, %v", got, err)
	}
	again, _ := io.ReadAll(r.Body)
	if !bytes.Equal(again, body) {
		t.Fatalf("r.Body after VerifyRequest = %q, want it readable again", again)
	}

	if got, err := VerifyRequest(newReq(body, false), secret); err == nil || got != nil {
		t.Fatalf("unsigned request: %q, %v", got, err)
	}
	if _, err := VerifyRequest(newReq(body, true), "whsec_bad"); !errors.Is(err, ErrInvalidSecret) {
		t.Fatalf("bad secret: %v", err)
	}

	v, _ := NewVerifier(secret)
	v.MaxBodyBytes = 16
	if _, err := v.VerifyRequest(newReq(body, true)); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("over-limit body: %v, want ErrBodyTooLarge", err)
	}
	v.MaxBodyBytes = int64(len(body))
	if _, err := v.VerifyRequest(newReq(body, true)); err != nil {
		t.Fatalf("body at the limit: %v", err)
	}

	big := bytes.Repeat([]byte("a"), DefaultMaxBodyBytes+1)
	if _, err := VerifyRequest(newReq(big, true), secret); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("body over the default limit: %v", err)
	}

	nb := newReq(nil, true)
	nb.Body = nil
	if _, err := VerifyRequest(nb, secret); err != nil {
		t.Fatalf("nil body signed as empty: %v", err)
	}
}

// FuzzVerify feeds arbitrary headers and bodies to Verify. It must never
// panic, must only return the documented errors, and may accept only when
// one entry really is the HMAC of what was sent.
func FuzzVerify(f *testing.F) {
	f.Add(specMsgID, strconv.Itoa(specTS), specSig, []byte(specBody))
	f.Add("", "", "", []byte(nil))
	f.Add("id", "1614265330", "v1,", []byte("x"))
	f.Add("id", "-1", "v2,abc v1a,def", []byte{0xff, 0x00})

	key := mustKey(f, specSecret)
	v := fixedVerifier(f, time.Unix(specTS, 0), specSecret)
	known := []error{ErrMissingHeaders, ErrInvalidTimestamp, ErrTimestampTooOld, ErrTimestampTooNew, ErrNoMatchingSignature}

	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		err := v.Verify(h, body)
		if err != nil {
			for _, k := range known {
				if err == k {
					return
				}
			}
			t.Fatalf("Verify returned undocumented error %v", err)
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "."))
		m.Write(body)
		want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
		for _, e := range strings.Fields(sig) {
			if e == want {
				return
			}
		}
		t.Fatalf("Verify accepted %q without the right signature %q", sig, want)
	})
}

func BenchmarkSign(b *testing.B) {
	key := mustKey(b, specSecret)
	body := bytes.Repeat([]byte(`{"event":"message"}`), 50) // ~1 KiB
	ts := time.Unix(specTS, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_ = Sign(key, "evt_01J9Z8Q6XW3T0Y7", ts, body)
	}
}

func BenchmarkVerify(b *testing.B) {
	key := mustKey(b, specSecret)
	body := bytes.Repeat([]byte(`{"event":"message"}`), 50)
	now := time.Unix(specTS, 0)
	v := fixedVerifier(b, now, specSecret)
	id, ts, sig := Headers([][]byte{key}, "evt_01J9Z8Q6XW3T0Y7", now, body)
	h := header(id, ts, sig)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(h, body); err != nil {
			b.Fatal(err)
		}
	}
}
