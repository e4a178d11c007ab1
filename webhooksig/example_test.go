package webhooksig_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/wagate/wagate/webhooksig"
)

// A receiver verifies each delivery before trusting it. The secret is the
// one wagate returned when the webhook was registered.
func Example() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	v, err := webhooksig.NewVerifier(secret) // pass old and new secret during a rotation
	if err != nil {
		panic(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := v.VerifyRequest(r)
		if err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		// Authentic. Deliveries are at-least-once: dedupe on webhook-id.
		fmt.Fprintf(w, "accepted %s (%d bytes)", r.Header.Get("webhook-id"), len(body))
	})

	// What wagate sends (simulated here without any network).
	key, _ := webhooksig.ParseSecret(secret)
	body := `{"event":"message","event_id":"evt_1","content":"oi"}`
	id, ts, sig := webhooksig.Headers([][]byte{key}, "evt_1", time.Now(), []byte(body))

	for _, signature := range []string{sig, "v1,Zm9yZ2Vk"} {
		req := httptest.NewRequest(http.MethodPost, "/whatsapp-hook", strings.NewReader(body))
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", ts)
		req.Header.Set("webhook-signature", signature)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	// Output:
	// 200 accepted evt_1 (53 bytes)
	// 401 invalid signature
}

func ExampleSign() {
	key, _ := webhooksig.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	fmt.Println(webhooksig.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`)))
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}
