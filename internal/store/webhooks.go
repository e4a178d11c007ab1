package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/webhooks"
)

// The webhooks store deals only in sealed secrets and headers: the
// webhooks.Service seals and opens them, so no key ever reaches this layer.

const webhookCols = `id, client_id, phone_number, url, max_retries, events, headers_enc, description,
	secret_enc, prev_secret_enc, prev_secret_until, active, disabled_reason, disabled_at,
	failing_since, consecutive_failures, created_at, updated_at`

func scanWebhook(row interface{ Scan(...any) error }) (webhooks.Record, error) {
	var (
		r                                   webhooks.Record
		evs                                 string
		prevUntil, disabledAt, failingSince sql.NullInt64
		created, updated                    int64
	)
	err := row.Scan(&r.ID, &r.ClientID, &r.PhoneNumber, &r.URL, &r.MaxRetries, &evs, &r.HeadersSealed,
		&r.Description, &r.SecretSealed, &r.PrevSecretSealed, &prevUntil, &r.Active, &r.DisabledReason,
		&disabledAt, &failingSince, &r.ConsecutiveFailures, &created, &updated)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(evs), &r.Events); err != nil {
		return r, fmt.Errorf("webhook %s: events column: %w", r.ID, err)
	}
	// Drivers differ on empty versus NULL blobs; nil is the one "absent".
	r.HeadersSealed = nilIfEmpty(r.HeadersSealed)
	r.PrevSecretSealed = nilIfEmpty(r.PrevSecretSealed)
	r.PrevSecretUntil = fromNullMS(prevUntil)
	r.DisabledAt = fromNullMS(disabledAt)
	r.FailingSince = fromNullMS(failingSince)
	r.CreatedAt, r.UpdatedAt = fromMS(created), fromMS(updated)
	return r, nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// blob binds an optional sealed value, NULL when absent.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func eventsJSON(evs []string) (string, error) {
	if evs == nil {
		evs = []string{}
	}
	b, err := json.Marshal(evs)
	return string(b), err
}

// CreateWebhook inserts a webhook. An unknown client is errs.NotFound.
func (s *DB) CreateWebhook(ctx context.Context, r webhooks.Record) error {
	evs, err := eventsJSON(r.Events)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO webhooks (`+webhookCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
		r.ID, r.ClientID, r.PhoneNumber, r.URL, r.MaxRetries, evs, blob(r.HeadersSealed), r.Description,
		r.SecretSealed, blob(r.PrevSecretSealed), nullMS(r.PrevSecretUntil), r.Active, r.DisabledReason,
		nullMS(r.DisabledAt), nullMS(r.FailingSince), r.ConsecutiveFailures, ms(r.CreatedAt), ms(r.UpdatedAt))
	switch {
	case isMissingClient(err):
		return errs.E(errs.NotFound, "client not found")
	case isUniqueViolation(err):
		return errs.Wrap(errs.Conflict, err, "webhook id already exists")
	}
	return err
}

// ListWebhooks returns a client's webhooks, oldest first.
func (s *DB) ListWebhooks(ctx context.Context, clientID int64) ([]webhooks.Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+webhookCols+` FROM webhooks
		WHERE client_id = $1 ORDER BY created_at, id`, clientID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []webhooks.Record{}
	for rows.Next() {
		r, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// CountWebhooks counts a client's webhooks.
func (s *DB) CountWebhooks(ctx context.Context, clientID int64) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM webhooks WHERE client_id = $1`, clientID).Scan(&n)
	return n, err
}

// GetWebhook returns one of a client's webhooks; another client's is
// errs.NotFound, exactly like a missing one.
func (s *DB) GetWebhook(ctx context.Context, clientID int64, id string) (webhooks.Record, error) {
	r, err := scanWebhook(s.db.QueryRowContext(ctx, `SELECT `+webhookCols+` FROM webhooks
		WHERE id = $1 AND client_id = $2`, id, clientID))
	return r, notFound(err, "webhook")
}

