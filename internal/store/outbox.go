package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/webhooks"
)

// chunk bounds rows per multi-row statement, well under both dialects'
// parameter limits (SQLite 32766, PostgreSQL 65535).
const chunk = 400

// bulk builds a statement with many parameters. SQLite resolves "$N"
// names with a linear search, which makes a big multi-row statement
// quadratic, so bulk writes anonymous "?" there and "$N" on PostgreSQL.
type bulk struct {
	strings.Builder
	args []any
	pg   bool
}

func (s *DB) bulk(capacity int) *bulk {
	return &bulk{args: make([]any, 0, capacity), pg: s.dialect == Postgres}
}

// arg writes the placeholder of v.
func (q *bulk) arg(v any) {
	q.args = append(q.args, v)
	if q.pg {
		q.WriteString("$" + strconv.Itoa(len(q.args)))
	} else {
		q.WriteByte('?')
	}
}

// row writes "(a, b, ...)" for vals, with a leading comma after the first.
func (q *bulk) row(first bool, vals ...any) {
	if !first {
		q.WriteString(", ")
	}
	q.WriteByte('(')
	for i, v := range vals {
		if i > 0 {
			q.WriteString(", ")
		}
		q.arg(v)
	}
	q.WriteByte(')')
}

// querier is what fan-out reads through: a transaction or the pool.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Ingest stores new events, skipping those whose (session, dedupe key) is
// already stored, and in the same transaction one outbox row per matching
// active webhook. Rows are leased to lease.Owner when it is set, so the
// caller can hand them to its workers at once. It returns the new events'
// count and the jobs.
func (s *DB) Ingest(ctx context.Context, t delivery.Target, evs []delivery.NewEvent, lease delivery.Lease) (int, []delivery.Job, error) {
	if len(evs) == 0 {
		return 0, nil, nil
	}
	now := s.now()
	var jobs []delivery.Job
	stored := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		jobs, stored = jobs[:0], 0
		hooks, err := lockTarget(ctx, tx, s.dialect, t)
		if err != nil {
			return err
		}
		if s.dialect == Postgres {
			jobs, stored, err = s.pgIngest(ctx, tx, t, evs, hooks, lease, now)
			return err
		}
		step := chunk
		if s.dialect == Postgres {
			step = pgChunk
		}
		for start := 0; start < len(evs); start += step {
			part := evs[start:min(start+step, len(evs))]
			inserted, err := s.insertEvents(ctx, tx, t, part)
			if err != nil {
				return err
			}
			stored += len(inserted)
			if err := s.insertMediaRefs(ctx, tx, t.SessionID, part, inserted); err != nil {
				return err
			}
			for _, ev := range part {
				if !inserted[ev.ID] {
					continue
				}
				for _, h := range hooks {
					if h.Matches(ev.Type) {
						jobs = append(jobs, delivery.Job{
							ID: s.ids.New(now), EventID: ev.ID, WebhookID: h.ID, ClientID: t.ClientID,
							EventType: ev.Type, Payload: ev.Payload, CreatedAt: ev.CreatedAt,
						})
					}
				}
			}
		}
		return s.insertJobs(ctx, tx, jobs, lease, now)
	})
	if err != nil {
		return 0, nil, err
	}
	return stored, jobs, nil
}

// lockTarget checks that the client and the session of t still exist and,
// on PostgreSQL, locks them (FOR KEY SHARE, what their foreign keys did
// before migration 0007) until commit, so that deleting either waits for
// this transaction and then deletes what it stored. In the same round trip
// it lists the webhooks the events go to (as FanoutWebhooks): one query
// less per inbound batch, whose latency is mostly round trips.
func lockTarget(ctx context.Context, tx *sql.Tx, dialect string, t delivery.Target) ([]webhooks.Webhook, error) {
	lock := ""
	if dialect == Postgres {
		lock = " FOR KEY SHARE"
	}
	var session any
	if t.SessionID != "" {
		session = t.SessionID
	}
	q := `SELECT l.client, l.session, w.id, w.phone_number, w.events
		FROM (SELECT (SELECT 1 FROM clients WHERE id = $1` + lock + `) AS client,
			(SELECT 1 FROM whatsapp_connections WHERE id = $2` + lock + `) AS session) l
		LEFT JOIN webhooks w ON w.client_id = $1 AND w.active = $3`
	args := []any{t.ClientID, session, true}
	if t.WebhookID != "" {
		q += ` AND w.id = $4`
		args = append(args, t.WebhookID)
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("check client and session: %w", err)
	}
	defer rows.Close()
	var out []webhooks.Webhook
	var client, sess sql.NullInt64
	for rows.Next() {
		var id, phone, evs sql.NullString
		if err := rows.Scan(&client, &sess, &id, &phone, &evs); err != nil {
			return nil, err
		}
		if !id.Valid {
			continue // no webhook: the one row says only whether the targets exist
		}
		h, ok, err := fanoutHook(t, id.String, phone.String, evs.String)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, h)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	switch {
	case !client.Valid:
		return nil, errs.E(errs.NotFound, "client not found")
	case session != nil && !sess.Valid:
		return nil, errs.E(errs.NotFound, "session not found")
	}
	return out, nil
}

