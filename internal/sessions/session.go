// Package sessions owns WhatsApp sessions: their rows, their live
// connections (through an Engine) and the seed's connect contract.
package sessions

import "time"

// Status is a session's state, stored in whatsapp_connections.session_status.
type Status string

const (
	StatusConnected    Status = "connected"
	StatusReconnecting Status = "reconnecting" // starting, waiting for a QR scan, or reconnecting
	StatusDisconnected Status = "disconnected"
	StatusLoggedOut    Status = "logged_out" // unlinked from the phone; needs a new scan
)

// Session is one row of whatsapp_connections.
type Session struct {
	ID          string
	ClientID    int64
	UserID      string
	PhoneNumber string // digits only
	Status      Status
	Reason      string
	Engine      string
	JID         string // linked WhatsApp id, once linked
	CreatedAt   time.Time
	UpdatedAt   time.Time
}
