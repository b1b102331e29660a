// Command msgsim simulates Alipay's side of the message service's WebSocket
// channel on a local address, for development and `make demo`: point the
// gateway's ALIPAY_MSG_HOST at it (http://127.0.0.1:8090). It checks the
// app's signatures on register and connect, signs its answers and messages
// with the given "Alipay" private key, redelivers what is not acknowledged
// SUCCESS, and serves a small control API under /sim/ (deliver a message or
// a sample, drop the connection, refuse registrations, list acks; see
// internal/msgsim).
//
//	msgsim -app-id 2021000000000001 -app-public-key .dev/keys/app/public_key.txt \
//	       -alipay-private-key .dev/keys/alipay/private_key_pkcs8.pem -deliver-samples
package main

import (
	"context"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/msgsim"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "msgsim:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("msgsim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	appIDs := fs.String("app-id", "", "the simulated app ids, comma-separated (required)")
	appKeyFile := fs.String("app-public-key", "", "the apps' public key (应用公钥; PEM or bare base64; a private key file works too) (required)")
	alipayKeyFile := fs.String("alipay-private-key", "", `the "Alipay" private key that signs answers and messages; the gateway has its public key as ALIPAY_PUBLIC_KEY (required)`)
	ackTimeout := fs.Duration("ack-timeout", 10*time.Second, "redeliver a message not acknowledged after this long")
	retryAfter := fs.Duration("retry-after", time.Second, "redeliver a message acknowledged FAIL after this long")
	deliverSamples := fs.Bool("deliver-samples", false, "queue the six sample messages for each app at start (msg ids sim-<sample>-<app>)")
	verbose := fs.Bool("v", false, "log every message sent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *appIDs == "" || *appKeyFile == "" || *alipayKeyFile == "" {
		fs.Usage()
		return errors.New("-app-id, -app-public-key and -alipay-private-key are required")
	}
	appPub, err := readPublicKey(*appKeyFile)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(*alipayKeyFile)
	if err != nil {
		return err
	}
	platform, err := alipay.ParsePrivateKey(data)
	if err != nil {
		return fmt.Errorf("%s: %v", *alipayKeyFile, err)
	}
	apps := map[string]*rsa.PublicKey{}
	for _, id := range strings.Split(*appIDs, ",") {
		if id = strings.TrimSpace(id); id != "" {
			apps[id] = appPub
		}
	}
	level := zerolog.InfoLevel
	if *verbose {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(os.Stderr).Level(level).With().Timestamp().Logger()
	sim := msgsim.New(msgsim.Config{Apps: apps, PlatformKey: platform, AckTimeout: *ackTimeout, RetryAfter: *retryAfter, Logger: log})
	defer sim.Close()
	if *deliverSamples {
		for id := range apps {
			for _, s := range samples.All() {
				if s.Form["msg_method"] == "" {
					continue // HTTP-only, older style
				}
				if err := sim.Deliver(id, s.Method, s.Form["biz_content"], "sim-"+s.Name+"-"+id, 0); err != nil {
					return err
				}
			}
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/sim/", sim.Control())
	mux.Handle("/", sim)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Str("msg_host", "http://"+ln.Addr().String()).Msg("msgsim: listening")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sim.Close()
	_ = srv.Shutdown(sctx)
	return nil
}

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
