package store

import (
	"context"
	"database/sql"

	"github.com/wagate/wagate/internal/clients"
)

const clientCols = `c.id, c.name, c.alert_webhook_url, c.created_at,
	(SELECT COUNT(*) FROM client_tokens t WHERE t.client_id = c.id AND t.revoked_at IS NULL)`

func scanClient(row interface{ Scan(...any) error }) (clients.Client, error) {
	var c clients.Client
	var created int64
	err := row.Scan(&c.ID, &c.Name, &c.AlertWebhookURL, &created, &c.ActiveTokens)
	c.CreatedAt = fromMS(created)
	return c, err
}

// CreateClient inserts a client and its first token in one transaction.
func (s *DB) CreateClient(ctx context.Context, name, tokenHash, tokenPrefix string) (clients.Client, error) {
	now := ms(s.now())
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx,
			`INSERT INTO clients (name, created_at, updated_at) VALUES ($1, $2, $2) RETURNING id`,
			name, now).Scan(&id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO client_tokens (client_id, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4)`,
			id, tokenHash, tokenPrefix, now)
		return err
	})
	if err != nil {
		return clients.Client{}, err
	}
	return s.GetClient(ctx, id)
}

// ListClients returns every client, oldest first.
func (s *DB) ListClients(ctx context.Context) ([]clients.Client, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+clientCols+` FROM clients c ORDER BY c.id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []clients.Client{}
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// GetClient returns one client.
func (s *DB) GetClient(ctx context.Context, id int64) (clients.Client, error) {
	c, err := scanClient(s.db.QueryRowContext(ctx, `SELECT `+clientCols+` FROM clients c WHERE c.id = $1`, id))
	return c, notFound(err, "client")
}

// DeleteClient removes a client with its outbox rows (their attempts go by
// cascade), events, webhooks and sessions, in one transaction; its tokens
// and the sessions' own rows go by cascade. Events and outbox rows are
// deleted explicitly: PostgreSQL has no foreign keys on them (migration
// 0007). The client row is locked first, so an ingest in flight (which
// holds it FOR KEY SHARE) commits before the children are deleted, and a
// later one finds no client.
func (s *DB) DeleteClient(ctx context.Context, id int64) error {
	return s.deleteLocked(ctx, "client", `SELECT 1 FROM clients WHERE id = $1`, []any{id}, id,
		`DELETE FROM whatsapp_webhook_events WHERE webhook_id IN (SELECT id FROM webhooks WHERE client_id = $1)`,
		`DELETE FROM events WHERE client_id = $1`,
		`DELETE FROM webhooks WHERE client_id = $1`,
		`DELETE FROM whatsapp_connections WHERE client_id = $1`,
		`DELETE FROM clients WHERE id = $1`)
}

// deleteLocked runs a delete path in one transaction: it first locks the
// row that lock selects with lockArgs (FOR UPDATE on PostgreSQL), so that
// an ingest holding it FOR KEY SHARE commits before its rows are deleted,
// then runs stmts with id. A missing row is NotFound, naming what.
func (s *DB) deleteLocked(ctx context.Context, what, lock string, lockArgs []any, id any, stmts ...string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, lock+s.forUpdate(), lockArgs...).Scan(&one); err != nil {
			return notFound(err, what)
		}
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// forUpdate locks the rows a delete reads first, on PostgreSQL; SQLite's
// write transactions lock the whole database from the start.
func (s *DB) forUpdate() string {
	if s.dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// AddToken adds a token to a client, optionally revoking the others.
func (s *DB) AddToken(ctx context.Context, clientID int64, tokenHash, tokenPrefix string, revokeOthers bool) error {
	now := ms(s.now())
	return s.tx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM clients WHERE id = $1`, clientID).Scan(&one); err != nil {
			return notFound(err, "client")
		}
		if revokeOthers {
			if _, err := tx.ExecContext(ctx,
				`UPDATE client_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL`,
				now, clientID); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO client_tokens (client_id, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4)`,
			clientID, tokenHash, tokenPrefix, now)
		return err
	})
}

// ClientByTokenHash resolves a live token to its client.
func (s *DB) ClientByTokenHash(ctx context.Context, tokenHash string) (clients.Client, error) {
	c, err := scanClient(s.db.QueryRowContext(ctx, `SELECT `+clientCols+` FROM clients c
		JOIN client_tokens tk ON tk.client_id = c.id
		WHERE tk.token_hash = $1 AND tk.revoked_at IS NULL`, tokenHash))
	return c, notFound(err, "token")
}
