// Package clients manages the tenants of wagate and their API tokens.
// Tokens are random, shown once, and stored only as SHA-256 hashes.
package clients

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wagate/wagate/internal/errs"
)

// Client is a tenant: it owns sessions, webhooks and events.
type Client struct {
	ID              int64     `json:"id"`
	Name            string    `json:"name"`
	AlertWebhookURL string    `json:"alert_webhook_url,omitempty"`
	ActiveTokens    int       `json:"active_tokens"`
	CreatedAt       time.Time `json:"created_at"`
}

// Store is what the clients service needs from storage.
type Store interface {
	CreateClient(ctx context.Context, name, tokenHash, tokenPrefix string) (Client, error)
	ListClients(ctx context.Context) ([]Client, error)
	GetClient(ctx context.Context, id int64) (Client, error)
	DeleteClient(ctx context.Context, id int64) error
	AddToken(ctx context.Context, clientID int64, tokenHash, tokenPrefix string, revokeOthers bool) error
	ClientByTokenHash(ctx context.Context, tokenHash string) (Client, error)
}

// tokenPrefix marks wagate tokens so secret scanners can recognise them.
const tokenPrefix = "wg_"

// NewToken returns a fresh token with 256 random bits and its hash.
func NewToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken is the stored form of a token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// displayPrefix is the part of a token kept in clear to tell tokens apart.
func displayPrefix(token string) string { return token[:len(tokenPrefix)+6] }

// Service is the clients use cases.
type Service struct {
	store Store
}

// NewService returns a Service over store.
func NewService(store Store) *Service { return &Service{store: store} }

// ValidateName checks a client name.
func ValidateName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", errs.E(errs.Invalid, "name is required")
	case utf8.RuneCountInString(name) > 200:
		return "", errs.E(errs.Invalid, "name must be at most 200 characters")
	}
	return name, nil
}

// Create makes a client and its first token, returned once.
func (s *Service) Create(ctx context.Context, name string) (Client, string, error) {
	name, err := ValidateName(name)
	if err != nil {
		return Client{}, "", err
	}
	token, hash, err := NewToken()
	if err != nil {
		return Client{}, "", err
	}
	c, err := s.store.CreateClient(ctx, name, hash, displayPrefix(token))
	if err != nil {
		return Client{}, "", err
	}
	return c, token, nil
}

// List returns every client.
func (s *Service) List(ctx context.Context) ([]Client, error) { return s.store.ListClients(ctx) }

// Get returns one client.
func (s *Service) Get(ctx context.Context, id int64) (Client, error) {
	return s.store.GetClient(ctx, id)
}

// Delete removes a client with its tokens, sessions, webhooks and events.
func (s *Service) Delete(ctx context.Context, id int64) error { return s.store.DeleteClient(ctx, id) }

// RotateToken issues a new token; revokeOthers revokes every earlier one.
func (s *Service) RotateToken(ctx context.Context, id int64, revokeOthers bool) (string, error) {
	token, hash, err := NewToken()
	if err != nil {
		return "", err
	}
	if err := s.store.AddToken(ctx, id, hash, displayPrefix(token), revokeOthers); err != nil {
		return "", err
	}
	return token, nil
}

// Authenticate resolves a bearer token to its client. Unknown and revoked
// tokens are both errs.Unauthorized "Invalid token", as in the seed.
func (s *Service) Authenticate(ctx context.Context, token string) (Client, error) {
	c, err := s.store.ClientByTokenHash(ctx, HashToken(token))
	if err != nil {
		if errs.Is(err, errs.NotFound) {
			return Client{}, errs.E(errs.Unauthorized, "Invalid token")
		}
		return Client{}, err
	}
	return c, nil
}
