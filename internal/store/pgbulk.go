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

const pgInsertEventsSQL = `INSERT INTO events (id, client_id, session_id, event_type, dedupe_key, payload, created_at)
	SELECT v.id, $1::bigint, $2::text, v.event_type, v.dedupe_key, v.payload, v.created_at
	FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) AS v(id, event_type, dedupe_key, payload, created_at)
	ON CONFLICT DO NOTHING RETURNING id`

// pgInsertEvents is Ingest's events statement: a nil session and an empty
// dedupe key are NULL, as in the VALUES version.
func pgInsertEvents(t delivery.Target, part []delivery.NewEvent) (string, []any) {
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
	return pgInsertEventsSQL, []any{t.ClientID, session, ids, types, keys, payloads, created}
}

// The outbox rows of a webhook deleted since fan-out read it are left out:
// the webhooks that remain are locked (FOR KEY SHARE, as the foreign key
// dropped in migration 0007 did) until commit, so DeleteWebhook waits for
// this transaction and then deletes every row it inserted. The engine
// treats the jobs of a deleted webhook as it does any other job whose
// webhook is gone.
const pgInsertJobsSQL = `INSERT INTO whatsapp_webhook_events (id, event_id, webhook_id, event_type, client_id, status,
		next_attempt_at, lease_owner, created_at, updated_at)
	SELECT v.id, v.event_id, v.webhook_id, v.event_type, v.client_id, 'pending', v.next_attempt_at, v.lease_owner, $8::bigint, $8::bigint
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
		AS v(id, event_id, webhook_id, event_type, client_id, next_attempt_at, lease_owner)
	WHERE v.webhook_id IN (SELECT id FROM webhooks WHERE id = ANY($9::text[]) FOR KEY SHARE)`

// pgInsertJobs inserts the outbox rows of jobs; place leases, defers or
// leaves due each one, as insertJobs does.
func (s *DB) pgInsertJobs(ctx context.Context, tx *sql.Tx, jobs []delivery.Job, place func(*delivery.Job) (string, int64), at int64) error {
	for start := 0; start < len(jobs); start += pgChunk {
		part := jobs[start:min(start+pgChunk, len(jobs))]
		ids := make([]string, len(part))
		events := make([]string, len(part))
		hooks := make([]string, len(part))
		types := make([]string, len(part))
		clients := make([]int64, len(part))
		next := make([]int64, len(part))
		owners := make([]string, len(part))
		var distinct []string
		seen := map[string]bool{}
		for i := range part {
			j := &part[i]
			owners[i], next[i] = place(j)
			ids[i], events[i], hooks[i], types[i], clients[i] = j.ID, j.EventID, j.WebhookID, j.EventType, j.ClientID
			if !seen[j.WebhookID] {
				seen[j.WebhookID] = true
				distinct = append(distinct, j.WebhookID)
			}
		}
		if _, err := tx.ExecContext(ctx, pgInsertJobsSQL, ids, events, hooks, types, clients, next, owners, at, distinct); err != nil {
			return fmt.Errorf("insert outbox rows: %w", err)
		}
	}
	return nil
}

const pgUpdateRowsSQL = `UPDATE whatsapp_webhook_events SET status = v.status, attempts = attempts + 1,
		last_status_code = v.status_code, last_error = v.error, next_attempt_at = v.next_attempt_at,
		delivered_at = v.delivered_at, lease_owner = '', updated_at = $7::bigint
	FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[])
		AS v(id, status, status_code, error, next_attempt_at, delivered_at)
	WHERE whatsapp_webhook_events.id = v.id`

// pgUpdateRows writes the rows' new state after their attempts.
func (s *DB) pgUpdateRows(ctx context.Context, tx *sql.Tx, done []delivery.Result, now time.Time) error {
	for start := 0; start < len(done); start += pgChunk {
		part := done[start:min(start+pgChunk, len(done))]
		ids := make([]string, len(part))
		statuses := make([]string, len(part))
		codes := make([]int64, len(part))
		errTexts := make([]string, len(part))
		next := make([]int64, len(part))
		delivered := make([]*int64, len(part))
		for i, r := range part {
			status, due, at := rowUpdate(r)
			ids[i], statuses[i], codes[i], errTexts[i], next[i] = r.Job.ID, status, int64(r.StatusCode), r.Error, due
			if at.Valid {
				delivered[i] = &at.Int64
			}
		}
		if _, err := tx.ExecContext(ctx, pgUpdateRowsSQL, ids, statuses, codes, errTexts, next, delivered, ms(now)); err != nil {
			return fmt.Errorf("update outbox rows: %w", err)
		}
	}
	return nil
}

const pgInsertAttemptsSQL = `INSERT INTO delivery_attempts (webhook_event_id, attempt, started_at, duration_ms, status_code, response_body, error)
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[])`

// pgInsertAttempts inserts the attempts of done, with insertAttemptsChecked's
// fallback when some rows were deleted meanwhile.
func (s *DB) pgInsertAttempts(ctx context.Context, tx *sql.Tx, done []delivery.Result) error {
	for start := 0; start < len(done); start += pgChunk {
		part := done[start:min(start+pgChunk, len(done))]
		ids := make([]string, len(part))
		attempts := make([]int64, len(part))
		started := make([]int64, len(part))
		durations := make([]int64, len(part))
		codes := make([]int64, len(part))
		bodies := make([]string, len(part))
		errTexts := make([]string, len(part))
		for i, r := range part {
			ids[i], attempts[i], started[i], durations[i] = r.Job.ID, int64(r.Job.Attempts+1), ms(r.StartedAt), r.Duration.Milliseconds()
			codes[i], bodies[i], errTexts[i] = int64(r.StatusCode), strings.ToValidUTF8(r.ResponseBody, "\uFFFD"), r.Error
		}
		args := []any{ids, attempts, started, durations, codes, bodies, errTexts}
		if err := s.insertAttemptsChecked(ctx, tx, pgInsertAttemptsSQL, args, part); err != nil {
			return err
		}
	}
	return nil
}

// pgIngestSQL stores events and their outbox rows in one statement, one
// round trip: an inbound batch's latency on PostgreSQL is mostly round
// trips. Outbox rows are written only for the events actually inserted
// (not the duplicates ON CONFLICT skipped) and, as in pgInsertJobsSQL, only
// for webhooks that still exist, which stay locked until commit.
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
		_, evArgs := pgInsertEvents(t, part)
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
