// Command loadgen measures the gateway under load and checks what it kept
// (the flags and the output around internal/loadtest, which does the work).
//
// It signs N distinct notifications as Alipay does (RSA2, with the "Alipay"
// private key given by -key: the key whose public half the gateway trusts),
// a mix of the sample methods of internal/samples with their own notify_ids
// (-prefix), entities and timestamps; posts them to a running gateway over C
// keep-alive connections; and prints the throughput (acknowledged
// notifications per second), the latency percentiles, and how many were
// acknowledged (200 "success") or failed, by status; with -cpu, what CPU
// time a notification cost. With -database-url it then checks in Postgres
// that every acknowledged notification is stored exactly once, with one
// history row for the audit and order ones, and reports delivery counts
// and statuses.
//
//	loadgen -key .dev/keys/alipay/private_key_pkcs8.pem -n 20000 -c 64 -database-url "$DATABASE_URL"
//	loadgen ... -resend                  # then the same N again: pure duplicates
//	loadgen ... -rate 200 -duration 10m  # a steady soak, signed on the fly
//
// With -receive it is instead a receiver of the gateway's webhooks
// (loadtest.Receiver): it verifies each delivery with the endpoints'
// -secret, counts them by webhook-id, answers 204, and reports over
// /_receiver/stats (with -cpu, the CPU time an event cost, once the number
// POST /_receiver/reset?expect=N asks for have arrived):
//
//	loadgen -receive 127.0.0.1:18471 -secret whsec_...,whsec_... [-cpu gateway=PID]
//
// Bodies are a pure function of -prefix, -seed, -ts-base, -entities, -mix,
// -app-id and the key: two runs with the same flags send the same bytes
// (a resend, or one load against two replicas).
//
// Exit status: 0 when everything was acknowledged and the check passed;
// 1 when the check finds an acknowledged notification missing or doubled,
// or on an error; 2 for bad flags; 3 when some deliveries were not
// acknowledged (unless -allow-failures) but the check passed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/loadtest"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
)

