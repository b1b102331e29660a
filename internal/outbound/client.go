package outbound

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	sw "github.com/smartwalle/alipay/v3"
	"github.com/smartwalle/nsign"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// publicKeySN names the one verifier of a public-key mode app: its answers
// carry no alipay_cert_sn, so the client falls back to it.
const publicKeySN = "alipay-public-key"

// maxAnswer caps the size of an answer read from Alipay.
const maxAnswer = 1 << 20

// client is one app's OpenAPI client.
type client struct {
	app *alipay.App
	api *sw.Client
}

// newClient returns a for app a on gateway. It returns an error when a is in
// certificate mode without its app cert SN or root cert SN, which every
// request must carry.
func newClient(a *alipay.App, gateway string, hc *http.Client) (*client, error) {
	if a.CertMode && a.AppCertSN == "" {
		return nil, errors.New("certificate mode needs the app's own cert (ALIPAY_APP_CERT_FILE) for app_cert_sn")
	}
	if a.CertMode && a.RootCertSN == "" {
		return nil, errors.New("certificate mode needs the Alipay root cert SN (ALIPAY_ROOT_CERT_FILE)")
	}
	if len(a.Keys) == 0 {
		return nil, errors.New("no Alipay public key or cert to verify answers with")
	}
	signer := nsign.New(nsign.WithMethod(nsign.NewRSAMethod(crypto.SHA256, a.PrivateKey, nil)), nsign.WithEncoder(sw.Encoder{}))
	// production=false: the production client downloads the cert of an
	// unknown alipay_cert_sn and trusts it unchecked; the sandbox client
	// refuses it. The gateway is ours either way.
	opts := []sw.OptionFunc{sw.WithHTTPClient(hc), sw.WithSandboxGateway(gateway), sw.WithTimeLocation(alipay.ChinaTime)}
	for _, k := range a.Keys {
		sn := k.SN
		if !a.CertMode || sn == "" {
			sn = publicKeySN
		}
		opts = append(opts, sw.WithVerifier(sn, verifier(k.Pub)))
	}
	api, err := sw.NewWithSigner(a.ID, signer, false, opts...)
	if err != nil {
		return nil, err
	}
	return &client{app: a, api: api}, nil
}

// verifier checks Alipay's SHA256withRSA signatures with pub.
func verifier(pub *rsa.PublicKey) sw.Verifier {
	return nsign.New(nsign.WithMethod(nsign.NewRSAMethod(crypto.SHA256, nil, pub)), nsign.WithEncoder(sw.Encoder{}))
}

// statusCheck turns an HTTP answer other than 2xx into an error (Alipay
// answers 200 with a JSON body; anything else is a proxy or an outage) and
// caps the body read.
type statusCheck struct{ next http.RoundTripper }

func (t statusCheck) RoundTrip(r *http.Request) (*http.Response, error) {
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("alipay answered HTTP %d", resp.StatusCode)
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, maxAnswer)
	return resp, nil
}

// answer is a decoded OpenAPI answer: the common part and the method's own
// fields. Each answer type embeds common.
type answer interface{ result() *sw.Error }

type common struct{ sw.Error }

func (c *common) result() *sw.Error { return &c.Error }

// BusinessError is an answer of Alipay's with an error code, its codes
// kept for the caller. It unwraps to an EBUSINESS *notify.Error, or an
// EUPSTREAM one for Alipay's own failure (20000, "service unavailable").
type BusinessError struct {
	Code    string
	Msg     string
	SubCode string
	SubMsg  string
	// Verified is whether the answer's signature verified with a
	// configured Alipay key or cert. It is false for an unsigned error
	// answer (the client does not verify an error_response either, signed
	// or not): Alipay answers so when it refuses a request before knowing
	// the app, but anyone between the gateway and Alipay could have
	// written it, so a caller must let it change nothing it cannot take
	// back. False too for the replay of a recorded refusal.
	Verified bool
	err      *notify.Error
}

func (e *BusinessError) Error() string { return e.err.Error() }

// Unwrap returns the domain error.
func (e *BusinessError) Unwrap() error { return e.err }

func newBusinessError(r *sw.Error, verified bool) *BusinessError {
	e := &BusinessError{Code: string(r.Code), Msg: r.Msg, SubCode: r.SubCode, SubMsg: r.SubMsg, Verified: verified}
	text := fmt.Sprintf("Alipay answered %s %s", r.Code, r.Msg)
	if r.SubCode != "" {
		text += fmt.Sprintf(": %s %s", r.SubCode, r.SubMsg)
	}
	if r.Code == sw.CodeUnknowError {
		e.err = notify.Errorf(EUPSTREAM, "alipay_unavailable", "%s", text)
	} else {
		e.err = notify.Errorf(EBUSINESS, "alipay_business_error", "%s", text)
	}
	return e
}