// WebhookByID returns any client's webhook (for the delivery engine).
func (s *DB) WebhookByID(ctx context.Context, id string) (webhooks.Record, error) {
	r, err := scanWebhook(s.db.QueryRowContext(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE id = $1`, id))
	return r, notFound(err, "webhook")
}

// UpdateWebhook reads the row, lets fn change it and writes it back in one
// transaction. The row is locked for the duration (FOR UPDATE on
// PostgreSQL; SQLite's immediate transactions hold the database write
// lock), so a concurrent update or failure bookkeeping is not lost.
func (s *DB) UpdateWebhook(ctx context.Context, clientID int64, id string, fn func(*webhooks.Record) error) (webhooks.Record, error) {
	q := `SELECT ` + webhookCols + ` FROM webhooks WHERE id = $1 AND client_id = $2`
	if s.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	var out webhooks.Record
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := scanWebhook(tx.QueryRowContext(ctx, q, id, clientID))
		if err != nil {
			return notFound(err, "webhook")
		}
		wasActive := r.Active
		if err := fn(&r); err != nil {
			return err
		}
		if r.Active != wasActive {
			if err := s.parkDeliveries(ctx, tx, id, !r.Active); err != nil {
				return err
			}
		}
		evs, err := eventsJSON(r.Events)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE webhooks SET phone_number = $1, url = $2, max_retries = $3,
			events = $4, headers_enc = $5, description = $6, secret_enc = $7, prev_secret_enc = $8,
			prev_secret_until = $9, active = $10, disabled_reason = $11, disabled_at = $12,
			failing_since = $13, consecutive_failures = $14, updated_at = $15
			WHERE id = $16 AND client_id = $17`,
			r.PhoneNumber, r.URL, r.MaxRetries, evs, blob(r.HeadersSealed), r.Description, r.SecretSealed,
			blob(r.PrevSecretSealed), nullMS(r.PrevSecretUntil), r.Active, r.DisabledReason,
			nullMS(r.DisabledAt), nullMS(r.FailingSince), r.ConsecutiveFailures, ms(r.UpdatedAt),
			id, clientID)
		out = r
		return err
	})
	return out, err
}

// DeleteWebhook removes one of a client's webhooks with its queued and
// past deliveries (their attempts go by cascade), in one transaction. The
// outbox rows are deleted explicitly: PostgreSQL has no foreign key from
// them to the webhook (migration 0007). The webhook row is locked first,
// so an ingest in flight (which holds it FOR KEY SHARE) commits before its
// rows are deleted, and a later one writes none. Events left without rows
// go with Prune.
func (s *DB) DeleteWebhook(ctx context.Context, clientID int64, id string) error {
	return s.deleteLocked(ctx, "webhook", `SELECT 1 FROM webhooks WHERE id = $1 AND client_id = $2`, []any{id, clientID}, id,
		`DELETE FROM whatsapp_webhook_events WHERE webhook_id = $1`,
		`DELETE FROM webhooks WHERE id = $1`)
}

// SetClientAlertURL sets (or, with "", clears) a client's alert webhook.
func (s *DB) SetClientAlertURL(ctx context.Context, clientID int64, url string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE clients SET alert_webhook_url = $1, updated_at = $2 WHERE id = $3`,
		url, ms(s.now()), clientID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errs.E(errs.NotFound, "client not found")
	}
	return nil
}

// AnySealedSecret returns the sealed secret of the most recently updated
// webhook, or nil when there is none.
func (s *DB) AnySealedSecret(ctx context.Context) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT secret_enc FROM webhooks ORDER BY updated_at DESC LIMIT 1`).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}

// isMissingClient reports the foreign-key failure of a webhook whose client
// does not exist, on either dialect.
func isMissingClient(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "FOREIGN KEY constraint failed") || strings.Contains(msg, "SQLSTATE 23503")
}
