package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/sessions"
	"github.com/wagate/wagate/internal/store"
	"github.com/wagate/wagate/internal/testdb"
)

func newClientID(t *testing.T, db *store.DB, name string) int64 {
	t.Helper()
	c, err := db.CreateClient(context.Background(), name, "hash-"+name, "wg_"+name)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func TestSessions(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := newClientID(t, db, "a"), newClientID(t, db, "b")

		s, err := db.CreateSession(ctx, sessions.Session{ClientID: a, UserID: "user-uuid-123", PhoneNumber: "5511999999999",
			Status: sessions.StatusReconnecting, Engine: "sandbox"})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.ID) != 36 || s.Status != sessions.StatusReconnecting || s.CreatedAt.IsZero() || s.JID != "" {
			t.Fatalf("created %+v", s)
		}
		// One session per user of a client; another client may use the same user id.
		if _, err := db.CreateSession(ctx, sessions.Session{ClientID: a, UserID: "user-uuid-123", PhoneNumber: "1", Engine: "sandbox",
			Status: sessions.StatusReconnecting}); !errs.Is(err, errs.Conflict) {
			t.Fatalf("duplicate user: %v", err)
		}
		other, err := db.CreateSession(ctx, sessions.Session{ClientID: b, UserID: "user-uuid-123", PhoneNumber: "5511888888888",
			Status: sessions.StatusReconnecting, Engine: "whatsmeow"})
		if err != nil {
			t.Fatal(err)
		}

		got, err := db.SessionByUser(ctx, a, "user-uuid-123")
		if err != nil || got.ID != s.ID {
			t.Fatalf("by user: %+v %v", got, err)
		}
		if _, err := db.SessionByUser(ctx, a, "nobody"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown user: %v", err)
		}
		if _, err := db.GetSession(ctx, "nope"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown id: %v", err)
		}

		got, err = db.SetSessionState(ctx, s.ID, sessions.StatusConnected, "", "5511999999999@s.whatsapp.net")
		if err != nil || got.Status != sessions.StatusConnected || got.JID != "5511999999999@s.whatsapp.net" {
			t.Fatalf("set state: %+v %v", got, err)
		}
		got.PhoneNumber, got.Engine, got.Status, got.Reason = "5511777777777", "whatsmeow", sessions.StatusDisconnected, "why"
		got, err = db.UpdateSession(ctx, got)
		if err != nil || got.PhoneNumber != "5511777777777" || got.Engine != "whatsmeow" || got.Reason != "why" {
			t.Fatalf("update: %+v %v", got, err)
		}
		if _, err := db.SetSessionState(ctx, "nope", sessions.StatusConnected, "", ""); !errs.Is(err, errs.NotFound) {
			t.Fatalf("state of unknown: %v", err)
		}

		// Resumable: linked and not logged out.
		res, err := db.ResumableSessions(ctx)
		if err != nil || len(res) != 1 || res[0].ID != s.ID {
			t.Fatalf("resumable: %+v %v", res, err)
		}
		if _, err := db.SetSessionState(ctx, s.ID, sessions.StatusLoggedOut, "logout", "5511999999999@s.whatsapp.net"); err != nil {
			t.Fatal(err)
		}
		if res, _ := db.ResumableSessions(ctx); len(res) != 0 {
			t.Fatalf("logged out is resumable: %+v", res)
		}
		if list, err := db.ClientSessions(ctx, b); err != nil || len(list) != 1 || list[0].ID != other.ID {
			t.Fatalf("client sessions: %+v %v", list, err)
		}

		if err := db.DeleteSession(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteSession(ctx, s.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("delete twice: %v", err)
		}
	})
}

func TestListSessionsPages(t *testing.T) {
	t.Parallel()
	eachDBClock(t, func(t *testing.T, db *store.DB, clock *testClock) {
		// Half-millisecond ticks give rows the same creation time, so the
		// id tie-break of the cursor is exercised.
		clock.step = time.Millisecond / 2
		ctx := context.Background()
		a, b := newClientID(t, db, "a"), newClientID(t, db, "b")
		want := map[string]bool{}
		for i := range 7 {
			s, err := db.CreateSession(ctx, sessions.Session{ClientID: a, UserID: string(rune('a' + i)), PhoneNumber: "5511999999999",
				Status: sessions.StatusReconnecting, Engine: "sandbox"})
			if err != nil {
				t.Fatal(err)
			}
			want[s.ID] = true
		}
		if _, err := db.CreateSession(ctx, sessions.Session{ClientID: b, UserID: "x", PhoneNumber: "5511999999999",
			Status: sessions.StatusReconnecting, Engine: "sandbox"}); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		cursor, pages := "", 0
		var last sessions.Session
		for {
			page, next, err := db.ListSessions(ctx, a, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, s := range page {
				if seen[s.ID] || !want[s.ID] {
					t.Fatalf("page %d: unexpected or repeated %s", pages, s.ID)
				}
				if last.ID != "" && s.CreatedAt.After(last.CreatedAt) {
					t.Fatal("not newest first")
				}
				seen[s.ID], last = true, s
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if len(seen) != 7 || pages != 3 {
			t.Fatalf("saw %d sessions in %d pages", len(seen), pages)
		}
		if _, _, err := db.ListSessions(ctx, a, "not-a-cursor!", 3); !errs.Is(err, errs.Invalid) {
			t.Fatalf("bad cursor: %v", err)
		}
	})
}

// testClock is a stubbed store clock that moves by step at every reading.
type testClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// eachDBClock is eachDB with a stubbed clock.
func eachDBClock(t *testing.T, fn func(t *testing.T, db *store.DB, clock *testClock)) {
	t.Helper()
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			clock := &testClock{now: time.UnixMilli(1_700_000_000_000)}
			fn(t, testdb.Open(t, d, store.Options{Now: clock.Now}), clock)
		})
	}
}

