package events_test

import (
	"testing"
	"time"

	"github.com/wagate/wagate/internal/events"
)

// BenchmarkBuildPayload renders the webhook body of a text message, once
// per inbound event on the hot path.
func BenchmarkBuildPayload(b *testing.B) {
	in := events.Inbound{
		Type: events.TypeMessage, MessageID: "3EB0C431C26A1916E07E", From: "5511988887777", To: "5511999999999",
		Timestamp: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Kind: "text",
		Content:  "wagate-load message, the quick brown fox",
		Metadata: map[string]any{"chat": "5511988887777@s.whatsapp.net", "is_group": false, "push_name": "Ana", "sandbox": true},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.BuildPayload("0192f1c4-7a2b-7c3d-8e4f-5a6b7c8d9e0f", 42, "11111111-1111-1111-1111-111111111111", "5511999999999", in); err != nil {
			b.Fatal(err)
		}
	}
}
