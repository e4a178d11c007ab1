// Package secretbox seals secrets at rest (webhook signing secrets, custom
// header values) with AES-256-GCM, so a copy of the database alone does not
// reveal them.
//
// A sealed value is: one version byte, the 12-byte random nonce, then the
// GCM ciphertext and tag. The version byte names the key and algorithm, so
// a later release can rotate keys and still open what older ones sealed.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the key length: AES-256.
const KeySize = 32

// version1 is AES-256-GCM with the box's single key.
const version1 byte = 1

// ErrOpen is returned for a value that does not open: corrupted, sealed by
// another key, or of an unknown version.
var ErrOpen = errors.New("secretbox: cannot open sealed value (wrong key or corrupted data)")

// Box seals and opens values with one key. Safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plain under a fresh random nonce.
func (b *Box) Seal(plain []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+b.aead.Overhead())
	out[0] = version1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("secretbox: nonce: %w", err)
	}
	return b.aead.Seal(out, out[1:1+ns], plain, nil), nil
}

// Open decrypts a value made by Seal, failing with ErrOpen when it was not
// sealed by this key or was altered.
func (b *Box) Open(sealed []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	if len(sealed) < 1+ns+b.aead.Overhead() || sealed[0] != version1 {
		return nil, ErrOpen
	}
	plain, err := b.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], nil)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