type options struct {
	url, keyFile, appID, prefix, mix, databaseURL, genKey, cpu, forged string
	receive, secrets                                                   string
	n, c, entities, forgedN                                            int
	seed, tsBase, startAt                                              int64
	rate                                                               float64
	duration, timeout                                                  time.Duration
	resend, json, allowFailures                                        bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080/alipay/notify", "the gateway's notification `URL`")
	fs.StringVar(&o.keyFile, "key", "", "the \"Alipay\" private key `file` (PEM or base64, PKCS#1 or #8) that signs")
	fs.StringVar(&o.appID, "app-id", "2021000000000001", "the app_id of the notifications")
	fs.IntVar(&o.n, "n", 1000, "how many distinct notifications")
	fs.IntVar(&o.c, "c", 16, "concurrent keep-alive connections")
	fs.StringVar(&o.prefix, "prefix", "lg-"+time.Now().Format("20060102T150405"), "notify_id prefix of this run")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the method mix, entity ids and random values")
	fs.Int64Var(&o.tsBase, "ts-base", 0, "utc_timestamp of notification 0 in ms (0: now); notification i has ts-base+i")
	fs.IntVar(&o.entities, "entities", 0, "distinct mini-apps/orders/authorizations (0: n/4); notification i is about entity i%entities")
	fs.StringVar(&o.mix, "mix", "", "comma-separated sample names to pick from (default all: "+strings.Join(samples.Names(), ",")+")")
	fs.Int64Var(&o.startAt, "start-at", 0, "once signed, wait until this time (unix ms) to send: runs in several processes start together")
	fs.BoolVar(&o.resend, "resend", false, "after the n, send the same n again (pure duplicates) and report both")
	fs.Float64Var(&o.rate, "rate", 0, "steady deliveries per second (0: as fast as possible)")
	fs.DurationVar(&o.duration, "duration", 0, "with -rate: run this long (n becomes rate×duration)")
	fs.BoolVar(&o.json, "json", false, "print the summaries as JSON lines on stdout (people's lines go to stderr)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.StringVar(&o.databaseURL, "database-url", "", "the gateway's database: check that every acknowledged notification is stored once")
	fs.StringVar(&o.genKey, "gen-key", "", "write a new \"Alipay\" key pair into `DIR` (public_key.txt for the gateway, private_key_pkcs8.pem for -key) and exit")
	fs.StringVar(&o.cpu, "cpu", "", "`name=pid,...`: per pass, report the CPU time a notification cost the machine, loadgen and these process trees (Linux /proc)")
	fs.BoolVar(&o.allowFailures, "allow-failures", false, "deliveries that are not acknowledged are expected (a kill, a restart): exit 0 if the check passes")
	fs.StringVar(&o.forged, "forged", "", "`kinds`: after the other passes, a pass of forged requests of each kind ("+strings.Join(loadtest.ForgedKinds, ", ")+"), every one of which must be refused; with -cpu, what a refusal costs")
	fs.IntVar(&o.forgedN, "forged-n", 5000, "requests in each -forged pass")
	fs.StringVar(&o.receive, "receive", "", "`host:port`: be a webhook receiver there instead, until interrupted (needs -secret; -cpu is then per event)")
	fs.StringVar(&o.secrets, "secret", "", "with -receive: the comma-separated secrets (whsec_...) of the endpoints that send to it")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: loadgen -key FILE [-url URL] [-n N] [-c C] [-resend] [-rate R -duration D] [-database-url URL] [flags]\n       loadgen -gen-key DIR\n       loadgen -receive HOST:PORT -secret WHSEC[,WHSEC] [-cpu name=pid,...]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.receive != "" && o.secrets == "":
		return nil, errors.New("-receive needs -secret: the secrets of the endpoints that send to it")
	case o.genKey != "" || o.receive != "":
		return o, nil
	case o.keyFile == "":
		return nil, errors.New("-key is required")
	case o.duration > 0 && o.rate <= 0:
		return nil, errors.New("-duration needs -rate")
	case o.c < 1 || o.rate < 0:
		return nil, errors.New("-c must be at least 1 and -rate not negative")
	case o.forgedN < 1:
		return nil, errors.New("-forged-n must be at least 1")
	}
	if _, err := loadtest.ParseForged(o.forged); err != nil {
		return nil, err
	}
	if o.duration > 0 {
		o.n = int(math.Ceil(o.rate * o.duration.Seconds()))
	}
	if o.n < 1 {
		return nil, errors.New("-n must be at least 1")
	}
	if o.tsBase == 0 {
		o.tsBase = time.Now().UnixMilli()
	}
	if o.entities <= 0 {
		o.entities = max(o.n/4, 1)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return loadtest.ExitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return loadtest.ExitUsage
	}
	// People's lines go to stdout, or to stderr when stdout carries JSON.
	human := stdout
	if o.json {
		human = stderr
	}
	say := func(format string, a ...any) {
		for _, line := range strings.Split(fmt.Sprintf(format, a...), "\n") {
			fmt.Fprintln(human, "loadgen: "+line)
		}
	}
	emit := func(v any) {
		if o.json {
			b, _ := json.Marshal(v)
			fmt.Fprintln(stdout, string(b))
		}
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "loadgen:", err); return loadtest.ExitFailed }
	usage := func(err error) int { fmt.Fprintln(stderr, "loadgen:", err); return loadtest.ExitUsage }
	if o.genKey != "" {
		if err := loadtest.GenKey(o.genKey); err != nil {
			return fail(err)
		}
		say("wrote %s and %s", filepath.Join(o.genKey, loadtest.PublicKeyFile), filepath.Join(o.genKey, loadtest.PrivateKeyFile))
		return loadtest.ExitOK
	}

	if o.receive != "" {
		meter, err := cpuMeter(o.cpu)
		if err != nil {
			return usage(err)
		}
		say("receiving webhooks on http://%s/ (GET %sstats, POST %sreset?expect=N)", o.receive, loadtest.ControlPrefix, loadtest.ControlPrefix)
		if err := loadtest.ServeReceiver(ctx, o.receive, splitList(o.secrets), meter); err != nil {
			return fail(err)
		}
		return loadtest.ExitOK
	}

	keyPEM, err := os.ReadFile(o.keyFile)
	if err != nil {
		return fail(err)
	}
	key, err := alipay.ParsePrivateKey(keyPEM)
	if err != nil {
		return fail(fmt.Errorf("-key %s: %w", o.keyFile, err))
	}
	mix, err := loadtest.MixOf(o.mix)
	if err != nil {
		return usage(err)
	}
	client, err := loadtest.NewClient(o.url, o.c, o.timeout)
	if err != nil {
		return usage(err)
	}
	defer client.Close()
	meter, err := cpuMeter(o.cpu)
	if err != nil {
		return usage(err)
	}
	forged, _ := loadtest.ParseForged(o.forged) // checked by parseFlags
	r := &loadtest.Run{
		Gen: &loadtest.Generator{AppID: o.appID, Prefix: o.prefix, Seed: o.seed, TSBase: o.tsBase,
			Entities: o.entities, Mix: mix, Key: key},
		Client: client, N: o.n, Rate: o.rate, Resend: o.resend, Forged: forged, ForgedN: o.forgedN,
		Meter: meter, DatabaseURL: o.databaseURL, Say: say, Emit: emit,
	}
	if o.startAt > 0 {
		r.StartAt = time.UnixMilli(o.startAt)
	}
	rep, err := r.Do(ctx)
	if err != nil {
		return fail(err)
	}
	code := rep.Exit(o.allowFailures)
	if code == loadtest.ExitNotAcked {
		say("%d deliveries were not acknowledged (use -allow-failures when that is expected)", rep.Unacked)
	}
	return code
}

// cpuMeter returns the meter of -cpu's process trees and loadgen's own,
// nil without -cpu.
func cpuMeter(flag string) (*loadtest.CPUMeter, error) {
	if flag == "" {
		return nil, nil
	}
	trees, err := loadtest.ParseCPUFlag(flag)
	if err != nil {
		return nil, err
	}
	trees["loadgen"] = os.Getpid()
	return loadtest.NewCPUMeter("/proc", trees)
}

// splitList splits a comma-separated list, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
