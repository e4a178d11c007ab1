// Package errs holds wagate's one error type. Every package returns *Error
// (or wraps one) for failures a caller can act on; httpapi maps the Code to
// an HTTP status and the NestJS-shaped error body in a single place.
package errs

import (
	"errors"
	"fmt"
)

// Code is a machine-readable error class, sent to clients as "code".
type Code string

const (
	Invalid          Code = "VALIDATION_ERROR"
	NotFound         Code = "NOT_FOUND"
	Conflict         Code = "CONFLICT"
	SessionExists    Code = "SESSION_EXISTS"
	Unauthorized     Code = "UNAUTHORIZED"
	Forbidden        Code = "FORBIDDEN"
	TooLarge         Code = "PAYLOAD_TOO_LARGE"
	RateLimited      Code = "RATE_LIMITED"
	Unsupported      Code = "UNSUPPORTED_MEDIA_TYPE"
	NotConnected     Code = "SESSION_NOT_CONNECTED"
	Unavailable      Code = "UNAVAILABLE"
	Internal         Code = "INTERNAL_ERROR"
	MethodNotAllowed Code = "METHOD_NOT_ALLOWED"
	Gone             Code = "MEDIA_EXPIRED" // a media file WhatsApp no longer keeps
)

// Error is a failure with a code and a message safe to show to the caller.
type Error struct {
	Code    Code
	Message string
	Err     error // cause, logged but never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// E builds an *Error with a formatted message.
func E(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error that keeps err as its hidden cause.
func Wrap(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// CodeOf returns the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries the given code.
func Is(err error, code Code) bool { return err != nil && CodeOf(err) == code }
