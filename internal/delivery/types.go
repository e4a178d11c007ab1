// Package delivery is wagate's webhook delivery engine: a transactional
// outbox in wagate's own database. Each (event, webhook) row in
// whatsapp_webhook_events is the job; it is written in the same transaction
// as the event, handed to the workers in memory right after commit, claimed
// with leases by pollers for retries and recovery, and its results are
// written back in batches.
package delivery

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wagate/wagate/internal/events"
)

// Event statuses, stored in whatsapp_webhook_events.status.
const (
	StatusPending   = "pending"   // waiting for its next attempt (or in flight)
	StatusDelivered = "delivered" // a 2xx was received
	StatusFailed    = "failed"    // retries spent, or the webhook answered 410; retriable by API
)

// Job is one delivery of one event to one webhook.
type Job struct {
	ID         string // whatsapp_webhook_events.id
	EventID    string // the event's id: payload event_id and webhook-id header
	WebhookID  string
	ClientID   int64
	EventType  string
	Attempts   int // attempts made before this one
	BudgetBase int // attempts made before the current retry budget started
	Payload    []byte
	CreatedAt  time.Time
	// Leased tells whether the row was leased to this node when stored or
	// claimed; an unleased row waits for the pollers.
	Leased bool
	// Deferred tells an unleased row whose webhook was stalled: it is due
	// only after Lease.Defer.
	Deferred bool
}

// Outcome of an attempt.
type Outcome int

const (
	OutcomeDelivered Outcome = iota + 1
	OutcomeRetry             // failed; try again at NextAttemptAt
	OutcomeFailed            // failed; no retries left (or 410)
	OutcomeRelease           // not attempted: give the row back to the pollers
)

// Result is what a worker learnt from one attempt, written back in batches.
type Result struct {
	Job           Job
	Outcome       Outcome
	StartedAt     time.Time
	Duration      time.Duration
	StatusCode    int
	ResponseBody  string // first 4 KiB
	Error         string
	NextAttemptAt time.Time // for OutcomeRetry
	// DisableReason, when set, disables the webhook (410 Gone).
	DisableReason string
}

// Target selects where Ingest fans an event out.
type Target struct {
	ClientID    int64
	SessionID   string // "" for events not tied to a session (webhook.test)
	PhoneNumber string
	// WebhookID, when set, sends the events to that webhook only (test events).
	WebhookID string
}

// Lease marks rows handed to this node's workers at insert or claim.
type Lease struct {
	Owner string
	Until time.Time
	// Room, when set, says how many more jobs of a webhook this node will
	// hold; Ingest leases no more than that and leaves the rest to pollers.
	// A negative Room means the webhook itself is saturated on this node.
	Room func(webhookID string) int
	// Defer is how long the rows of a stalled webhook (negative Room)
	// wait before pollers look at them: due at once, they would only be
	// stepped over by every claim while that webhook has no room.
	Defer time.Duration
	// DeferFor, when set, gives each stalled webhook its own deferral
	// instead of Defer (longer the longer it has been stalled).
	DeferFor func(webhookID string) time.Duration
}

// Placer returns the rule that places a store's new rows one job at a
// time: leased while Room has space for the job's webhook (asked once per
// webhook), deferred when its webhook is stalled (negative Room), else left
// due for the pollers. Without an Owner nothing is leased.
func (l Lease) Placer() func(webhookID string) (leased, deferred bool) {
	room := map[string]int{}
	return func(webhookID string) (bool, bool) {
		if l.Owner == "" {
			return false, false
		}
		if l.Room == nil {
			return true, false
		}
		n, ok := room[webhookID]
		if !ok {
			n = l.Room(webhookID)
		}
		if n < 0 {
			return false, true
		}
		room[webhookID] = max(n-1, 0)
		return n > 0, false
	}
}

// Deferral is how long a stalled webhook's rows are pushed ahead.
func (l Lease) Deferral(webhookID string) time.Duration {
	if l.DeferFor != nil {
		return l.DeferFor(webhookID)
	}
	return l.Defer
}

// Disabled is a webhook the engine switched off.
type Disabled struct {
	WebhookID           string
	ClientID            int64
	URL                 string
	Reason              string
	ConsecutiveFailures int
	FailingSince        time.Time
	AlertURL            string // the client's own alert URL, if set
}

// EventItem is one row of the events API.
type EventItem struct {
	ID             string          `json:"id"`
	EventID        string          `json:"event_id"`
	WebhookID      string          `json:"webhook_id"`
	EventType      string          `json:"event_type"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	LastStatusCode int             `json:"last_status_code"`
	LastError      string          `json:"last_error"`
	NextAttemptAt  *time.Time      `json:"next_attempt_at"`
	DeliveredAt    *time.Time      `json:"delivered_at"`
	CreatedAt      time.Time       `json:"created_at"`
	Payload        json.RawMessage `json:"payload"`
	AttemptLog     []Attempt       `json:"attempt_log,omitempty"`
}

// Attempt is one stored delivery attempt.
type Attempt struct {
	Attempt      int       `json:"attempt"`
	StartedAt    time.Time `json:"started_at"`
	DurationMS   int64     `json:"duration_ms"`
	StatusCode   int       `json:"status_code"`
	ResponseBody string    `json:"response_body"`
	Error        string    `json:"error"`
}

// ListQuery filters the events API.
type ListQuery struct {
	ClientID  int64
	WebhookID string
	Status    string // "" = all
	Limit     int
	Cursor    string // id of the last item of the previous page; "" = first page
}

// Stats is the outbox depth for metrics.
type Stats struct {
	Pending      int64
	Due          int64
	Failed       int64
	OldestDueAge time.Duration
}

// NewEvent is an event ready to store: its id, dedupe key and payload.
type NewEvent struct {
	ID        string
	Type      string
	DedupeKey string // "" = never deduplicated
	Payload   []byte
	CreatedAt time.Time
	// Media is stored with the event (media_refs, same transaction) when the
	// event is new; it is never part of Payload.
	Media *events.MediaRef
}

// NewID returns a time-ordered UUID (v7) for now.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// IDGen makes time-ordered UUIDs (v7, RFC 9562) from a given clock, so ids
// sort by the creation time that the store records, stubbed clocks
// included, and strictly increase within one generator.
type IDGen struct {
	mu     sync.Mutex
	lastMS int64
	seq    uint16 // 12-bit counter within one millisecond
}

// New returns the id of something created at t.
func (g *IDGen) New(t time.Time) string {
	var b [16]byte
	rand.Read(b[:])
	g.mu.Lock()
	m := max(t.UnixMilli(), g.lastMS)
	if m == g.lastMS {
		g.seq++
		if g.seq > 0xfff { // the counter ran out: borrow the next millisecond
			m++
			g.seq = 0
		}
	} else {
		g.seq = uint16(b[6]&0x07)<<8 | uint16(b[7]) // random start, room to count
	}
	g.lastMS = m
	seq := g.seq
	g.mu.Unlock()
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(m>>40), byte(m>>32), byte(m>>24), byte(m>>16), byte(m>>8), byte(m)
	b[6] = 0x70 | byte(seq>>8)
	b[7] = byte(seq)
	b[8] = b[8]&0x3f | 0x80
	return uuid.UUID(b).String()
}

// IDBefore returns a string that sorts before the NewID of every moment
// from t on and after those of earlier moments: UUIDv7 strings start with
// the creation time in milliseconds, in fixed-width lower-case hex.
func IDBefore(t time.Time) string {
	m := uint64(t.UnixMilli())
	return fmt.Sprintf("%08x-%04x", m>>16, m&0xffff)
}
