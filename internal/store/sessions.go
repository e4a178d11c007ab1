package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/sessions"
)

const sessionCols = `id, client_id, user_id, phone_number, session_status, status_reason, engine, jid, created_at, updated_at`

func scanSession(row interface{ Scan(...any) error }) (sessions.Session, error) {
	var s sessions.Session
	var status string
	var created, updated int64
	err := row.Scan(&s.ID, &s.ClientID, &s.UserID, &s.PhoneNumber, &status, &s.Reason, &s.Engine, &s.JID, &created, &updated)
	s.Status = sessions.Status(status)
	s.CreatedAt, s.UpdatedAt = fromMS(created), fromMS(updated)
	return s, err
}

// newSessionID returns a random (version 4) UUID, the seed's id format.
func newSessionID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// CreateSession inserts a session row and returns it with its id and times.
// A second row for the same client and user is a Conflict (the unique key
// is what keeps two nodes from creating both).
func (s *DB) CreateSession(ctx context.Context, in sessions.Session) (sessions.Session, error) {
	id, err := newSessionID()
	if err != nil {
		return sessions.Session{}, err
	}
	now := ms(s.now())
	_, err = s.db.ExecContext(ctx, `INSERT INTO whatsapp_connections
		(id, client_id, user_id, phone_number, session_status, status_reason, engine, jid, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`,
		id, in.ClientID, in.UserID, in.PhoneNumber, string(in.Status), in.Reason, in.Engine, in.JID, now)
	if isUniqueViolation(err) {
		return sessions.Session{}, errs.Wrap(errs.Conflict, err, "a session for this user already exists")
	}
	if err != nil {
		return sessions.Session{}, err
	}
	return s.GetSession(ctx, id)
}