// insertEvents inserts part (on SQLite; PostgreSQL has pgIngest), skipping
// the events whose (session, dedupe key) is already stored, and returns the
// ids it inserted.
func (s *DB) insertEvents(ctx context.Context, tx *sql.Tx, t delivery.Target, part []delivery.NewEvent) (map[string]bool, error) {
	var session any
	if t.SessionID != "" {
		session = t.SessionID
	}
	b := s.bulk(len(part) * 7)
	b.WriteString(`INSERT INTO events (id, client_id, session_id, event_type, dedupe_key, payload, created_at) VALUES `)
	for i, ev := range part {
		var key any
		if ev.DedupeKey != "" {
			key = ev.DedupeKey
		}
		b.row(i == 0, ev.ID, t.ClientID, session, ev.Type, key, string(ev.Payload), ms(ev.CreatedAt))
	}
	b.WriteString(` ON CONFLICT DO NOTHING RETURNING id`)
	rows, err := tx.QueryContext(ctx, b.String(), b.args...)
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	inserted := make(map[string]bool, len(part))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		inserted[id] = true
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	return inserted, nil
}

// FanoutWebhooks lists the active webhooks an event of t goes to, with
// only the fields fan-out needs (id, phone number, event filter).
func (s *DB) FanoutWebhooks(ctx context.Context, t delivery.Target) ([]webhooks.Webhook, error) {
	return fanoutHooks(ctx, s.db, t)
}

func fanoutHooks(ctx context.Context, db querier, t delivery.Target) ([]webhooks.Webhook, error) {
	q := `SELECT id, phone_number, events FROM webhooks WHERE client_id = $1 AND active = $2`
	args := []any{t.ClientID, true}
	if t.WebhookID != "" {
		q += ` AND id = $3`
		args = append(args, t.WebhookID)
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("select webhooks: %w", err)
	}
	defer rows.Close()
	var out []webhooks.Webhook
	for rows.Next() {
		var id, phone, evs string
		if err := rows.Scan(&id, &phone, &evs); err != nil {
			return nil, err
		}
		h, ok, err := fanoutHook(t, id, phone, evs)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, h)
		}
	}
	return out, rows.Err()
}

// fanoutHook builds a fan-out webhook from its row, and reports whether
// events of t go to it (its phone number matches).
func fanoutHook(t delivery.Target, id, phone, evs string) (webhooks.Webhook, bool, error) {
	h := webhooks.Webhook{ID: id, PhoneNumber: phone}
	if t.WebhookID != "" {
		h.Events = []string{"*"} // a test event goes to the webhook it names
		return h, true, nil
	}
	if !h.MatchesPhone(t.PhoneNumber) {
		return h, false, nil
	}
	if err := json.Unmarshal([]byte(evs), &h.Events); err != nil {
		return h, false, fmt.Errorf("webhook %s events: %w", h.ID, err)
	}
	return h, true, nil
}

func (s *DB) insertJobs(ctx context.Context, tx *sql.Tx, jobs []delivery.Job, lease delivery.Lease, now time.Time) error {
	place, at := placer(lease, now), ms(now)
	for start := 0; start < len(jobs); start += chunk {
		part := jobs[start:min(start+chunk, len(jobs))]
		q := s.bulk(len(part) * 10)
		q.WriteString(`INSERT INTO whatsapp_webhook_events (id, event_id, webhook_id, event_type, client_id, status,
			next_attempt_at, lease_owner, created_at, updated_at) VALUES `)
		for i := range part {
			j := &part[i]
			owner, next := place(j)
			q.row(i == 0, j.ID, j.EventID, j.WebhookID, j.EventType, j.ClientID, "pending", next, owner, at, at)
		}
		if _, err := tx.ExecContext(ctx, q.String(), q.args...); err != nil {
			return fmt.Errorf("insert outbox rows: %w", err)
		}
	}
	return nil
}

