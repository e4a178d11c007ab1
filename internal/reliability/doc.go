// Package reliability holds wagate's reliability suite, all of it in tests:
//
//   - TestCrashDuringBurst: SIGKILL during a burst of inbound events, then a
//     restart; every event is delivered, and duplicates are bounded by the
//     deliveries that were sent but not yet recorded at the kill.
//   - TestReceiverOutage: a receiver down for a while; everything arrives by
//     the retry schedule and nothing fails before its retries are spent.
//   - TestPostgresRestart: PostgreSQL crashes and restarts under a burst;
//     wagate recovers without a restart and loses nothing it acknowledged.
//   - TestHungReceiverIsolated: a receiver that never answers holds at most
//     WAGATE_WEBHOOK_MAX_IN_FLIGHT deliveries and does not slow the others.
//   - TestTenantIsolation: every client route with a path parameter answers
//     404 to another client and changes nothing.
//   - FuzzDecode and FuzzSandboxInject: arbitrary request bodies never get a
//     5xx or a malformed error envelope.
//
// `make test` runs it in a shortened form (WAGATE_RELIABILITY_EVENTS
// defaults to 3000, fuzz targets run over their seed corpus under
// testdata/fuzz); `make reliability` runs it with 20000 events and fuzzes
// each target for 30 s. WAGATE_RELIABILITY_PG_OUTAGE (default 2s) sets
// how long PostgreSQL stays down. The PostgreSQL tests need the server
// that scripts/test.sh starts, or its binaries (testdb.StartCluster).
package reliability
