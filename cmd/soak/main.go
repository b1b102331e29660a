// Command soak runs the gateway under failure and says whether it kept its
// guarantees: every notification answered success is stored, exactly once,
// with one effect, whatever happens to the gateway or the database. It is
// make soak (deploy/dev/soak.sh, which builds it, builds the gateway and
// starts the Postgres it is given by -admin-url).
//
//	soak -admin-url URL [flags] kill9|pgrestart|replicas|steady|webhooks|all
//
//	kill9      kill -9 of the gateway in the middle of a load run: every
//	           acknowledged notification is stored; after a restart, a resend
//	           of all N is acknowledged and each is stored exactly once.
//	pgrestart  Postgres stopped and started again (pg.sh) in the middle of a
//	           steady load: 503 fail for a while, then success; nothing
//	           acknowledged lost, nothing applied twice (inbox and history
//	           rows), and a resend of all N then stores the rest.
//	replicas   two gateways on one database get the same notifications at
//	           once: one inbox row and one effect each, delivery_count 2; and
//	           out-of-order pairs split across them (audit.passed newer to A,
//	           audit.rejected older to B, same mini-app) end in the newest.
//	steady     -rate a second for -duration: all acknowledged and stored;
//	           RSS, heap in use and goroutines at start and end.
//	webhooks   two gateways on one database, both dispatching (WEBHOOK_TIMEOUT
//	           1s) to one endpoint: a local receiver (-receiver-port) that
//	           answers a fifth of the attempts 500 and 2 % past the timeout
//	           during a steady load of -rate/4 a second to each for a minute,
//	           in which B is killed with SIGKILL while deliveries are in
//	           flight and started again, the receiver goes away for 4 s, and
//	           Postgres restarts; then, the receiver healthy, a wait (up to 8
//	           minutes: retries come 10 s doubling after a failure) until
//	           every event is delivered. Every event of the events table
//	           reached the receiver (by webhook-id, signature verified), none
//	           is left pending or dead, duplicates carry the same body; they
//	           are counted, as at-least-once allows them.
//
// Each scenario gets a fresh database on the server, and gateways on
// -port-a and -port-b (logs, load summaries and memory samples in -work).
// The load is internal/loadtest's, as cmd/loadgen sends it. It prints a
// PASS or FAIL line with the figures for each scenario, and exits 1 when
// any fails. Every gateway it started is stopped on exit.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/loadtest"
)

// appID is the ISV app of every notification.
const appID = "2021000000000001"

// scenarios, in the order "all" runs them.
var scenarios = []string{"kill9", "pgrestart", "replicas", "steady", "webhooks"}

