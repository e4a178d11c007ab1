package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/webhooks"
)

// PostgreSQL's bulk statements bind one array per column and unnest them.
// A multi-row VALUES list has a statement text per row count, so each new
// batch size is parsed, analysed and planned again (and takes a slot in
// pgx's per-connection statement cache), and every execution binds up to
// 2,800 parameters one by one. These texts are constant: pgx prepares each
// once per connection, and an execution binds a handful of arrays. Arrays
// have no parameter limit either: pgChunk only bounds a statement's size.

// pgChunk bounds rows per array statement. Ingest's batches are cut at
// pgChunk too, which keeps its media references (a VALUES list of 7
// parameters a row) under PostgreSQL's 65,535 parameters.
const pgChunk = 5000

// pgEventArgs are pgIngestSQL's event arguments ($1 to $7): a nil session
// and an empty dedupe key are NULL, as in SQLite's VALUES version.
func pgEventArgs(t delivery.Target, part []delivery.NewEvent) []any {
	var session *string
	if t.SessionID != "" {
		session = &t.SessionID
	}
	ids := make([]string, len(part))
	types := make([]string, len(part))
	keys := make([]*string, len(part))
	payloads := make([]string, len(part))
	created := make([]int64, len(part))
	for i := range part {
		ev := &part[i]
		ids[i], types[i], payloads[i], created[i] = ev.ID, ev.Type, string(ev.Payload), ms(ev.CreatedAt)
		if ev.DedupeKey != "" {
			keys[i] = &ev.DedupeKey
		}
	}
	return []any{t.ClientID, session, ids, types, keys, payloads, created}
}

// pgIngestSQL stores events and their outbox rows in one statement, one
// round trip: an inbound batch's latency on PostgreSQL is mostly round
// trips. Outbox rows are written only for the events actually inserted
// (not the duplicates ON CONFLICT skipped) and, as in pgInsertJobsSQL, only
// for webhooks that still exist, which stay locked (FOR KEY SHARE, as the
// foreign key dropped in migration 0007 did) until commit: DeleteWebhook
// waits for this transaction, then deletes every row it inserted. The
// engine treats the jobs of a webhook deleted meanwhile as any other job
// whose webhook is gone.
const pgIngestSQL = `WITH ev AS (
		INSERT INTO events (id, client_id, session_id, event_type, dedupe_key, payload, created_at)
		SELECT v.id, $1::bigint, $2::text, v.event_type, v.dedupe_key, v.payload, v.created_at
		FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) AS v(id, event_type, dedupe_key, payload, created_at)
		ON CONFLICT DO NOTHING RETURNING id
	), jb AS (
		INSERT INTO whatsapp_webhook_events (id, event_id, webhook_id, event_type, client_id, status,
			next_attempt_at, lease_owner, created_at, updated_at)
		SELECT j.id, j.event_id, j.webhook_id, j.event_type, $1::bigint, 'pending', j.next_attempt_at, j.lease_owner, $13::bigint, $13::bigint
		FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $14::text[])
			AS j(id, event_id, webhook_id, event_type, next_attempt_at, lease_owner)
		WHERE j.event_id IN (SELECT id FROM ev)
			AND j.webhook_id IN (SELECT id FROM webhooks WHERE id = ANY($15::text[]) FOR KEY SHARE)
	)
	SELECT id FROM ev`

