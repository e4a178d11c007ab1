package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/wagate/wagate/internal/delivery"
	"github.com/wagate/wagate/internal/events"
)

// insertMediaRefs stores the media references of the events of part that
// Ingest has just inserted, in its transaction: a committed message event
// always has its reference, and a redelivery (not inserted) adds none. Most
// batches carry no media, and then this is one pass of nil checks.
//
// engine_ref is stored as given: the session manager seals it before it
// publishes (it holds the box; the store never sees the key).
func (s *DB) insertMediaRefs(ctx context.Context, tx *sql.Tx, sessionID string, part []delivery.NewEvent, inserted map[string]bool) error {
	var q *bulk
	n := 0
	for i := range part {
		m := part[i].Media
		if m == nil || sessionID == "" || m.MessageID == "" || len(m.Ref) == 0 || !inserted[part[i].ID] {
			continue
		}
		if q == nil {
			q = s.bulk(7 * 8)
			q.WriteString(`INSERT INTO media_refs (session_id, message_id, engine_ref, mime_type, file_name, file_size, created_at) VALUES `)
		}
		q.row(n == 0, sessionID, m.MessageID, m.Ref, m.MimeType, m.FileName, max(m.Size, 0), ms(part[i].CreatedAt))
		n++
	}
	if n == 0 {
		return nil
	}
	// The first reference of a message id wins: another event of the same
	// message (an edit, a second kind injected in the sandbox) does not
	// replace the file.
	q.WriteString(` ON CONFLICT DO NOTHING`)
	if _, err := tx.ExecContext(ctx, q.String(), q.args...); err != nil {
		return fmt.Errorf("insert media refs: %w", err)
	}
	return nil
}

// MediaRef returns the stored reference of the file of a session's message,
// with Ref as stored (sealed).
func (s *DB) MediaRef(ctx context.Context, sessionID, messageID string) (events.MediaRef, error) {
	m := events.MediaRef{MessageID: messageID}
	err := s.db.QueryRowContext(ctx, `SELECT engine_ref, mime_type, file_name, file_size FROM media_refs
		WHERE session_id = $1 AND message_id = $2`, sessionID, messageID).Scan(&m.Ref, &m.MimeType, &m.FileName, &m.Size)
	return m, notFound(err, "media")
}

// pruneMediaRefs deletes references created before cutoff (unix ms), at
// most limit per call. They go by age, with the events (Prune): WhatsApp
// keeps files on its servers for a limited time anyway, so an older
// reference is of little use, and its key should not outlive the retention.
func (s *DB) pruneMediaRefs(ctx context.Context, cutoff int64, limit int) error {
	if _, err := s.exec(ctx, `DELETE FROM media_refs WHERE created_at < $1 AND (session_id, message_id) IN (
		SELECT session_id, message_id FROM media_refs WHERE created_at < $1 LIMIT $2)`, cutoff, limit); err != nil {
		return fmt.Errorf("prune media refs: %w", err)
	}
	return nil
}
