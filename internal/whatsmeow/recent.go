package whatsmeow

import (
	"sync"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
)

// recentMsg is what a reply or reaction needs to know about its target:
// who wrote it (for the message key) and its content (for the quote).
type recentMsg struct {
	chat   types.JID
	sender types.JID
	msg    *waE2E.Message
}

// recent is a bounded, per-connection memory of the last messages seen or
// sent. WhatsApp wants a target's author to address reactions and quotes,
// and its content to render quotes; the Outbound seam carries the id and,
// when the caller knows it, the author (TargetSender), never the content.
type recent struct {
	mu    sync.Mutex
	byID  map[string]recentMsg
	order []string // ring of ids, oldest at next
	next  int
}

func newRecent(size int) *recent {
	return &recent{byID: make(map[string]recentMsg, size), order: make([]string, size)}
}

func (r *recent) put(id string, m recentMsg) {
	if id == "" || m.msg == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byID[id]; ok {
		r.byID[id] = m
		return
	}
	if old := r.order[r.next]; old != "" {
		delete(r.byID, old)
	}
	r.order[r.next] = id
	r.next = (r.next + 1) % len(r.order)
	r.byID[id] = m
}

func (r *recent) get(id string) (recentMsg, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.byID[id]
	return m, ok
}
