package sessions

import (
	"strings"
	"unicode/utf8"

	"github.com/wagate/wagate/internal/errs"
)

// Limits of what the API accepts.
const (
	MaxUserIDLen         = 128
	MaxTextLen           = 65536
	MaxBatch             = 1000 // messages or receipts in one sandbox injection, ids in one read
	MaxMessageIDLen      = 128
	MaxIdempotencyKeyLen = 255
)

// NormalizePhone strips what people type around a phone number (+, spaces,
// dashes, dots, parentheses) and requires 8 to 15 digits: the stored form.
func NormalizePhone(field, s string) (string, error) {
	d := stripPhone(s)
	if len(d) < 8 || len(d) > 15 || !allDigits(d) {
		return "", errs.E(errs.Invalid, "%s must be an international phone number of 8 to 15 digits", field)
	}
	return d, nil
}

func stripPhone(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '+', ' ', '-', '(', ')', '.', '\t':
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// WhatsApp servers a recipient JID may name.
const (
	ServerUser       = "s.whatsapp.net"
	serverLegacyUser = "c.us" // whatsapp-web.js spelling
	ServerGroup      = "g.us"
	ServerLID        = "lid"
	ServerNewsletter = "newsletter"
)

// NormalizeRecipient accepts phone digits (with the usual formatting) or a
// WhatsApp id (user@s.whatsapp.net, group@g.us, ...) and returns digits or
// the normalized id. Anything else is a 400.
func NormalizeRecipient(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errs.E(errs.Invalid, "%s is required", field)
	}
	user, server, ok := strings.Cut(s, "@")
	if !ok {
		d := stripPhone(s)
		if len(d) < 7 || len(d) > 15 || !allDigits(d) || d[0] == '0' {
			return "", errs.E(errs.Invalid, "%s %q is not a phone number (international, digits only) or a WhatsApp id", field, s)
		}
		return d, nil
	}
	server = strings.ToLower(server)
	if i := strings.IndexAny(user, ":."); i >= 0 && server != ServerGroup {
		user = user[:i] // device and agent parts: a message goes to the user
	}
	valid := user != "" && !strings.ContainsAny(user, " @")
	switch server {
	case serverLegacyUser:
		server = ServerUser
		fallthrough
	case ServerUser, ServerLID:
		valid = valid && allDigits(user)
	case ServerGroup, ServerNewsletter:
	default:
		valid = false
	}
	if !valid {
		return "", errs.E(errs.Invalid, "%s %q is not a phone number or a WhatsApp id (user@s.whatsapp.net, group@g.us)", field, s)
	}
	return user + "@" + server, nil
}

// UserOf returns the user part of a normalized recipient (the digits of a
// phone number).
func UserOf(recipient string) string {
	user, _, _ := strings.Cut(recipient, "@")
	return user
}

// validID checks a client-supplied message id or key: printable ASCII
// without spaces, within max bytes.
func validID(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// ValidMessageID reports whether s can be a message id.
func ValidMessageID(s string) bool { return validID(s, MaxMessageIDLen) }

func validateUserID(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", errs.E(errs.Invalid, "Invalid params")
	}
	if utf8.RuneCountInString(s) > MaxUserIDLen || !utf8.ValidString(s) {
		return "", errs.E(errs.Invalid, "user_id must be at most %d characters", MaxUserIDLen)
	}
	return s, nil
}

func checkText(field, s string) error {
	if utf8.RuneCountInString(s) > MaxTextLen {
		return errs.E(errs.Invalid, "%s must be at most %d characters", field, MaxTextLen)
	}
	return nil
}