// placer returns the function that decides one new outbox row's
// lease_owner and next_attempt_at, and marks its job leased or deferred.
func placer(lease delivery.Lease, now time.Time) func(*delivery.Job) (string, int64) {
	// A leased row is due when the lease ends, a deferred one later.
	leased, at := lease.Placer(), ms(now)
	return func(j *delivery.Job) (string, int64) {
		owner, next := "", at
		if j.Leased, j.Deferred = leased(j.WebhookID); j.Leased {
			owner, next = lease.Owner, ms(lease.Until)
		} else if j.Deferred {
			next = ms(now.Add(lease.Deferral(j.WebhookID)))
		}
		return owner, next
	}
}

// Claim leases up to limit due rows of active webhooks to lease.Owner,
// oldest due first. Webhooks in skip are busy on this node (their queue is
// deep but moving): their rows are left where they are. Webhooks in stalled
// have a receiver that does not answer: their due rows met on the way are
// pushed lease.Defer ahead, so that the next claims do not step over them
// again. A pass reads a bounded window of due rows, so a hung endpoint's
// backlog costs a claim no more than that window. On PostgreSQL, FOR
// UPDATE SKIP LOCKED lets several nodes claim at once.
func (s *DB) Claim(ctx context.Context, lease delivery.Lease, limit int, skip, stalled []string) ([]delivery.Job, error) {
	pushed := make(map[string]bool, len(stalled))
	for _, id := range stalled {
		pushed[id] = true
	}
	var jobs []delivery.Job
	// A pass that deferred rows goes on to the next window, a few times at
	// most: the rest waits for the next poll.
	for pass := 0; pass < 4 && len(jobs) < limit; pass++ {
		got, deferred, full, err := s.claimWindow(ctx, lease, limit-len(jobs), skip, pushed)
		if err != nil {
			return jobs, err
		}
		jobs = append(jobs, got...)
		if !full || deferred == 0 {
			break
		}
	}
	return jobs, nil
}

