package testkit

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// LogBuffer collects what is written to it (a logger's lines, a process's
// output) for a test to read while it is still written to; it is safe for
// concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger returns a logger that writes to t's log, and to also.
func Logger(t testing.TB, also ...io.Writer) zerolog.Logger {
	return zerolog.New(io.MultiWriter(append([]io.Writer{zerolog.NewTestWriter(t)}, also...)...)).With().Timestamp().Logger()
}

// Poll calls cond every 10 ms until it returns true, for up to timeout,
// and reports whether it did.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Eventually fails t unless cond returns true within timeout (see Poll).
func Eventually(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("testkit: the condition did not hold within %s", timeout)
	}
}

// Concurrently calls fn(0) to fn(n-1), each in a goroutine of its own, and
// returns once every call has returned.
func Concurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { fn(i) })
	}
	wg.Wait()
}

// LegacySeal seals plaintext for owner under key as the token sealer did
// before sealed values named their key: nonce || ciphertext, with owner
// alone as the additional data. The nonce is random after noncePrefix.
func LegacySeal(t testing.TB, key []byte, plaintext, owner string, noncePrefix ...byte) []byte {
	t.Helper()
	aead, err := gcm(key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	copy(nonce, noncePrefix)
	return aead.Seal(nonce, nonce, []byte(plaintext), []byte(owner))
}

// gcm is AES-GCM under key.
func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
