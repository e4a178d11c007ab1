package secretbox_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wagate/wagate/internal/secretbox"
)

func newBox(t *testing.T) *secretbox.Box {
	t.Helper()
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	plain := []byte("whsec_c2VjcmV0")
	s1, err := b.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := b.Seal(plain)
	if bytes.Equal(s1, s2) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
	if bytes.Contains(s1, plain) {
		t.Fatal("sealed value contains the plaintext")
	}
	if s1[0] != 1 {
		t.Fatalf("version byte %d", s1[0])
	}
	got, err := b.Open(s1)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q %v", got, err)
	}
	empty, _ := b.Seal(nil)
	if got, err := b.Open(empty); err != nil || len(got) != 0 {
		t.Fatalf("open empty: %q %v", got, err)
	}

	// Tampering, truncation, another key and unknown versions all fail.
	bad := map[string][]byte{
		"empty":     nil,
		"short":     s1[:10],
		"flipped":   append(append([]byte{}, s1[:len(s1)-1]...), s1[len(s1)-1]^1),
		"version 2": append([]byte{2}, s1[1:]...),
	}
	other, _ := newBox(t).Seal(plain)
	bad["other key"] = other
	for name, v := range bad {
		if _, err := b.Open(v); !errors.Is(err, secretbox.ErrOpen) {
			t.Errorf("%s: %v", name, err)
		}
	}

	for _, n := range []int{0, 16, 31, 33} {
		if _, err := secretbox.New(make([]byte, n)); err == nil {
			t.Errorf("key of %d bytes accepted", n)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	dir := filepath.Join(t.TempDir(), "data")
	key, err := secretbox.LoadOrCreateKey(dir, "", log)
	if err != nil || len(key) != secretbox.KeySize {
		t.Fatalf("create: %d bytes, %v", len(key), err)
	}
	path := filepath.Join(dir, secretbox.KeyFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode().Perm())
	}
	if !strings.Contains(logs.String(), path) {
		t.Fatalf("path not logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), secretbox.EncodeKey(key)) {
		t.Fatal("key logged")
	}

	// The second start reads the same key, silently.
	logs.Reset()
	again, err := secretbox.LoadOrCreateKey(dir, "", log)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("reload: %v", err)
	}
	if logs.Len() != 0 {
		t.Fatalf("reload logged: %s", logs.String())
	}

	// The environment wins over the file, in any base64 flavour.
	envKey, _ := secretbox.GenerateKey()
	for _, s := range []string{secretbox.EncodeKey(envKey), " " + secretbox.EncodeKey(envKey) + "\n",
		strings.TrimRight(secretbox.EncodeKey(envKey), "=")} {
		got, err := secretbox.LoadOrCreateKey(dir, s, log)
		if err != nil || !bytes.Equal(got, envKey) {
			t.Fatalf("env %q: %v", s, err)
		}
	}
	for _, s := range []string{"not base64 !!", secretbox.EncodeKey(make([]byte, 16))} {
		_, err := secretbox.LoadOrCreateKey(dir, s, log)
		if err == nil || !strings.Contains(err.Error(), "WAGATE_SECRET_KEY") {
			t.Fatalf("bad env %q: %v", s, err)
		}
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error echoes the key: %v", err)
		}
	}

	// A damaged key file stops start-up instead of being replaced.
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := secretbox.LoadOrCreateKey(dir, "", log); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("damaged file: %v", err)
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := secretbox.LoadOrCreateKey(dir, "", log)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent starts produced different keys")
		}
	}
}
