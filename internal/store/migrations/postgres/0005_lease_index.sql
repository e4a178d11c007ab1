-- Renewing and releasing one node's leases reads its pending rows only.
CREATE INDEX wwe_lease_owner ON whatsapp_webhook_events(lease_owner) WHERE status = 'pending';
