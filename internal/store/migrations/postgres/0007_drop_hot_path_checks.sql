-- Cheaper writes per inbound event: PostgreSQL's CPU is what caps
-- throughput (about 130 µs per event, docs/benchmarks.md).
--
-- wwe_lease_owner served only ReleaseOwner (once, at start-up) and
-- RenewLeases (which finds its rows by primary key), yet every claim and
-- every result wrote a new entry to it.
DROP INDEX IF EXISTS wwe_lease_owner;

-- Five foreign-key checks ran per event, a FOR KEY SHARE lookup each
-- (about 23 µs in all). The four below, of events to their client and
-- session and of outbox rows to their event and webhook, are kept by the
-- store instead: Ingest locks the client and the session once per
-- transaction and writes outbox rows only for webhooks that still exist
-- (locking those), and DeleteClient, DeleteSession and DeleteWebhook
-- delete the events and outbox rows that the cascades deleted. The attempts' key to
-- their outbox row stays: deleting outbox rows still cascades to their
-- attempts, and Complete relies on its violation when rows were deleted
-- while in flight.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_client_id_fkey;
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_session_id_fkey;
ALTER TABLE whatsapp_webhook_events DROP CONSTRAINT IF EXISTS whatsapp_webhook_events_event_id_fkey;
ALTER TABLE whatsapp_webhook_events DROP CONSTRAINT IF EXISTS whatsapp_webhook_events_webhook_id_fkey;
