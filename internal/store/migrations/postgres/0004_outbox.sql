-- A manual retry or recover gives an event a fresh retry budget while its
-- attempt count keeps the history: retries spent = attempts - budget_base - 1.
ALTER TABLE whatsapp_webhook_events ADD COLUMN budget_base BIGINT NOT NULL DEFAULT 0;
