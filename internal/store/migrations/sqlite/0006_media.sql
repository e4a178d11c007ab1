-- The file of an inbound media message can be fetched later
-- (GET /api/whatsapp/sessions/{id}/media/{message_id}). engine_ref is what the
-- session's engine needs to download it again; it holds the file's
-- decryption key, so it is stored sealed (WAGATE_SECRET_KEY). Rows are
-- written in the transaction that stores the message event and pruned with
-- the events (WAGATE_RETENTION).
CREATE TABLE media_refs (
    session_id TEXT    NOT NULL REFERENCES whatsapp_connections(id) ON DELETE CASCADE,
    message_id TEXT    NOT NULL,
    engine_ref BLOB    NOT NULL,
    mime_type  TEXT    NOT NULL DEFAULT '',
    file_name  TEXT    NOT NULL DEFAULT '',
    file_size  INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, message_id)
);
CREATE INDEX media_refs_created ON media_refs(created_at);