// call runs method for c's app, on behalf of the merchant holding
// authToken when it is not empty, and decodes Alipay's verified answer
// into dest. It returns how long the call took and: nil on success; a
// *BusinessError when Alipay answered an error code (Verified when its
// signature verified; unsigned error answers are returned too); an EUPSTREAM
// *notify.Error when the call failed, timed out, or its answer was
// unsigned, badly signed, or signed by an unknown cert.
func (s *Service) call(ctx context.Context, c *client, method string, biz map[string]any, authToken string, dest answer) (time.Duration, error) {
	p := sw.NewPayload(method)
	for k, v := range biz {
		p.AddBizField(k, v)
	}
	if authToken != "" {
		p.AddParam("app_auth_token", authToken)
	}
	if c.app.CertMode {
		// Added as parameters: the client computes these SNs only from
		// cert files, and the config keeps the SNs it checked.
		p.AddParam("app_cert_sn", c.app.AppCertSN)
		p.AddParam("alipay_root_cert_sn", c.app.RootCertSN)
	}
	// Whether the request was written: a failure before it never reached
	// Alipay (dial, DNS, TLS), so the call is safe to make again.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }})
	start := time.Now()
	err := c.api.Request(ctx, p, dest)
	took := time.Since(start)
	err = classify(dest.result(), err)
	if err != nil && !wrote.Load() && notify.ErrorCode(err) == EUPSTREAM {
		err = &notSent{err}
	}

	result := "success"
	var be *BusinessError
	switch {
	case errors.As(err, &be) && notify.ErrorCode(err) == EBUSINESS:
		result = "business_error"
	case err != nil:
		result = "transport_error"
	}
	s.metrics.Outbound(method, result)
	ev := s.log.Info()
	if result == "transport_error" {
		ev = s.log.Warn().Str("reason", notify.ErrorMessage(err))
	}
	code, subCode := string(dest.result().Code), dest.result().SubCode
	if be != nil {
		code, subCode = be.Code, be.SubCode
	}
	ev.Str("method", method).Str("app_id", c.app.ID).Bool("on_behalf", authToken != "").Str("result", result).
		Str("code", code).Str("sub_code", subCode).Int64("latency_ms", took.Milliseconds()).Msg("openapi call")
	return took, err
}

// notSent marks a call's EUPSTREAM error when the call failed before its
// request was written: Alipay surely did not get it. It is the error
// otherwise (code, reason, message).
type notSent struct{ error }

func (e *notSent) Unwrap() error { return e.error }

// NotSent reports whether err, of a call to Alipay, failed before the
// request was written (dial, DNS, TLS, a pool timeout): Alipay surely did
// not get it, and making the call again cannot make it twice.
func NotSent(err error) bool {
	var ns *notSent
	return errors.As(err, &ns)
}

// classify turns the client's answer into call's errors.
func classify(r *sw.Error, err error) error {
	var unsigned *sw.Error
	if errors.As(err, &unsigned) {
		// The client returns the answer as an error when it carries no
		// signature (or is an error_response, which it does not verify).
		// A success must be signed; an error code is kept as it is
		// (Alipay does not sign what it refuses before knowing the app),
		// marked unverified: the single send records it as refused, the
		// batches take it as unknown.
		if unsigned.Code == "" || unsigned.Code.IsSuccess() {
			return notify.Errorf(EUPSTREAM, "alipay_bad_answer", "Alipay's answer is not signed")
		}
		return newBusinessError(unsigned, false)
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			if ue.Timeout() {
				return notify.Errorf(EUPSTREAM, "alipay_timeout", "Alipay did not answer in time")
			}
			return notify.Errorf(EUPSTREAM, "alipay_unreachable", "calling Alipay failed: %v", ue.Err)
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return notify.Errorf(EUPSTREAM, "alipay_timeout", "Alipay did not answer in time")
		}
		return notify.Errorf(EUPSTREAM, "alipay_bad_answer", "Alipay's answer cannot be trusted: %v", err)
	}
	switch {
	case r.Code.IsSuccess():
		return nil
	case r.Code == "":
		return notify.Errorf(EUPSTREAM, "alipay_bad_answer", "Alipay's answer has no code")
	}
	return newBusinessError(r, true)
}
