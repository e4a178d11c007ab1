-- wwe_lease_owner served only ReleaseOwner (once, at start-up) and
-- RenewLeases (which finds its rows by primary key), yet every claim and
-- every result wrote a new entry to it. PostgreSQL's 0007 also drops the
-- foreign keys of events and outbox rows; SQLite keeps them (dropping one
-- means rebuilding the table, and its checks are cheap), and the store
-- deletes dependent rows explicitly on both.
DROP INDEX IF EXISTS wwe_lease_owner;