// GetSession returns one session by id, whichever client owns it.
func (s *DB) GetSession(ctx context.Context, id string) (sessions.Session, error) {
	sess, err := scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM whatsapp_connections WHERE id = $1`, id))
	return sess, notFound(err, "session")
}

// SessionByUser returns the session of one user of a client.
func (s *DB) SessionByUser(ctx context.Context, clientID int64, userID string) (sessions.Session, error) {
	sess, err := scanSession(s.db.QueryRowContext(ctx,
		`SELECT `+sessionCols+` FROM whatsapp_connections WHERE client_id = $1 AND user_id = $2`, clientID, userID))
	return sess, notFound(err, "session")
}

// sessionCursor is the opaque position of a page: the last row's creation
// time and id, so pages stay stable while rows are added.
func encodeSessionCursor(s sessions.Session) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(ms(s.CreatedAt), 10) + "." + s.ID))
}

func decodeSessionCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		at, id, ok := strings.Cut(string(b), ".")
		if n, perr := strconv.ParseInt(at, 10, 64); ok && perr == nil && id != "" {
			return n, id, nil
		}
	}
	return 0, "", errs.E(errs.Invalid, "cursor is not valid: use next_cursor from the previous page")
}

// ListSessions returns a page of a client's sessions, newest first, and the
// cursor of the next page ("" on the last one).
func (s *DB) ListSessions(ctx context.Context, clientID int64, cursor string, limit int) ([]sessions.Session, string, error) {
	if limit < 1 {
		limit = 50
	}
	q := `SELECT ` + sessionCols + ` FROM whatsapp_connections WHERE client_id = $1`
	args := []any{clientID}
	if cursor != "" {
		at, id, err := decodeSessionCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (created_at < $2 OR (created_at = $2 AND id < $3))`
		args = append(args, at, id)
	}
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT %d`, limit+1)
	out, err := s.querySessions(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = encodeSessionCursor(out[limit-1])
	}
	return out, next, nil
}

// ClientSessions returns every session of a client.
func (s *DB) ClientSessions(ctx context.Context, clientID int64) ([]sessions.Session, error) {
	return s.querySessions(ctx, `SELECT `+sessionCols+` FROM whatsapp_connections WHERE client_id = $1 ORDER BY created_at`, clientID)
}

// ResumableSessions returns the sessions to start again when a node boots:
// linked (a jid is stored) and not logged out.
func (s *DB) ResumableSessions(ctx context.Context) ([]sessions.Session, error) {
	return s.querySessions(ctx, `SELECT `+sessionCols+` FROM whatsapp_connections
		WHERE jid <> '' AND session_status <> $1 ORDER BY created_at`, string(sessions.StatusLoggedOut))
}

func (s *DB) querySessions(ctx context.Context, q string, args ...any) ([]sessions.Session, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []sessions.Session{}
	for rows.Next() {
		sess, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sess)
	}
	return out, rows.Err()
}

// UpdateSession writes the mutable columns of a session (phone number,
// engine, status, reason, jid) and returns the stored row.
func (s *DB) UpdateSession(ctx context.Context, in sessions.Session) (sessions.Session, error) {
	sess, err := scanSession(s.db.QueryRowContext(ctx, `UPDATE whatsapp_connections
		SET phone_number = $2, engine = $3, session_status = $4, status_reason = $5, jid = $6, updated_at = $7
		WHERE id = $1 RETURNING `+sessionCols,
		in.ID, in.PhoneNumber, in.Engine, string(in.Status), in.Reason, in.JID, ms(s.now())))
	return sess, notFound(err, "session")
}

// SetSessionState records a connection state: status, reason and jid.
func (s *DB) SetSessionState(ctx context.Context, id string, status sessions.Status, reason, jid string) (sessions.Session, error) {
	sess, err := scanSession(s.db.QueryRowContext(ctx, `UPDATE whatsapp_connections
		SET session_status = $2, status_reason = $3, jid = $4, updated_at = $5
		WHERE id = $1 RETURNING `+sessionCols,
		id, string(status), reason, jid, ms(s.now())))
	return sess, notFound(err, "session")
}

// DeleteSession removes a session with its events and their outbox rows
// (their attempts go by cascade), in one transaction; its idempotency keys
// and media references go by cascade. Events and outbox rows are deleted
// explicitly: PostgreSQL has no foreign keys on them (migration 0007). The
// session row is locked first, so an ingest in flight (which holds it FOR
// KEY SHARE) commits before its events are deleted, and a later one finds
// no session.
func (s *DB) DeleteSession(ctx context.Context, id string) error {
	return s.deleteLocked(ctx, "session", `SELECT 1 FROM whatsapp_connections WHERE id = $1`, []any{id}, id,
		`DELETE FROM whatsapp_webhook_events WHERE event_id IN (SELECT id FROM events WHERE session_id = $1)`,
		`DELETE FROM events WHERE session_id = $1`,
		`DELETE FROM whatsapp_connections WHERE id = $1`)
}

// ClaimOutbound takes an idempotency key of a session for one send. The
// key row is inserted before anything is sent, so of two concurrent
// requests with the same key only one can send. When the key exists, its
// row is returned unclaimed: completed (MessageID set), or in progress. An
// in-progress claim older than staleBefore was left by a crash and is taken
// over.
func (s *DB) ClaimOutbound(ctx context.Context, sessionID, key, requestHash string, staleBefore time.Time) (sessions.OutboundClaim, error) {
	// A key released between our insert and our select makes us go round
	// again; twice more is plenty.
	for range 3 {
		c, again, err := s.claimOutbound(ctx, sessionID, key, requestHash, staleBefore)
		if !again {
			return c, err
		}
	}
	return sessions.OutboundClaim{}, errs.E(errs.Conflict, "Idempotency-Key is being used by concurrent requests; retry later")
}

func (s *DB) claimOutbound(ctx context.Context, sessionID, key, requestHash string, staleBefore time.Time) (c sessions.OutboundClaim, again bool, err error) {
	now := ms(s.now())
	res, err := s.db.ExecContext(ctx, `INSERT INTO outbound_messages (session_id, idempotency_key, request_hash, created_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, idempotency_key) DO NOTHING`,
		sessionID, key, requestHash, now)
	if err != nil {
		if isForeignKeyError(err) {
			return c, false, errs.E(errs.NotFound, "session not found")
		}
		return c, false, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return sessions.OutboundClaim{Claimed: true, RequestHash: requestHash}, false, nil
	}
	var sent, created int64
	err = s.db.QueryRowContext(ctx, `SELECT request_hash, message_id, sent_at, created_at FROM outbound_messages
		WHERE session_id = $1 AND idempotency_key = $2`, sessionID, key).Scan(&c.RequestHash, &c.MessageID, &sent, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return c, true, nil
	}
	if err != nil {
		return c, false, err
	}
	if c.MessageID != "" {
		c.SentAt = fromMS(sent)
		return c, false, nil
	}
	if c.RequestHash == requestHash && created < ms(staleBefore) {
		// Conditional on created_at, so only one of several takers wins.
		res, err := s.db.ExecContext(ctx, `UPDATE outbound_messages SET created_at = $4
			WHERE session_id = $1 AND idempotency_key = $2 AND message_id = '' AND created_at = $3`,
			sessionID, key, created, now)
		if err != nil {
			return c, false, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			c.Claimed = true
		}
	}
	return c, false, nil
}

// CompleteOutbound stores the result of a claimed send.
func (s *DB) CompleteOutbound(ctx context.Context, sessionID, key, messageID string, sentAt time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE outbound_messages SET message_id = $3, sent_at = $4
		WHERE session_id = $1 AND idempotency_key = $2`, sessionID, key, messageID, ms(sentAt))
	return err
}

// ReleaseOutbound forgets a claimed key whose send failed, so the caller
// may retry with the same key.
func (s *DB) ReleaseOutbound(ctx context.Context, sessionID, key string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM outbound_messages
		WHERE session_id = $1 AND idempotency_key = $2 AND message_id = ''`, sessionID, key)
	return err
}

// PruneOutbound deletes idempotency keys created before cutoff.
func (s *DB) PruneOutbound(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM outbound_messages WHERE created_at < $1`, ms(cutoff))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// isForeignKeyError reports a foreign-key failure on either dialect.
func isForeignKeyError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "FOREIGN KEY constraint failed") || strings.Contains(msg, "SQLSTATE 23503")
}