// pgIngest is Ingest's body on PostgreSQL: the jobs of every event are
// built, and leased, before the insert tells which events were new; the
// jobs of duplicates are dropped afterwards (their lease went unused).
func (s *DB) pgIngest(ctx context.Context, tx *sql.Tx, t delivery.Target, evs []delivery.NewEvent, hooks []webhooks.Webhook,
	lease delivery.Lease, now time.Time) ([]delivery.Job, int, error) {
	place, at := placer(lease, now), ms(now)
	var jobs []delivery.Job
	stored := 0
	for start := 0; start < len(evs); start += pgChunk {
		part := evs[start:min(start+pgChunk, len(evs))]
		evArgs := pgEventArgs(t, part)
		var cand []delivery.Job
		for _, ev := range part {
			for _, h := range hooks {
				if h.Matches(ev.Type) {
					cand = append(cand, delivery.Job{
						ID: s.ids.New(now), EventID: ev.ID, WebhookID: h.ID, ClientID: t.ClientID,
						EventType: ev.Type, Payload: ev.Payload, CreatedAt: ev.CreatedAt,
					})
				}
			}
		}
		ids := make([]string, len(cand))
		eventIDs := make([]string, len(cand))
		hookIDs := make([]string, len(cand))
		types := make([]string, len(cand))
		next := make([]int64, len(cand))
		owners := make([]string, len(cand))
		for i := range cand {
			j := &cand[i]
			owners[i], next[i] = place(j)
			ids[i], eventIDs[i], hookIDs[i], types[i] = j.ID, j.EventID, j.WebhookID, j.EventType
		}
		distinct := make([]string, 0, len(hooks))
		for _, h := range hooks {
			distinct = append(distinct, h.ID)
		}
		args := append(evArgs, ids, eventIDs, hookIDs, types, next, at, owners, distinct)
		rows, err := tx.QueryContext(ctx, pgIngestSQL, args...)
		if err != nil {
			return nil, 0, fmt.Errorf("insert events: %w", err)
		}
		inserted := make(map[string]bool, len(part))
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, 0, err
			}
			inserted[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, 0, err
		}
		stored += len(inserted)
		if err := s.insertMediaRefs(ctx, tx, t.SessionID, part, inserted); err != nil {
			return nil, 0, err
		}
		for _, j := range cand {
			if inserted[j.EventID] {
				jobs = append(jobs, j)
			}
		}
	}
	return jobs, stored, nil
}

// pgCompleteSQL writes the rows' new state and their attempts in one
// statement. Attempts are written only for the rows the UPDATE found: a
// row deleted before it (its webhook or client was deleted) has none, and
// the rows it found stay locked until commit, so none can vanish before the
// attempts' foreign key is checked.
const pgCompleteSQL = `WITH up AS (
		UPDATE whatsapp_webhook_events SET status = v.status, attempts = attempts + 1,
			last_status_code = v.status_code, last_error = v.error, next_attempt_at = v.next_attempt_at,
			delivered_at = v.delivered_at, lease_owner = '', updated_at = $7::bigint
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[])
			AS v(id, status, status_code, error, next_attempt_at, delivered_at)
		WHERE whatsapp_webhook_events.id = v.id
		RETURNING whatsapp_webhook_events.id
	)
	INSERT INTO delivery_attempts (webhook_event_id, attempt, started_at, duration_ms, status_code, response_body, error)
	SELECT a.* FROM unnest($1::text[], $8::bigint[], $9::bigint[], $10::bigint[], $3::bigint[], $11::text[], $4::text[])
		AS a(id, attempt, started_at, duration_ms, status_code, response_body, error)
	WHERE a.id IN (SELECT id FROM up)`

// pgComplete is updateRows and insertAttempts in one round trip.
func (s *DB) pgComplete(ctx context.Context, tx *sql.Tx, done []delivery.Result, now time.Time) error {
	for start := 0; start < len(done); start += pgChunk {
		part := done[start:min(start+pgChunk, len(done))]
		n := len(part)
		ids, statuses, errTexts, bodies := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		codes, next, attempts, started, durations := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		delivered := make([]*int64, n)
		for i, r := range part {
			status, due, at := rowUpdate(r)
			ids[i], statuses[i], codes[i], errTexts[i], next[i] = r.Job.ID, status, int64(r.StatusCode), r.Error, due
			if at.Valid {
				delivered[i] = &at.Int64
			}
			attempts[i], started[i], durations[i] = int64(r.Job.Attempts+1), ms(r.StartedAt), r.Duration.Milliseconds()
			bodies[i] = strings.ToValidUTF8(r.ResponseBody, "\uFFFD")
		}
		if _, err := tx.ExecContext(ctx, pgCompleteSQL, ids, statuses, codes, errTexts, next, delivered, ms(now),
			attempts, started, durations, bodies); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	return nil
}
