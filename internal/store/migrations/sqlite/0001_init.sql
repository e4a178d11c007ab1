-- wagate schema, SQLite dialect. Times are unix milliseconds (UTC).
CREATE TABLE clients (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT    NOT NULL,
    alert_webhook_url TEXT    NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE client_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id    INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL UNIQUE, -- hex SHA-256 of the token; the token itself is never stored
    prefix       TEXT    NOT NULL,        -- first characters, to recognise a token in listings
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX client_tokens_client ON client_tokens(client_id);

CREATE TABLE whatsapp_connections (
    id             TEXT    PRIMARY KEY, -- uuid
    client_id      INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    user_id        TEXT    NOT NULL,
    phone_number   TEXT    NOT NULL,
    session_status TEXT    NOT NULL DEFAULT 'disconnected',
    status_reason  TEXT    NOT NULL DEFAULT '',
    engine         TEXT    NOT NULL,
    jid            TEXT    NOT NULL DEFAULT '',
    session_data   TEXT, -- JSON
    node_id        TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (client_id, user_id)
);
CREATE INDEX whatsapp_connections_client ON whatsapp_connections(client_id, created_at);

CREATE TABLE webhooks (
    id                   TEXT    PRIMARY KEY, -- uuid
    client_id            INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    phone_number         TEXT    NOT NULL DEFAULT '', -- '' = every session of the client
    url                  TEXT    NOT NULL,
    max_retries          INTEGER NOT NULL,
    events               TEXT    NOT NULL, -- JSON array of event types
    headers_enc          BLOB,             -- encrypted JSON object of custom headers
    description          TEXT    NOT NULL DEFAULT '',
    secret_enc           BLOB    NOT NULL, -- encrypted signing secret
    prev_secret_enc      BLOB,             -- previous secret during a rotation
    prev_secret_until    INTEGER,
    active               INTEGER NOT NULL DEFAULT 1,
    disabled_reason      TEXT    NOT NULL DEFAULT '',
    disabled_at          INTEGER,
    failing_since        INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX webhooks_client ON webhooks(client_id);

-- One row per inbound event; the unique key makes a redelivery a no-op.
CREATE TABLE events (
    id         TEXT    PRIMARY KEY, -- time-ordered uuid (v7), sent as event_id and webhook-id
    client_id  INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    session_id TEXT REFERENCES whatsapp_connections(id) ON DELETE CASCADE,
    event_type TEXT    NOT NULL,
    dedupe_key TEXT,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (session_id, dedupe_key)
);

-- The outbox: one row per (event, webhook). The row is the delivery job.
CREATE TABLE whatsapp_webhook_events (
    id               TEXT    PRIMARY KEY, -- time-ordered uuid (v7): ids sort by creation
    event_id         TEXT    NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    webhook_id       TEXT    NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    client_id        INTEGER NOT NULL,
    event_type       TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending', -- pending, delivered, failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Due time; while a node holds the row (lease_owner) it is the lease's end,
    -- so one index range finds every claimable row.
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT    NOT NULL DEFAULT '',
    last_status_code INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT    NOT NULL DEFAULT '',
    delivered_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX wwe_due ON whatsapp_webhook_events(next_attempt_at) WHERE status = 'pending';
CREATE INDEX wwe_webhook ON whatsapp_webhook_events(webhook_id, id);
CREATE INDEX wwe_event ON whatsapp_webhook_events(event_id);

CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_event_id TEXT    NOT NULL REFERENCES whatsapp_webhook_events(id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status_code      INTEGER NOT NULL DEFAULT 0,
    response_body    TEXT    NOT NULL DEFAULT '',
    error            TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX delivery_attempts_event ON delivery_attempts(webhook_event_id, attempt);

-- Idempotency of sends: a retried request with the same key returns the first result.
CREATE TABLE outbound_messages (
    session_id      TEXT    NOT NULL REFERENCES whatsapp_connections(id) ON DELETE CASCADE,
    idempotency_key TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    message_id      TEXT    NOT NULL DEFAULT '',
    sent_at         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (session_id, idempotency_key)
);
