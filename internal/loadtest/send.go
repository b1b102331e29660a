package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Client posts bodies to one gateway URL over its own keep-alive HTTP/1.1
// connections, one per worker, reused across passes.
//
// It speaks just enough HTTP/1.1 for the gateway's answers (a status line,
// headers, a body of Content-Length or chunked) and writes each request in
// one write: net/http's client cost about a third of a core at 9000
// requests/s, CPU taken from the gateway and Postgres on the same machine.
type Client struct {
	addr    string // host:port
	head    string // request line and headers, up to Content-Length's value
	timeout time.Duration
	conns   []*conn
}

// conn is one keep-alive connection, dialled on first use and again after
// an error.
type conn struct {
	c   net.Conn
	r   *bufio.Reader
	req []byte
}

// NewClient returns a client for rawURL (http only) with up to c
// connections, each request bounded by timeout.
func NewClient(rawURL string, c int, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want http://host:port/path", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	head := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: "
	cl := &Client{addr: addr, head: head, timeout: timeout, conns: make([]*conn, c)}
	for i := range cl.conns {
		cl.conns[i] = &conn{}
	}
	return cl, nil
}

// Close closes every connection.
func (cl *Client) Close() {
	for _, w := range cl.conns {
		w.drop()
	}
}

// Pass delivers notifications 0..n-1 over the client's connections, body(i)
// giving each body, at rate per second (0: as fast as the connections go),
// and returns each one's result and the pass's duration. body runs before
// the clock starts, so lazy signing does not count as latency. A cancelled
// ctx stops the pass: the rest stay unsent.
func (cl *Client) Pass(ctx context.Context, n int, rate float64,
	body func(i int) ([]byte, error)) ([]Result, time.Duration, error) {
	results := make([]Result, n)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		bodyErr error
	)
	start := time.Now()
	for _, w := range cl.conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
				}
				b, err := body(i)
				if err != nil {
					errOnce.Do(func() { bodyErr = fmt.Errorf("notification %d: %w", i, err) })
					continue
				}
				t0 := time.Now()
				outcome := cl.post(ctx, w, b)
				t1 := time.Now()
				results[i] = Result{Outcome: outcome, Latency: t1.Sub(t0), Done: t1.Sub(start)}
			}
		})
	}
	wg.Wait()
	return results, time.Since(start), bodyErr
}

// post delivers one body over w and names the outcome: OutcomeSuccess for
// Alipay's acknowledgement (200 "success"), the status otherwise ("503", or
// "200 <body>" for a 200 that is not success), OutcomeConnErr when no answer
// came. A connection that failed, or that the gateway closes, is dropped and
// dialled again for the next delivery.
func (cl *Client) post(ctx context.Context, w *conn, body []byte) string {
	status, answer, keep, err := cl.roundTrip(ctx, w, body)
	if !keep || err != nil {
		w.drop()
	}
	switch {
	case err != nil:
		return OutcomeConnErr
	case status == 200 && string(answer) == "success":
		return OutcomeSuccess
	case status == 200:
		return "200 " + strconv.Quote(string(answer))
	}
	return strconv.Itoa(status)
}

func (w *conn) drop() {
	if w.c != nil {
		w.c.Close()
		w.c, w.r = nil, nil
	}
}

// roundTrip writes one request and reads its answer: the status, up to 64
// bytes of the body, and whether the connection may be reused.
func (cl *Client) roundTrip(ctx context.Context, w *conn, body []byte) (status int, answer []byte, keep bool, err error) {
	deadline := time.Now().Add(cl.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if w.c == nil {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Deadline: deadline}
		c, err := d.DialContext(ctx, "tcp", cl.addr)
		if err != nil {
			return 0, nil, false, err
		}
		w.c, w.r = c, bufio.NewReaderSize(c, 4096)
	}
	if err := w.c.SetDeadline(deadline); err != nil {
		return 0, nil, false, err
	}
	stop := context.AfterFunc(ctx, func() { w.c.SetDeadline(time.Now()) })
	defer stop()

	w.req = append(w.req[:0], cl.head...)
	w.req = strconv.AppendInt(w.req, int64(len(body)), 10)
	w.req = append(w.req, "\r\n\r\n"...)
	w.req = append(w.req, body...)
	if _, err := w.c.Write(w.req); err != nil {
		return 0, nil, false, err
	}
	return readResponse(w.r)
}

var errMalformed = errors.New("malformed HTTP answer")

// readResponse reads one HTTP/1.1 answer from r: its status, up to 64
// bytes of its body (the rest is read and discarded), and whether the
// connection stays open.
func readResponse(r *bufio.Reader) (status int, answer []byte, keep bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, nil, false, errMalformed
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, errMalformed
	}
	keep = line[7] == '1'
	length, chunked := -1, false
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, nil, false, errMalformed
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	if status/100 == 1 || status == 204 || status == 304 {
		length, chunked = 0, false
	}
	var buf bytes.Buffer
	switch {
	case chunked:
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return 0, nil, false, err
			}
			size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 32)
			if err != nil || size < 0 {
				return 0, nil, false, errMalformed
			}
			if size == 0 { // trailers, then an empty line
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return 0, nil, false, err
					}
					if len(bytes.TrimRight(line, "\r\n")) == 0 {
						break
					}
				}
				break
			}
			if _, err := io.CopyN(&buf, r, size+2); err != nil { // the chunk and its CRLF
				return 0, nil, false, err
			}
			buf.Truncate(buf.Len() - 2)
		}
	case length >= 0:
		if _, err := io.CopyN(&buf, r, int64(length)); err != nil {
			return 0, nil, false, err
		}
	default: // the body runs to the connection's end
		if _, err := io.Copy(&buf, r); err != nil {
			return 0, nil, false, err
		}
		keep = false
	}
	answer = buf.Bytes()
	if len(answer) > 64 {
		answer = answer[:64]
	}
	return status, answer, keep, nil
}
