// Package sessions owns WhatsApp sessions: their rows, their live
// connections (through an Engine) and the seed's connect contract.
package sessions

import "time"

// Status is a session's state, stored in whatsapp_connections.session_status
// with its cause in status_reason, and announced by a session.status event
// (payload "type" = status, "content" = reason) whenever it changes:
//
//   - reconnecting: the session is starting (reason "starting"), waiting for
//     its QR code to be scanned, or reconnecting after a network drop. The
//     seed's connect answers it for every session that is not connected.
//   - connected: linked and online; jid holds the WhatsApp id.
//   - disconnected: stopped by a failure that needs action: the engine did
//     not start ("start_failed: ..."), QR timeout, stream replaced, ban. A
//     linked session (jid set) is still resumed at the next start-up.
//   - logged_out: unlinked from the phone (logout route or by the phone);
//     jid is cleared and a new connect pairs again.
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