// claimWindow runs one pass of Claim in a transaction. full reports that
// the window was full, so more due rows may follow.
func (s *DB) claimWindow(ctx context.Context, lease delivery.Lease, limit int, skip []string, stalled map[string]bool) (jobs []delivery.Job, deferred int, full bool, err error) {
	now := ms(s.now())
	window := limit
	if len(stalled) > 0 {
		window = limit * 2
	}
	args := []any{now, true, window}
	var q strings.Builder
	q.WriteString(`SELECT e.id, e.webhook_id FROM whatsapp_webhook_events e
		JOIN webhooks w ON w.id = e.webhook_id
		WHERE e.status = 'pending' AND e.next_attempt_at <= $1 AND w.active = $2`)
	if len(skip) > 0 {
		q.WriteString(" AND e.webhook_id NOT IN (")
		for i, id := range skip {
			if i > 0 {
				q.WriteString(", ")
			}
			args = append(args, id)
			q.WriteString("$" + strconv.Itoa(len(args)))
		}
		q.WriteString(")")
	}
	q.WriteString(` ORDER BY e.next_attempt_at LIMIT $3`)
	if s.dialect == Postgres {
		q.WriteString(" FOR UPDATE OF e SKIP LOCKED")
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		jobs, deferred, full = jobs[:0], 0, false
		rows, err := tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		var take []any
		later := map[string][]any{} // stalled webhook -> its rows met
		n := 0
		for rows.Next() {
			var id, hook string
			if err := rows.Scan(&id, &hook); err != nil {
				rows.Close()
				return err
			}
			n++
			if stalled[hook] && lease.Deferral(hook) > 0 {
				later[hook] = append(later[hook], id)
				deferred++
			} else if len(take) < limit {
				take = append(take, id)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		full = n == window
		for hook, ids := range later {
			q := s.bulk(len(ids) + 1)
			q.WriteString(`UPDATE whatsapp_webhook_events SET next_attempt_at = `)
			q.arg(now + lease.Deferral(hook).Milliseconds())
			q.WriteString(` WHERE id IN `)
			q.row(true, ids...)
			if _, err := tx.ExecContext(ctx, q.String(), q.args...); err != nil {
				return fmt.Errorf("defer rows: %w", err)
			}
		}
		if len(take) == 0 {
			return nil
		}
		q := s.bulk(len(take) + 2)
		q.WriteString(`UPDATE whatsapp_webhook_events SET lease_owner = `)
		q.arg(lease.Owner)
		q.WriteString(`, next_attempt_at = `)
		q.arg(ms(lease.Until))
		q.WriteString(` WHERE id IN `)
		q.row(true, take...)
		q.WriteString(` RETURNING id, event_id, webhook_id, client_id, event_type, attempts, budget_base, created_at`)
		rows, err = tx.QueryContext(ctx, q.String(), q.args...)
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		byEvent := map[string][]int{}
		for rows.Next() {
			var j delivery.Job
			var created int64
			if err := rows.Scan(&j.ID, &j.EventID, &j.WebhookID, &j.ClientID, &j.EventType, &j.Attempts, &j.BudgetBase, &created); err != nil {
				rows.Close()
				return err
			}
			j.CreatedAt = fromMS(created)
			j.Leased = true
			byEvent[j.EventID] = append(byEvent[j.EventID], len(jobs))
			jobs = append(jobs, j)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		return s.loadPayloads(ctx, tx, jobs, byEvent)
	})
	return jobs, deferred, full, err
}

func (s *DB) loadPayloads(ctx context.Context, tx *sql.Tx, jobs []delivery.Job, byEvent map[string][]int) error {
	ids := make([]any, 0, len(byEvent))
	for id := range byEvent {
		ids = append(ids, id)
	}
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		q := s.bulk(len(part))
		q.WriteString(`SELECT id, payload FROM events WHERE id IN `)
		q.row(true, part...)
		rows, err := tx.QueryContext(ctx, q.String(), q.args...)
		if err != nil {
			return fmt.Errorf("load payloads: %w", err)
		}
		for rows.Next() {
			var id, payload string
			if err := rows.Scan(&id, &payload); err != nil {
				rows.Close()
				return err
			}
			p := []byte(payload)
			for _, i := range byEvent[id] {
				jobs[i].Payload = p
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	return nil
}

// ReleaseOwner gives back every row leased to owner, e.g. after a crash of
// this node, so they are due at once instead of when the lease ends.
func (s *DB) ReleaseOwner(ctx context.Context, owner string) (int64, error) {
	res, err := s.exec(ctx, `UPDATE whatsapp_webhook_events SET lease_owner = '', next_attempt_at = $2
		WHERE status = 'pending' AND lease_owner = $1`, owner, ms(s.now()))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

type hookTally struct {
	clientID       int64
	success        bool      // some attempt after the last failure run succeeded
	failures       int       // failures after the last success in this batch
	firstFailure   time.Time // first of those failures
	disableReason  string
	lastAttemptErr string
}

// Complete writes a batch of results in one transaction: the rows, their
// attempts, the webhooks' failure streaks, and disables webhooks that
// answered 410 or kept failing for disableAfter and at least minFailures
// attempts. It returns the webhooks it disabled.
func (s *DB) Complete(ctx context.Context, results []delivery.Result, minFailures int, disableAfter time.Duration) ([]delivery.Disabled, error) {
	if len(results) == 0 {
		return nil, nil
	}
	now := s.now()
	var disabled []delivery.Disabled
	err := s.tx(ctx, func(tx *sql.Tx) error {
		disabled = disabled[:0]
		var done, released []delivery.Result
		tally := map[string]*hookTally{}
		var order []string
		for _, r := range results {
			if r.Outcome == delivery.OutcomeRelease {
				released = append(released, r)
				continue
			}
			done = append(done, r)
			t := tally[r.Job.WebhookID]
			if t == nil {
				t = &hookTally{clientID: r.Job.ClientID}
				tally[r.Job.WebhookID] = t
				order = append(order, r.Job.WebhookID)
			}
			if r.Outcome == delivery.OutcomeDelivered {
				t.success, t.failures, t.firstFailure = true, 0, time.Time{}
			} else {
				if t.failures == 0 {
					t.firstFailure = r.StartedAt
				}
				t.failures++
				t.lastAttemptErr = r.Error
			}
			if r.DisableReason != "" {
				t.disableReason = r.DisableReason
			}
		}
		if s.dialect == Postgres {
			if err := s.pgComplete(ctx, tx, done, now); err != nil {
				return err
			}
		} else {
			if err := s.updateRows(ctx, tx, done, now); err != nil {
				return err
			}
			if err := s.insertAttempts(ctx, tx, done); err != nil {
				return err
			}
		}
		if err := s.releaseRows(ctx, tx, released); err != nil {
			return err
		}
		// Webhooks with only successes in the batch, the usual case, have
		// their streaks cleared in one statement.
		var ok []any
		for _, id := range order {
			if t := tally[id]; t.failures == 0 && t.disableReason == "" {
				ok = append(ok, id)
			}
		}
		if err := s.clearStreaks(ctx, tx, ok); err != nil {
			return err
		}
		for _, id := range order {
			if t := tally[id]; t.failures == 0 && t.disableReason == "" {
				continue
			}
			d, err := s.updateStreak(ctx, tx, id, tally[id], now, minFailures, disableAfter)
			if err != nil {
				return err
			}
			if d != nil {
				disabled = append(disabled, *d)
			}
		}
		return nil
	})
	return disabled, err
}

// rowUpdate is the new state of one outbox row after an attempt.
func rowUpdate(r delivery.Result) (status string, next int64, delivered sql.NullInt64) {
	status, next = delivery.StatusPending, ms(r.NextAttemptAt)
	switch r.Outcome {
	case delivery.OutcomeDelivered:
		status, next = delivery.StatusDelivered, ms(r.StartedAt)
		delivered = sql.NullInt64{Int64: ms(r.StartedAt.Add(r.Duration)), Valid: true}
	case delivery.OutcomeFailed:
		status, next = delivery.StatusFailed, ms(r.StartedAt)
	}
	return status, next, delivered
}

func (s *DB) updateRows(ctx context.Context, tx *sql.Tx, done []delivery.Result, now time.Time) error {
	// In-process, a prepared single-row UPDATE per result costs a few
	// microseconds, less than SQLite's UPDATE ... FROM (VALUES) join.
	st, err := tx.PrepareContext(ctx, `UPDATE whatsapp_webhook_events SET status = ?, attempts = attempts + 1,
		last_status_code = ?, last_error = ?, next_attempt_at = ?, delivered_at = ?, lease_owner = '',
		updated_at = ? WHERE id = ?`)
	if err != nil {
		return err
	}
	defer st.Close()
	at := ms(now)
	for _, r := range done {
		status, next, delivered := rowUpdate(r)
		if _, err := st.ExecContext(ctx, status, r.StatusCode, r.Error, next, delivered, at, r.Job.ID); err != nil {
			return fmt.Errorf("update outbox row: %w", err)
		}
	}
	return nil
}

func (s *DB) insertAttempts(ctx context.Context, tx *sql.Tx, done []delivery.Result) error {
	for start := 0; start < len(done); start += chunk {
		part := done[start:min(start+chunk, len(done))]
		q := s.bulk(len(part) * 7)
		q.WriteString(`INSERT INTO delivery_attempts (webhook_event_id, attempt, started_at, duration_ms, status_code, response_body, error) VALUES `)
		for i, r := range part {
			q.row(i == 0, r.Job.ID, r.Job.Attempts+1, ms(r.StartedAt), r.Duration.Milliseconds(),
				r.StatusCode, strings.ToValidUTF8(r.ResponseBody, "\uFFFD"), r.Error)
		}
		if err := s.insertAttemptsChecked(ctx, tx, q.String(), q.args, part); err != nil {
			return err
		}
	}
	return nil
}

// insertAttemptsChecked inserts attempts (on SQLite; PostgreSQL has
// pgComplete), falling back to one at a time when the batch trips a
// foreign key because some rows were deleted meanwhile.
func (s *DB) insertAttemptsChecked(ctx context.Context, tx *sql.Tx, q string, args []any, part []delivery.Result) error {
	_, err := tx.ExecContext(ctx, q, args...)
	if err == nil {
		return nil
	}
	if !isForeignKeyViolation(err) {
		return fmt.Errorf("insert attempts: %w", err)
	}
	for _, r := range part {
		if _, err := tx.ExecContext(ctx, `INSERT INTO delivery_attempts (webhook_event_id, attempt, started_at, duration_ms, status_code, response_body, error)
			SELECT id, $2, $3, $4, $5, $6, $7 FROM whatsapp_webhook_events WHERE id = $1`,
			r.Job.ID, r.Job.Attempts+1, ms(r.StartedAt), r.Duration.Milliseconds(), r.StatusCode,
			strings.ToValidUTF8(r.ResponseBody, "\uFFFD"), r.Error); err != nil {
			return fmt.Errorf("insert attempt: %w", err)
		}
	}
	return nil
}

func isForeignKeyViolation(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "FOREIGN KEY constraint failed") || strings.Contains(msg, "SQLSTATE 23503")
}

func (s *DB) releaseRows(ctx context.Context, tx *sql.Tx, released []delivery.Result) error {
	for start := 0; start < len(released); start += chunk {
		part := released[start:min(start+chunk, len(released))]
		q := s.bulk(len(part) + 1)
		q.WriteString(`UPDATE whatsapp_webhook_events SET lease_owner = '', next_attempt_at = `)
		q.arg(ms(s.now()))
		q.WriteString(` WHERE status = 'pending' AND id IN `)
		ids := make([]any, len(part))
		for i, r := range part {
			ids[i] = r.Job.ID
		}
		q.row(true, ids...)
		if _, err := tx.ExecContext(ctx, q.String(), q.args...); err != nil {
			return fmt.Errorf("release rows: %w", err)
		}
	}
	return nil
}

// clearStreaks resets the failure streaks of webhooks that just succeeded.
func (s *DB) clearStreaks(ctx context.Context, tx *sql.Tx, ids []any) error {
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		q := s.bulk(len(part))
		q.WriteString(`UPDATE webhooks SET consecutive_failures = 0, failing_since = NULL
			WHERE (consecutive_failures <> 0 OR failing_since IS NOT NULL) AND id IN `)
		q.row(true, part...)
		if _, err := tx.ExecContext(ctx, q.String(), q.args...); err != nil {
			return fmt.Errorf("update webhook streaks: %w", err)
		}
	}
	return nil
}

func (s *DB) updateStreak(ctx context.Context, tx *sql.Tx, id string, t *hookTally, now time.Time, minFailures int, disableAfter time.Duration) (*delivery.Disabled, error) {
	var err error
	switch {
	case t.failures == 0:
		_, err = tx.ExecContext(ctx, `UPDATE webhooks SET consecutive_failures = 0, failing_since = NULL
			WHERE id = $1 AND (consecutive_failures <> 0 OR failing_since IS NOT NULL)`, id)
	case t.success:
		_, err = tx.ExecContext(ctx, `UPDATE webhooks SET consecutive_failures = $2, failing_since = $3 WHERE id = $1`,
			id, t.failures, ms(t.firstFailure))
	default:
		_, err = tx.ExecContext(ctx, `UPDATE webhooks SET consecutive_failures = consecutive_failures + $2,
			failing_since = COALESCE(failing_since, $3) WHERE id = $1`, id, t.failures, ms(t.firstFailure))
	}
	if err != nil {
		return nil, fmt.Errorf("update webhook streak: %w", err)
	}
	if t.failures == 0 && t.disableReason == "" {
		return nil, nil
	}
	var q string
	args := []any{id, false, ms(now), true}
	if t.disableReason != "" {
		q = `UPDATE webhooks SET active = $2, disabled_at = $3, disabled_reason = $5, updated_at = $3
			WHERE id = $1 AND active = $4`
		args = append(args, t.disableReason)
	} else {
		reason := fmt.Sprintf("failing for over %s (%s)", disableAfter, "last error: "+truncate(t.lastAttemptErr, 200))
		q = `UPDATE webhooks SET active = $2, disabled_at = $3, disabled_reason = $5, updated_at = $3
			WHERE id = $1 AND active = $4 AND consecutive_failures >= $6 AND failing_since <= $7`
		args = append(args, reason, minFailures, ms(now.Add(-disableAfter)))
	}
	q += ` RETURNING client_id, url, disabled_reason, consecutive_failures, failing_since`
	d := delivery.Disabled{WebhookID: id}
	var since sql.NullInt64
	err = tx.QueryRowContext(ctx, q, args...).Scan(&d.ClientID, &d.URL, &d.Reason, &d.ConsecutiveFailures, &since)
	if err == sql.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("disable webhook: %w", err)
	}
	d.FailingSince = fromNullMS(since)
	if err := s.parkDeliveries(ctx, tx, id, true); err != nil {
		return nil, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT alert_webhook_url FROM clients WHERE id = $1`, d.ClientID).Scan(&d.AlertURL); err != nil && err != sql.ErrNoRows {
		return nil, err
	}
	return &d, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

const eventItemCols = `e.id, e.event_id, e.webhook_id, e.event_type, e.status, e.attempts, e.last_status_code,
	e.last_error, e.next_attempt_at, e.delivered_at, e.created_at, ev.payload`

func scanEventItem(row interface{ Scan(...any) error }) (delivery.EventItem, error) {
	var it delivery.EventItem
	var next, created int64
	var delivered sql.NullInt64
	var payload string
	if err := row.Scan(&it.ID, &it.EventID, &it.WebhookID, &it.EventType, &it.Status, &it.Attempts,
		&it.LastStatusCode, &it.LastError, &next, &delivered, &created, &payload); err != nil {
		return it, err
	}
	// Parked rows wait for their webhook to be re-enabled: no time is due.
	if it.Status == delivery.StatusPending && next < parkedUntil {
		t := fromMS(next)
		it.NextAttemptAt = &t
	}
	if delivered.Valid {
		t := fromMS(delivered.Int64)
		it.DeliveredAt = &t
	}
	it.CreatedAt = fromMS(created)
	it.Payload = json.RawMessage(payload)
	return it, nil
}

// ListEvents returns a webhook's events, newest first (ids are time
// ordered), and the cursor of the next page ("" when there is none).
func (s *DB) ListEvents(ctx context.Context, q delivery.ListQuery) ([]delivery.EventItem, string, error) {
	if err := s.ownWebhook(ctx, q.ClientID, q.WebhookID); err != nil {
		return nil, "", err
	}
	sqlq := `SELECT ` + eventItemCols + ` FROM whatsapp_webhook_events e JOIN events ev ON ev.id = e.event_id
		WHERE e.webhook_id = $1 AND e.client_id = $2`
	args := []any{q.WebhookID, q.ClientID}
	if q.Status != "" {
		args = append(args, q.Status)
		sqlq += ` AND e.status = $` + strconv.Itoa(len(args))
	}
	if q.Cursor != "" {
		args = append(args, q.Cursor)
		sqlq += ` AND e.id < $` + strconv.Itoa(len(args))
	}
	args = append(args, q.Limit+1)
	sqlq += ` ORDER BY e.id DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := s.db.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	items := []delivery.EventItem{}
	for rows.Next() {
		it, err := scanEventItem(rows)
		if err != nil {
			return nil, "", err
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	var next string
	if len(items) > q.Limit {
		items = items[:q.Limit]
		next = items[q.Limit-1].ID
	}
	return items, next, nil
}

func (s *DB) ownWebhook(ctx context.Context, clientID int64, webhookID string) error {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM webhooks WHERE id = $1 AND client_id = $2`, webhookID, clientID).Scan(&one)
	return notFound(err, "webhook")
}

// GetEvent returns one outbox row of a client with its attempts.
func (s *DB) GetEvent(ctx context.Context, clientID int64, id string) (delivery.EventItem, error) {
	it, err := scanEventItem(s.db.QueryRowContext(ctx, `SELECT `+eventItemCols+`
		FROM whatsapp_webhook_events e JOIN events ev ON ev.id = e.event_id WHERE e.id = $1 AND e.client_id = $2`, id, clientID))
	if err != nil {
		return it, notFound(err, "event")
	}
	rows, err := s.db.QueryContext(ctx, `SELECT attempt, started_at, duration_ms, status_code, response_body, error
		FROM delivery_attempts WHERE webhook_event_id = $1 ORDER BY attempt, id`, id)
	if err != nil {
		return it, err
	}
	defer rows.Close()
	it.AttemptLog = []delivery.Attempt{}
	for rows.Next() {
		var a delivery.Attempt
		var started int64
		if err := rows.Scan(&a.Attempt, &started, &a.DurationMS, &a.StatusCode, &a.ResponseBody, &a.Error); err != nil {
			return it, err
		}
		a.StartedAt = fromMS(started)
		it.AttemptLog = append(it.AttemptLog, a)
	}
	return it, rows.Err()
}

// Requeue makes one event of a client due now with a fresh retry budget,
// whatever its status. It returns the row's webhook id.
func (s *DB) Requeue(ctx context.Context, clientID int64, id string) (string, error) {
	now := ms(s.now())
	var webhookID string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `UPDATE whatsapp_webhook_events SET status = 'pending', budget_base = attempts,
			next_attempt_at = $3, lease_owner = '', delivered_at = NULL, updated_at = $3
			WHERE id = $1 AND client_id = $2 RETURNING webhook_id`, id, clientID, now).Scan(&webhookID)
	})
	return webhookID, notFound(err, "event")
}

// Recover requeues every failed event of a webhook created at or after since.
func (s *DB) Recover(ctx context.Context, clientID int64, webhookID string, since time.Time) (int64, error) {
	if err := s.ownWebhook(ctx, clientID, webhookID); err != nil {
		return 0, err
	}
	now := ms(s.now())
	res, err := s.exec(ctx, `UPDATE whatsapp_webhook_events SET status = 'pending', budget_base = attempts,
		next_attempt_at = $3, lease_owner = '', updated_at = $3
		WHERE webhook_id = $1 AND client_id = $2 AND status = 'failed' AND created_at >= $4`,
		webhookID, clientID, now, ms(since))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Prune deletes delivered and failed rows created before cutoff (their
// attempts go with them), then events left without rows, then old media
// references, at most limit of each per call so a large backlog is pruned
// in slices. Ids are time-ordered (UUIDv7), so "created before" is a range
// of the primary key and needs no index of its own.
func (s *DB) Prune(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	c, before := ms(cutoff), delivery.IDBefore(cutoff)
	res, err := s.exec(ctx, `DELETE FROM whatsapp_webhook_events WHERE id IN (
		SELECT id FROM whatsapp_webhook_events WHERE id < $1 AND status <> 'pending' LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := s.exec(ctx, `DELETE FROM events WHERE id IN (
		SELECT ev.id FROM events ev WHERE ev.id < $1
		AND NOT EXISTS (SELECT 1 FROM whatsapp_webhook_events e WHERE e.event_id = ev.id) LIMIT $2)`, before, limit); err != nil {
		return n, fmt.Errorf("prune events: %w", err)
	}
	if err := s.pruneMediaRefs(ctx, c, limit); err != nil {
		return n, err
	}
	return n, nil
}

// OutboxStats measures the backlog for metrics.
func (s *DB) OutboxStats(ctx context.Context) (delivery.Stats, error) {
	now := ms(s.now())
	var st delivery.Stats
	var oldest sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 'pending' AND next_attempt_at <= $1 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0),
		MIN(CASE WHEN status = 'pending' AND next_attempt_at <= $1 THEN next_attempt_at END)
		FROM whatsapp_webhook_events`, now).Scan(&st.Pending, &st.Due, &st.Failed, &oldest)
	if oldest.Valid {
		st.OldestDueAge = time.Duration(now-oldest.Int64) * time.Millisecond
	}
	return st, err
}

// parkedUntil is the due time of the pending rows of a disabled webhook: far
// enough that the claim's index range never reaches them, so a large
// backlog of a dead endpoint costs the pollers nothing.
const parkedUntil int64 = 253402300799000 // 9999-12-31

// parkDeliveries parks (or, when a webhook is re-enabled, wakes) its
// pending rows that no node holds.
func (s *DB) parkDeliveries(ctx context.Context, tx *sql.Tx, webhookID string, park bool) error {
	var err error
	if park {
		_, err = tx.ExecContext(ctx, `UPDATE whatsapp_webhook_events SET next_attempt_at = $1
			WHERE webhook_id = $2 AND status = 'pending' AND lease_owner = ''`, parkedUntil, webhookID)
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE whatsapp_webhook_events SET next_attempt_at = $1
			WHERE webhook_id = $2 AND status = 'pending' AND next_attempt_at >= $3`, ms(s.now()), webhookID, parkedUntil)
	}
	if err != nil {
		return fmt.Errorf("park deliveries: %w", err)
	}
	return nil
}

// RenewLeases extends to until the leases of owner on the rows ids, which
// the node still holds in memory, so they are not claimed twice while they
// wait.
func (s *DB) RenewLeases(ctx context.Context, owner string, until time.Time, ids []string) (int64, error) {
	var total int64
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		q := s.bulk(len(part) + 2)
		q.WriteString(`UPDATE whatsapp_webhook_events SET next_attempt_at = `)
		q.arg(ms(until))
		q.WriteString(` WHERE status = 'pending' AND lease_owner = `)
		q.arg(owner)
		q.WriteString(` AND id IN `)
		anys := make([]any, len(part))
		for i, id := range part {
			anys[i] = id
		}
		q.row(true, anys...)
		res, err := s.exec(ctx, q.String(), q.args...)
		if err != nil {
			return total, err
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}
