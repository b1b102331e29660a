package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// newClient returns a client holding at most c keep-alive connections to
// the gateway, all reused.
func newClient(c int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        c,
			MaxIdleConnsPerHost: c,
			MaxConnsPerHost:     c,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// pass delivers notifications 0..n-1 to url over c workers, body(i) giving
// each body, at rate per second (0: as fast as the workers go), and returns
// each one's result and the pass's duration. body runs in the worker before
// the clock starts, so lazy signing does not count as latency. A cancelled
// ctx stops the pass: the rest stay unsent.
func pass(ctx context.Context, client *http.Client, url string, n, c int, rate float64,
	body func(i int) ([]byte, error)) ([]result, time.Duration, error) {
	results := make([]result, n)
	jobs := make(chan int)
	start := time.Now()
	go func() {
		defer close(jobs)
		for i := range n {
			if rate > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		bodyErr error
	)
	for range c {
		wg.Go(func() {
			for i := range jobs {
				b, err := body(i)
				if err != nil {
					errOnce.Do(func() { bodyErr = fmt.Errorf("notification %d: %w", i, err) })
					continue
				}
				t0 := time.Now()
				outcome := post(ctx, client, url, b)
				t1 := time.Now()
				results[i] = result{outcome: outcome, latency: t1.Sub(t0), done: t1.Sub(start)}
			}
		})
	}
	wg.Wait()
	return results, time.Since(start), bodyErr
}

// post delivers one body and names the outcome: outcomeSuccess for Alipay's
// acknowledgement (200 "success"), the status otherwise ("503", or
// "200 <body>" for a 200 that is not success), outcomeConnErr when no answer
// came.
func post(ctx context.Context, client *http.Client, url string, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return outcomeConnErr
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	resp, err := client.Do(req)
	if err != nil {
		return outcomeConnErr
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return outcomeConnErr
	}
	switch {
	case resp.StatusCode == http.StatusOK && string(answer) == "success":
		return outcomeSuccess
	case resp.StatusCode == http.StatusOK:
		return "200 " + strconv.Quote(string(answer))
	}
	return strconv.Itoa(resp.StatusCode)
}
