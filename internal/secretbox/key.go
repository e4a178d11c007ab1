package secretbox

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// KeyFile is the name of the generated key inside the data directory.
const KeyFile = "secret.key"

// EnvKey names the variable that carries the key.
const EnvKey = "WAGATE_SECRET_KEY"

// GenerateKey returns a new random key.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("secretbox: generate key: %w", err)
	}
	return key, nil
}

// EncodeKey is the text form of a key, as WAGATE_SECRET_KEY and the key
// file hold it: standard base64.
func EncodeKey(key []byte) string { return base64.StdEncoding.EncodeToString(key) }

// ParseKey decodes the text form of a key. Padded or unpadded, standard or
// URL-safe base64 are all accepted, since operators generate keys with
// whatever tool they have (`openssl rand -base64 32`).
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil {
			if len(key) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d", len(key), KeySize)
			}
			return key, nil
		}
	}
	return nil, errors.New("is not base64")
}

// LoadOrCreateKey returns the key sealing secrets at rest: fromEnv (the
// value of WAGATE_SECRET_KEY) when set, else the key in dataDir/secret.key,
// generated on first start. Only the file's path is ever logged.
func LoadOrCreateKey(dataDir, fromEnv string, log *slog.Logger) ([]byte, error) {
	if strings.TrimSpace(fromEnv) != "" {
		key, err := ParseKey(fromEnv)
		if err != nil {
			return nil, fmt.Errorf("%s: %v: it must be the base64 of %d random bytes (e.g. `openssl rand -base64 32`)", EnvKey, err, KeySize)
		}
		return key, nil
	}
	path := filepath.Join(dataDir, KeyFile)
	if key, err := readKeyFile(path); !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	switch err := createExclusive(path, []byte(EncodeKey(key)+"\n")); {
	case errors.Is(err, os.ErrExist):
		// Another process starting on the same data directory won: use its key.
		return readKeyFile(path)
	case err != nil:
		return nil, fmt.Errorf("save secret key: %w", err)
	}
	abs, _ := filepath.Abs(path)
	log.Warn(EnvKey+" is not set: generated a key that encrypts webhook secrets at rest; back it up, secrets cannot be read without it",
		"path", abs)
	return key, nil
}

// createExclusive writes data to a new file at path, mode 0600, failing with
// os.ErrExist when it already exists. The data goes to a temporary file that
// is then hard-linked into place, so no reader ever sees a half-written key
// and a crash leaves no empty key file behind. Where hard links are not
// supported it falls back to an O_EXCL create.
func createExclusive(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeSync(tmp, data); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	err = os.Link(tmp.Name(), path)
	if err == nil || errors.Is(err, os.ErrExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := writeSync(f, data); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// writeSync writes data, flushes it to disk and closes f.
func writeSync(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read secret key: %w", err)
	}
	key, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %v; restore the key file or set %s", path, err, EnvKey)
	}
	return key, nil
}
