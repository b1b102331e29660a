// Command whgo is the Go receiver of docs/webhook-signing.md: an HTTP
// server that verifies the gateway's events with the official Standard
// Webhooks Go library, answers 204, or 400 when one does not verify, and
// prints each one's webhook-id and type. internal/stdwebhook's tests build
// and run it against the gateway's signing.
//
//	WEBHOOK_SECRET=whsec_... go run . -addr 127.0.0.1:3000
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen address")
	flag.Parse()
	secret := os.Getenv("WEBHOOK_SECRET") // the endpoint's whsec_...
	if secret == "" {
		// The library takes an empty secret (an empty HMAC key) without a word.
		log.Fatal("WEBHOOK_SECRET is not set")
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on http://%s/\n", ln.Addr())
	log.Fatal(http.Serve(ln, handler(wh)))
}

// handler verifies each event and answers 204, or 400 when it does not
// verify (the gateway then retries it).
func handler(wh *standardwebhooks.Webhook) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Verify the bytes as received: decoding and re-encoding the JSON
		// first would change them.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		// Checks webhook-id, webhook-timestamp (5 minutes either way) and
		// every v1 entry of webhook-signature.
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var event struct {
			ID   string          `json:"id"`
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &event); err != nil {
			http.Error(w, "not a JSON event", http.StatusBadRequest)
			return
		}
		// webhook-id (the body's id) stays the same across retries: use it
		// to do each event's work once.
		fmt.Printf("%s %s\n", r.Header.Get("webhook-id"), event.Type)
		w.WriteHeader(http.StatusNoContent)
	})
}
