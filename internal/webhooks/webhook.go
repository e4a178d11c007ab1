// Package webhooks holds the clients' webhook endpoints: registration,
// validation, signing secrets and their rotation.
package webhooks

import (
	"time"
)

// Webhook is a client's endpoint. Secrets are sealed at rest and opened by
// the Service (ForDelivery); they are never serialised, and the API shows
// them only in the register and rotate answers.
type Webhook struct {
	ID                  string            `json:"id"`
	ClientID            int64             `json:"client_id"`
	PhoneNumber         string            `json:"phone_number"` // "" = every session of the client
	URL                 string            `json:"webhook_url"`
	MaxRetries          int               `json:"max_retries"`
	Events              []string          `json:"events"`
	Headers             map[string]string `json:"headers"`
	Description         string            `json:"description"`
	Active              bool              `json:"active"`
	DisabledReason      string            `json:"disabled_reason,omitempty"`
	DisabledAt          *time.Time        `json:"disabled_at,omitempty"`
	FailingSince        *time.Time        `json:"failing_since,omitempty"`
	ConsecutiveFailures int               `json:"consecutive_failures"`
	CreatedAt           time.Time         `json:"created_at"`
	UpdatedAt           time.Time         `json:"updated_at"`

	Secret          string    `json:"-"` // whsec_…, signs every delivery
	PrevSecret      string    `json:"-"` // the rotated-out secret, still signing until PrevSecretUntil
	PrevSecretUntil time.Time `json:"-"`
}

// Matches reports whether the webhook wants events of this type.
func (w *Webhook) Matches(eventType string) bool {
	for _, e := range w.Events {
		if e == "*" || e == eventType {
			return true
		}
	}
	return false
}

// MatchesPhone reports whether the webhook wants events of the session
// whose number has these digits (see NormalizePhone).
func (w *Webhook) MatchesPhone(digits string) bool {
	return w.PhoneNumber == "" || w.PhoneNumber == digits
}

// Secrets returns the secrets that sign a delivery at time now: the current
// one, and the previous one during a rotation's grace period.
func (w *Webhook) Secrets(now time.Time) []string {
	if w.PrevSecret != "" && now.Before(w.PrevSecretUntil) {
		return []string{w.Secret, w.PrevSecret}
	}
	return []string{w.Secret}
}
