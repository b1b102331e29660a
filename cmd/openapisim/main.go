// Command openapisim simulates Alipay's OpenAPI gateway on a local
// address (internal/openapisim as a process), for benches and manual
// runs: point the gateway's ALIPAY_GATEWAY_URL at it
// (http://127.0.0.1:8091/gateway.do; any path answers). It checks every
// request's RSA2 signature with the app's public key (and in certificate
// mode the app and root cert SNs), signs every answer with the "Alipay"
// private key, optionally limits each app's calls a second (40005) and
// fails a share of the sends, and serves a JSON control API under /sim/
// (see control.go).
//
// With the development keys of make run (the app key pair made by
// `alipayctl keys --out .dev/keys/app`):
//
//	openapisim -app-id 2021000000000001 -app-public-key .dev/keys/app/public_key.txt \
//	    -alipay-private-key .dev/keys/alipay/private_key_pkcs8.pem
//	ALIPAY_APP_PRIVATE_KEY_FILE=.dev/keys/app/private_key_pkcs8.pem \
//	    ALIPAY_GATEWAY_URL=http://127.0.0.1:8091/gateway.do make run
//
// Every flag can come from the environment instead: OPENAPISIM_ and the
// flag's name in capitals, dashes as underscores (OPENAPISIM_APP_ID).
//
// `openapisim rates [-n N] [-min-rate R] [-target R -tolerance 0.05 -drop 2s
// -window 10s]` reads GET /sim/stats?times=1's JSON on stdin and prints the
// achieved rates (overall, steady after -drop, per window), exiting 1 when
// they miss (make bench-send uses it; see rates.go).
package main

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "rates" {
		if err := runRates(os.Args[2:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "openapisim:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "openapisim:", err)
		os.Exit(1)
	}
}

// options are run's flags.
type options struct {
	addr, appIDs, appKey, appCert, alipayKey, alipayCert, rootCert string
	rate                                                           float64
	burst                                                          int
	failure                                                        float64
	failureMethod, failureCode, failureSubCode                     string
	failureDeliver, failureHang, requireSub, lean, verbose         bool
}

// parse reads the flags from args, then the environment (getenv) for
// those not given.
func parse(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("openapisim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8091", "listen address")
	fs.StringVar(&o.appIDs, "app-id", "", "the simulated ISV app ids, comma-separated (required)")
	fs.StringVar(&o.appKey, "app-public-key", "", "the apps' public key (应用公钥; PEM or bare base64; a private key file works too); or -app-cert")
	fs.StringVar(&o.appCert, "app-cert", "", "certificate mode: the app's cert (appCertPublicKey_<app id>.crt): its key checks the requests, its SN is the app_cert_sn they must carry")
	fs.StringVar(&o.alipayKey, "alipay-private-key", "", `the "Alipay" private key that signs every answer; the gateway has its public key (ALIPAY_PUBLIC_KEY_FILE) or cert (required)`)
	fs.StringVar(&o.alipayCert, "alipay-cert", "", "certificate mode: Alipay's cert (alipayCertPublicKey_RSA2.crt), whose SN answers carry as alipay_cert_sn")
	fs.StringVar(&o.rootCert, "root-cert", "", "certificate mode: the root bundle (alipayRootCert.crt), whose SN requests must carry as alipay_root_cert_sn")
	fs.Float64Var(&o.rate, "rate", 0, "calls a second each app may make (any method); over it Alipay's 40005; 0: no limit")
	fs.IntVar(&o.burst, "burst", 0, "the rate limit's burst (calls at once); 0: a fifth of a second's calls, at least 1")
	fs.Float64Var(&o.failure, "failure", 0, "the share (0 to 1) of -failure-method's calls that fail, chosen by recipient and attempt")
	fs.StringVar(&o.failureMethod, "failure-method", openapisim.MethodTemplateMessageSend, "the method -failure fails")
	fs.StringVar(&o.failureCode, "failure-code", "20000", "what a -failure call answers: an Alipay code")
	fs.StringVar(&o.failureSubCode, "failure-sub-code", "isp.unknow-error", "and sub_code")
	fs.BoolVar(&o.failureDeliver, "failure-deliver", false, "a -failure send is delivered first: delivered, answer lost")
	fs.BoolVar(&o.failureHang, "failure-hang", false, "a -failure call is never answered (instead of -failure-code)")
	fs.BoolVar(&o.requireSub, "require-subscription", false, `a send to a user without a "1" subscription to the template is refused (40004, see POST /sim/subscribe)`)
	fs.BoolVar(&o.lean, "lean", true, "keep no copy of the calls' parameters")
	fs.BoolVar(&o.verbose, "v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "OPENAPISIM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && !given[f.Name] && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s: %v", name, serr)
			}
		}
	})
	switch {
	case err != nil:
		return nil, err
	case o.appIDs == "" || o.alipayKey == "" || (o.appKey == "") == (o.appCert == ""):
		fs.Usage()
		return nil, errors.New("-app-id, -alipay-private-key and one of -app-public-key and -app-cert are required")
	case o.rate < 0 || o.burst < 0 || o.failure < 0 || o.failure > 1:
		return nil, errors.New("-rate and -burst must not be negative, -failure from 0 to 1")
	case (o.appCert == "") != (o.rootCert == ""):
		return nil, errors.New("certificate mode needs both -app-cert and -root-cert")
	}
	return o, nil
}