func TestOutboundIdempotency(t *testing.T) {
	t.Parallel()
	eachDBClock(t, func(t *testing.T, db *store.DB, clock *testClock) {
		ctx := context.Background()
		a := newClientID(t, db, "a")
		s, err := db.CreateSession(ctx, sessions.Session{ClientID: a, UserID: "u", PhoneNumber: "5511999999999",
			Status: sessions.StatusConnected, Engine: "sandbox"})
		if err != nil {
			t.Fatal(err)
		}
		long := clock.Now().Add(-time.Hour) // nothing is stale

		c, err := db.ClaimOutbound(ctx, s.ID, "k1", "h1", long)
		if err != nil || !c.Claimed {
			t.Fatalf("first claim: %+v %v", c, err)
		}
		// In progress: not claimed again, same or other hash.
		if c, err := db.ClaimOutbound(ctx, s.ID, "k1", "h1", long); err != nil || c.Claimed || c.MessageID != "" || c.RequestHash != "h1" {
			t.Fatalf("claim in progress: %+v %v", c, err)
		}
		if c, _ := db.ClaimOutbound(ctx, s.ID, "k1", "h2", long); c.Claimed || c.RequestHash != "h1" {
			t.Fatalf("other body: %+v", c)
		}
		sent := time.UnixMilli(1_700_000_000_123).UTC()
		if err := db.CompleteOutbound(ctx, s.ID, "k1", "3EB0AA", sent); err != nil {
			t.Fatal(err)
		}
		if c, _ := db.ClaimOutbound(ctx, s.ID, "k1", "h1", long); c.Claimed || c.MessageID != "3EB0AA" || !c.SentAt.Equal(sent) {
			t.Fatalf("after completion: %+v", c)
		}
		// A completed key is never released or taken over.
		if err := db.ReleaseOutbound(ctx, s.ID, "k1"); err != nil {
			t.Fatal(err)
		}
		if c, _ := db.ClaimOutbound(ctx, s.ID, "k1", "h1", clock.Now().Add(time.Hour)); c.Claimed || c.MessageID != "3EB0AA" {
			t.Fatalf("completed key taken over: %+v", c)
		}

		// A released key can be claimed again.
		if c, _ := db.ClaimOutbound(ctx, s.ID, "k2", "h", long); !c.Claimed {
			t.Fatal("k2 not claimed")
		}
		if err := db.ReleaseOutbound(ctx, s.ID, "k2"); err != nil {
			t.Fatal(err)
		}
		if c, _ := db.ClaimOutbound(ctx, s.ID, "k2", "h", long); !c.Claimed {
			t.Fatal("released key not claimable")
		}
		// A stale claim (crash mid-send) is taken over by exactly one caller:
		// the taker's claim is fresh again for the others.
		clock.Add(10 * time.Minute)
		staleBefore := clock.Now().Add(-5 * time.Minute)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := db.ClaimOutbound(ctx, s.ID, "k2", "h", staleBefore)
				if err != nil {
					t.Error(err)
					return
				}
				if c.Claimed {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d callers took over a stale claim", wins)
		}
		// Concurrent first claims: exactly one wins.
		wins = 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := db.ClaimOutbound(ctx, s.ID, "k3", "h", long)
				if err != nil {
					t.Error(err)
					return
				}
				if c.Claimed {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d concurrent claims won", wins)
		}
		// Keys are per session, and go with it.
		if _, err := db.ClaimOutbound(ctx, "no-such-session", "k1", "h1", long); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown session: %v", err)
		}
		if n, err := db.PruneOutbound(ctx, clock.Now().Add(time.Minute)); err != nil || n != 3 {
			t.Fatalf("prune: %d %v", n, err)
		}
	})
}
