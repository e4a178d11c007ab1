package httpapi

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/wagate/wagate/internal/errs"
)

// statusOf is the one place where error codes become HTTP statuses.
var statusOf = map[errs.Code]int{
	errs.Invalid:          http.StatusBadRequest,
	errs.SessionExists:    http.StatusBadRequest, // the seed answers 400 here
	errs.NotFound:         http.StatusNotFound,
	errs.Conflict:         http.StatusConflict,
	errs.Unauthorized:     http.StatusUnauthorized,
	errs.Forbidden:        http.StatusForbidden,
	errs.TooLarge:         http.StatusRequestEntityTooLarge,
	errs.RateLimited:      http.StatusTooManyRequests,
	errs.Unsupported:      http.StatusUnsupportedMediaType,
	errs.NotConnected:     http.StatusConflict,
	errs.MethodNotAllowed: http.StatusMethodNotAllowed,
	errs.Unavailable:      http.StatusServiceUnavailable,
	errs.Gone:             http.StatusGone,
	errs.Internal:         http.StatusInternalServerError,
}

// ErrorBody is the NestJS error shape of the seed plus a machine-readable code.
type ErrorBody struct {
	StatusCode int       `json:"statusCode"`
	Message    string    `json:"message"`
	Error      string    `json:"error"`
	Code       errs.Code `json:"code"`
	RequestID  string    `json:"request_id,omitempty"`
}

// writeError renders err. Internal errors are logged with their cause and
// shown to the caller without it.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *errs.Error
	if !errors.As(err, &e) {
		e = &errs.Error{Code: errs.Internal, Message: "Internal server error", Err: err}
		if unreachable(err) {
			e = &errs.Error{Code: errs.Unavailable, Message: "The database is unreachable; retry shortly", Err: err}
			w.Header().Set("Retry-After", "5")
		}
	}
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	msg := e.Message
	if status >= 500 {
		log.ErrorContext(r.Context(), "request failed", "err", err, "method", r.Method, "path", r.URL.Path, "request_id", requestID(r.Context()))
		if e.Code == errs.Internal {
			msg = "Internal server error"
		}
	}
	writeJSON(w, status, ErrorBody{
		StatusCode: status,
		Message:    msg,
		Error:      http.StatusText(status),
		Code:       e.Code,
		RequestID:  requestID(r.Context()),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// unreachable tells a failure to reach a dependency (the database during a
// restart or failover) from a bug, so callers get a retriable 503 rather
// than a 500. The drivers' connection errors have no common type, hence the
// SQLSTATE classes too: 08 (connection exception) and 57P (operator
// intervention, e.g. the server shutting down).
func unreachable(err error) bool {
	var netErr net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"SQLSTATE 08", "SQLSTATE 57P", "failed to connect", "conn closed", "connection refused",
		"connection reset", "broken pipe", "unexpected EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