// config loads the keys and certs o names into a simulator's Config.
func (o *options) config() (openapisim.Config, []string, error) {
	var cfg openapisim.Config
	app := openapisim.App{}
	if o.appCert != "" {
		c, err := readCert(o.appCert)
		if err != nil {
			return cfg, nil, err
		}
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			return cfg, nil, fmt.Errorf("%s: the cert's key is %T, not RSA", o.appCert, c.PublicKey)
		}
		app.Pub, app.AppCertSN = pub, alipay.CertSN(c)
		data, err := os.ReadFile(o.rootCert)
		if err != nil {
			return cfg, nil, err
		}
		roots, err := alipay.ParseRootBundle(data)
		if err != nil || roots.SN == "" {
			return cfg, nil, fmt.Errorf("%s: not a root bundle with an RSA root (%v)", o.rootCert, err)
		}
		app.RootCertSN = roots.SN
	} else {
		pub, err := readPublicKey(o.appKey)
		if err != nil {
			return cfg, nil, err
		}
		app.Pub = pub
	}
	data, err := os.ReadFile(o.alipayKey)
	if err != nil {
		return cfg, nil, err
	}
	if cfg.SignKey, err = alipay.ParsePrivateKey(data); err != nil {
		return cfg, nil, fmt.Errorf("%s: %v", o.alipayKey, err)
	}
	if o.alipayCert != "" {
		c, err := readCert(o.alipayCert)
		if err != nil {
			return cfg, nil, err
		}
		cfg.CertSN = alipay.CertSN(c)
	}
	var ids []string
	for _, id := range strings.Split(o.appIDs, ",") {
		if id = strings.TrimSpace(id); id != "" {
			a := app
			a.ID = id
			cfg.Apps = append(cfg.Apps, a)
			ids = append(ids, id)
		}
	}
	cfg.Lean = o.lean
	return cfg, ids, nil
}

// run serves the simulator until ctx is done; ready, when not nil, gets
// the address it listens on.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready chan<- string) error {
	o, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg, ids, err := o.config()
	if err != nil {
		return err
	}
	level := zerolog.InfoLevel
	if o.verbose {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(stderr).Level(level).With().Timestamp().Logger()
	sim := openapisim.New(cfg)
	defer sim.Close()
	if o.rate > 0 {
		burst := o.burst
		if burst == 0 {
			burst = defaultBurst(o.rate)
		}
		for _, id := range ids {
			sim.SetRateLimit(id, o.rate, burst)
		}
	}
	if o.failure > 0 {
		f := openapisim.Fault{Code: o.failureCode, SubCode: o.failureSubCode, Deliver: o.failureDeliver}
		if o.failureHang {
			f = openapisim.Fault{Hang: true, Deliver: o.failureDeliver}
		}
		sim.SetFailure(o.failureMethod, o.failure, f)
	}
	sim.RequireSubscription(o.requireSub)

	mux := http.NewServeMux()
	mux.Handle("/sim/", control(sim, ids))
	mux.Handle("/", sim)
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	addr := ln.Addr().String()
	log.Info().Str("addr", addr).Str("gateway_url", "http://"+addr+"/gateway.do").Strs("app_ids", ids).
		Float64("rate", o.rate).Float64("failure", o.failure).Bool("cert_mode", o.appCert != "").Msg("openapisim: listening")
	if ready != nil {
		ready <- addr
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sim.Close() // release hanging calls before waiting for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	st := sim.Stats()
	log.Info().Int("calls", st.Calls).Int("sent", st.Sent).Int("rate_limited", st.RateLimited).Int("faults", st.Faults).Msg("openapisim: stopped")
	return nil
}

// defaultBurst is a rate limit's burst when none is given: a fifth of a
// second's calls, at least 1.
func defaultBurst(perSecond float64) int { return max(1, int(math.Ceil(perSecond/5))) }

// readPublicKey reads a public key, or the public half of a private key.
func readPublicKey(name string) (*rsa.PublicKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	pub, err := alipay.ParsePublicKey(data)
	if err == nil {
		return pub, nil
	}
	if k, kerr := alipay.ParsePrivateKey(data); kerr == nil {
		return &k.PublicKey, nil
	}
	return nil, fmt.Errorf("%s: %v", name, err)
}

func readCert(name string) (*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	c, err := alipay.ParseLeafCert(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return c, nil
}