// soak is one run of the scenarios, and the gateways it has running.
type soak struct {
	n, pairs, portA, portB, pgPort int
	receiverPort                   int
	rate                           float64
	duration                       time.Duration
	adminURL, pgDir, pgScript      string
	gatewayBin, work, logLevel     string
	started                        int64 // unix seconds: prefixes and timestamps of this run
	stdout, stderr                 io.Writer

	key           *rsa.PrivateKey
	publicKeyFile string
	tokenKey      string
	opsToken      string
	gateways      map[string]*gateway
	results       []verdict
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s := &soak{stdout: stdout, stderr: stderr, gateways: map[string]*gateway{}}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&s.n, "n", 10000, "notifications per load run (SOAK_N)")
	fs.Float64Var(&s.rate, "rate", 200, "steady deliveries a second, in pgrestart and steady; a quarter of it to each gateway in webhooks (SOAK_RATE)")
	fs.DurationVar(&s.duration, "duration", 10*time.Minute, "how long steady lasts (SOAK_DURATION)")
	fs.IntVar(&s.pairs, "pairs", 2000, "out-of-order pairs in replicas (SOAK_PAIRS)")
	fs.IntVar(&s.portA, "port-a", 18461, "gateway A's port (SOAK_PORT_A; below the ephemeral range)")
	fs.IntVar(&s.portB, "port-b", 18462, "gateway B's port (SOAK_PORT_B)")
	fs.IntVar(&s.receiverPort, "receiver-port", 18463, "the webhook receiver's port, in webhooks (SOAK_RECEIVER_PORT)")
	fs.StringVar(&s.adminURL, "admin-url", "", "`URL` of the soak's Postgres, as pg.sh start prints it (required)")
	fs.StringVar(&s.pgDir, "pg-dir", ".dev/pg-soak", "its pg.sh directory, for pgrestart")
	fs.IntVar(&s.pgPort, "pg-port", 55460, "its port, for pgrestart (SOAK_PG_PORT)")
	fs.StringVar(&s.pgScript, "pg-script", "deploy/dev/pg.sh", "pg.sh, which pgrestart stops and starts Postgres with")
	fs.StringVar(&s.gatewayBin, "gateway", ".dev/bin/gateway", "the gateway binary (GATEWAY_BIN)")
	fs.StringVar(&s.work, "work", ".dev/soak", "`dir` for keys, gateway logs, load summaries and memory samples")
	fs.StringVar(&s.logLevel, "log-level", "warn", "the gateways' LOG_LEVEL (GATEWAY_LOG_LEVEL)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: soak -admin-url URL [flags] kill9|pgrestart|replicas|steady|webhooks|all\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	what := "all"
	switch fs.NArg() {
	case 0:
	case 1:
		what = fs.Arg(0)
	default:
		fs.Usage()
		return 2
	}
	var todo []string
	switch {
	case what == "all":
		todo = scenarios
	case slices.Contains(scenarios, what):
		todo = []string{what}
	default:
		fmt.Fprintf(stderr, "soak: unknown scenario %q (want %s or all)\n", what, strings.Join(scenarios, ", "))
		return 2
	}
	switch {
	case s.adminURL == "":
		fmt.Fprintln(stderr, "soak: -admin-url is required")
		return 2
	case s.n < 3 || s.pairs < 1 || s.rate <= 0 || s.duration <= 0:
		fmt.Fprintln(stderr, "soak: -n must be at least 3, -pairs at least 1, -rate and -duration positive")
		return 2
	}
	defer s.stopAll()
	if err := s.setUp(); err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 1
	}
	scenario := map[string]func(context.Context) error{
		"kill9": s.kill9Scenario, "pgrestart": s.pgrestartScenario, "replicas": s.replicasScenario, "steady": s.steadyScenario,
		"webhooks": s.webhooksScenario,
	}
	for _, name := range todo {
		err := scenario[name](ctx)
		s.stopAll()
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "soak:", errInterrupted)
			return 130
		}
		if err != nil {
			fmt.Fprintln(stderr, "soak:", err)
			return 1
		}
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "soak: gateway %s, N=%d\n", revision(), s.n)
	failed := false
	for _, v := range s.results {
		fmt.Fprintf(stdout, "soak: %s\n", v)
		failed = failed || !v.pass
	}
	if failed {
		return 1
	}
	return 0
}

// setUp makes the work directory, a new "Alipay" key pair and the
// gateways' secrets.
func (s *soak) setUp() error {
	if err := os.MkdirAll(s.work, 0o755); err != nil {
		return err
	}
	for _, pattern := range []string{"*.log", "*.json"} {
		old, _ := filepath.Glob(filepath.Join(s.work, pattern))
		for _, f := range old {
			os.Remove(f)
		}
	}
	keys := filepath.Join(s.work, "keys")
	if err := loadtest.GenKey(keys); err != nil {
		return err
	}
	pem, err := os.ReadFile(filepath.Join(keys, loadtest.PrivateKeyFile))
	if err != nil {
		return err
	}
	key, err := alipay.ParsePrivateKey(pem)
	if err != nil {
		return err
	}
	s.key, s.publicKeyFile = key, filepath.Join(keys, loadtest.PublicKeyFile)
	s.tokenKey = base64.StdEncoding.EncodeToString(random(32))
	s.opsToken = strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(random(24)))
	s.started = time.Now().Unix()
	return nil
}

// stopAll stops every gateway still running.
func (s *soak) stopAll() {
	for _, g := range s.gateways {
		s.stop(g)
	}
}

// say prints a line of a scenario's progress; logf one of the soak's own.
func (s *soak) say(format string, a ...any) { fmt.Fprintf(s.stderr, format+"\n", a...) }

func (s *soak) logf(format string, a ...any) { fmt.Fprintf(s.stderr, "soak: "+format+"\n", a...) }

// record prints a scenario's verdict and keeps it for the summary.
func (s *soak) record(v verdict) {
	s.results = append(s.results, v)
	fmt.Fprintln(s.stdout, v)
}

// pg runs pg.sh with args (stop DIR, start DIR PORT).
func (s *soak) pg(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "bash", append([]string{s.pgScript}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func revision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
