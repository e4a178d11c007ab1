package httpapi

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/errs"
)

func TestWriteErrorMapping(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		err    error
		status int
		code   errs.Code
	}{
		{errs.E(errs.Invalid, "bad"), 400, errs.Invalid},
		{errs.E(errs.SessionExists, "Sessão já existente"), 400, errs.SessionExists},
		{errs.E(errs.NotFound, "nope"), 404, errs.NotFound},
		{errs.E(errs.Gone, "expired"), 410, errs.Gone},
		{fmt.Errorf("wrapped: %w", errs.E(errs.TooLarge, "big")), 413, errs.TooLarge},
		{errors.New("nil pointer somewhere"), 500, errs.Internal},
		{fmt.Errorf("query: %w", driver.ErrBadConn), 503, errs.Unavailable},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, 503, errs.Unavailable},
		{errors.New("failed to connect to `host=/tmp user=postgres`: server error (FATAL: the database system is starting up (SQLSTATE 57P03))"), 503, errs.Unavailable},
		{fmt.Errorf("tx: %w", context.DeadlineExceeded), 503, errs.Unavailable},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		writeError(w, httptest.NewRequest("GET", "/x", nil), log, c.err)
		if w.Code != c.status {
			t.Errorf("%v: status %d, want %d", c.err, w.Code, c.status)
		}
		if c.status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
			t.Errorf("%v: no Retry-After", c.err)
		}
		if c.status == 500 && contains(w.Body.String(), "nil pointer") {
			t.Errorf("internal cause leaked: %s", w.Body)
		}
		if !contains(w.Body.String(), `"code":"`+string(c.code)+`"`) {
			t.Errorf("%v: body %s", c.err, w.Body)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
