package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/loadtest"
)

// load is one load run, in loadgen's terms.
type load struct {
	name     string // its summaries go to WORK/name.json, its lines to stderr as "loadgen name: ..."
	port     int    // the gateway's
	n, c     int
	prefix   string
	seed     int64
	tsBase   int64 // utc_timestamp of notification 0, ms (0: now)
	entities int   // 0: n/4
	mix      string
	rate     float64 // 0: signed first, sent as fast as the connections go
	dbURL    string  // checked after the run
	allow    bool    // deliveries not acknowledged are expected (loadgen -allow-failures)
	ready    func(context.Context)
}

// loaded is what a load run gave.
type loaded struct {
	rep *loadtest.Report
	err error
	fig loadFigures
}

func (l loaded) line() string { return runLine(l.rep, l.err) }

// load runs l against its gateway, as loadgen would with the same flags.
func (s *soak) load(ctx context.Context, l load) (out loaded) {
	defer func() {
		out.fig = figuresOf(out.rep, out.err, l.allow)
		if out.err != nil {
			fmt.Fprintf(s.stderr, "loadgen %s: %v\n", l.name, out.err)
		}
	}()
	mix, err := loadtest.MixOf(l.mix)
	if err != nil {
		out.err = err
		return out
	}
	client, err := loadtest.NewClient(fmt.Sprintf("http://127.0.0.1:%d/alipay/notify", l.port), l.c, 30*time.Second)
	if err != nil {
		out.err = err
		return out
	}
	defer client.Close()
	summaries, err := os.Create(filepath.Join(s.work, l.name+".json"))
	if err != nil {
		out.err = err
		return out
	}
	defer summaries.Close()
	if l.tsBase == 0 {
		l.tsBase = time.Now().UnixMilli()
	}
	if l.entities == 0 {
		l.entities = max(l.n/4, 1)
	}
	r := &loadtest.Run{
		Gen: &loadtest.Generator{AppID: appID, Prefix: l.prefix, Seed: l.seed, TSBase: l.tsBase, Entities: l.entities,
			Mix: mix, Key: s.key},
		Client: client, N: l.n, Rate: l.rate, DatabaseURL: l.dbURL, Ready: l.ready,
		Say: func(format string, a ...any) {
			for _, line := range strings.Split(fmt.Sprintf(format, a...), "\n") {
				fmt.Fprintf(s.stderr, "loadgen %s: %s\n", l.name, line)
			}
		},
		Emit: func(v any) {
			b, _ := json.Marshal(v)
			fmt.Fprintln(summaries, string(b))
		},
	}
	out.rep, out.err = r.Do(ctx)
	return out
}

// together runs loads at once: each is signed first, and none starts
// sending before all are signed.
func (s *soak) together(ctx context.Context, loads ...load) []loaded {
	var (
		mu      sync.Mutex
		waiting = len(loads)
		all     = make(chan struct{})
		out     = make([]loaded, len(loads))
		wg      sync.WaitGroup
	)
	for i, l := range loads {
		var once sync.Once
		arrive := func() {
			once.Do(func() {
				mu.Lock()
				defer mu.Unlock()
				if waiting--; waiting == 0 {
					close(all)
				}
			})
		}
		l.ready = func(ctx context.Context) {
			arrive()
			select {
			case <-all:
			case <-ctx.Done():
			}
		}
		wg.Go(func() {
			defer arrive() // a run that failed before it was signed holds no one up
			out[i] = s.load(ctx, l)
		})
	}
	wg.Wait()
	return out
}

// background starts l and returns where its result will be.
func (s *soak) background(ctx context.Context, l load) <-chan loaded {
	ch := make(chan loaded, 1)
	go func() { ch <- s.load(ctx, l) }()
	return ch
}

func (s *soak) kill9Scenario(ctx context.Context) error {
	s.say("== kill9: kill -9 of the gateway during a run of %d, then a resend of all %d", s.n, s.n)
	db, err := s.freshDB(ctx, "soak_kill9")
	if err != nil {
		return err
	}
	l := load{name: "kill9-1", port: s.portA, n: s.n, c: 32, prefix: fmt.Sprintf("k9-%d", s.started), seed: 11,
		tsBase: s.started * 1000, dbURL: db}
	gw, err := s.startGateway(ctx, "kill9", s.portA, db)
	if err != nil {
		return err
	}
	during := l
	during.allow = true
	running := s.background(ctx, during)
	if !gw.waitAcked(ctx, int64(s.n/3)) {
		s.record(verdict{"kill9", false, fmt.Sprintf("the gateway did not acknowledge %d notifications in 120s", s.n/3)})
		<-running
		s.stop(gw)
		return nil
	}
	f := kill9Figures{N: s.n, AtKill: gw.metric("alipay_gateway_notifications_total")}
	s.kill9(gw)
	s.say("kill9: killed the gateway (SIGKILL) after %d acknowledgements", f.AtKill)
	first := <-running
	s.say("kill9: during: %s", first.line())
	f.During = first.fig

	if gw, err = s.startGateway(ctx, "kill9", s.portA, db); err != nil {
		return err
	}
	resend := l
	resend.name = "kill9-2"
	second := s.load(ctx, resend)
	s.stop(gw)
	s.say("kill9: resend: %s", second.line())
	f.Resend = second.fig
	if f.Inbox, err = inbox(ctx, db, l.prefix); err != nil {
		return err
	}
	s.record(judge("kill9", f))
	return nil
}

func (s *soak) pgrestartScenario(ctx context.Context) error {
	n := int(s.rate * 25)
	s.say("== pgrestart: Postgres restarted during a steady run of %d at %s/s, then a resend of all %d", n, rate(s.rate), n)
	db, err := s.freshDB(ctx, "soak_pgrestart")
	if err != nil {
		return err
	}
	l := load{name: "pgrestart-1", port: s.portA, n: n, c: 32, prefix: fmt.Sprintf("pgr-%d", s.started), seed: 12,
		tsBase: s.started * 1000, dbURL: db}
	gw, err := s.startGateway(ctx, "pgrestart", s.portA, db)
	if err != nil {
		return err
	}
	during := l
	during.rate, during.allow = s.rate, true
	running := s.background(ctx, during)
	gw.waitAcked(ctx, int64(s.rate*6))
	t0 := time.Now()
	if err := s.pg(ctx, "stop", s.pgDir); err != nil {
		return err
	}
	select {
	case <-time.After(4 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := s.pg(ctx, "start", s.pgDir, strconv.Itoa(s.pgPort)); err != nil {
		return err
	}
	s.say("pgrestart: Postgres down for %.1fs", time.Since(t0).Seconds())
	first := <-running
	s.say("pgrestart: during: %s", first.line())
	f := pgrestartFigures{N: n, During: first.fig, Readyz: gw.readyz()}

	resend := l
	resend.name = "pgrestart-2"
	second := s.load(ctx, resend)
	s.stop(gw)
	s.say("pgrestart: resend: %s", second.line())
	f.Resend = second.fig
	if f.Inbox, err = inbox(ctx, db, l.prefix); err != nil {
		return err
	}
	if f.History, err = history(ctx, db, l.prefix); err != nil {
		return err
	}
	s.record(judge("pgrestart", f))
	return nil
}

func (s *soak) replicasScenario(ctx context.Context) error {
	s.say("== replicas: the same %d notifications to two gateways at once; %d out-of-order pairs split across them", s.n, s.pairs)
	db, err := s.freshDB(ctx, "soak_replicas")
	if err != nil {
		return err
	}
	a, err := s.startGateway(ctx, "replica-a", s.portA, db)
	if err != nil {
		return err
	}
	b, err := s.startGateway(ctx, "replica-b", s.portB, db)
	if err != nil {
		return err
	}
	// Both sign first, then start sending at the same moment.
	same := load{n: s.n, c: 32, prefix: fmt.Sprintf("rep-%d", s.started), seed: 13, tsBase: s.started * 1000, dbURL: db}
	la, lb := same, same
	la.name, la.port, lb.name, lb.port = "replicas-a", s.portA, "replicas-b", s.portB
	res := s.together(ctx, la, lb)
	s.say("replicas: A: %s", res[0].line())
	s.say("replicas: B: %s", res[1].line())
	sf := replicasSameFigures{N: s.n, A: res[0].fig, B: res[1].fig}
	if sf.Inbox, err = inbox(ctx, db, same.prefix); err != nil {
		return err
	}
	if sf.History, err = history(ctx, db, same.prefix); err != nil {
		return err
	}
	s.record(judge("replicas-same", sf))

	// Pair i: audit.passed at ts T+1+i to A, audit.rejected at T+i to B,
	// same mini-app (T in the past: a time ahead of the gateways' clock is
	// refused).
	ts := s.started*1000 - 1_000_000
	pair := load{n: s.pairs, c: 32, seed: 14, entities: s.pairs, dbURL: db}
	pa, pb := pair, pair
	pa.name, pa.port, pa.prefix, pa.mix, pa.tsBase = "pairs-a", s.portA, fmt.Sprintf("pairA-%d", s.started), "audit-passed", ts+1
	pb.name, pb.port, pb.prefix, pb.mix, pb.tsBase = "pairs-b", s.portB, fmt.Sprintf("pairB-%d", s.started), "audit-rejected", ts
	res = s.together(ctx, pa, pb)
	s.stop(a)
	s.stop(b)
	s.say("replicas: pairs A: %s", res[0].line())
	s.say("replicas: pairs B: %s", res[1].line())
	pf := replicasPairsFigures{Pairs: s.pairs, A: res[0].fig, B: res[1].fig}
	if err := pairs(ctx, db, pa.prefix, pb.prefix, &pf); err != nil {
		return err
	}
	s.record(judge("replicas-pairs", pf))
	return nil
}

func (s *soak) steadyScenario(ctx context.Context) error {
	s.say("== steady: %s/s for %s", rate(s.rate), s.duration)
	db, err := s.freshDB(ctx, "soak_steady")
	if err != nil {
		return err
	}
	gw, err := s.startGateway(ctx, "steady", s.portA, db)
	if err != nil {
		return err
	}
	samplesPath := filepath.Join(s.work, "steady-memory.txt")
	samples, err := os.Create(samplesPath)
	if err != nil {
		return err
	}
	defer samples.Close()
	f := steadyFigures{Rate: s.rate, Start: gw.memory()}
	f.PeakRSSKB = f.Start.RSSKB
	fmt.Fprintln(samples, "# seconds rss_kb heap_inuse_bytes goroutines")
	fmt.Fprintf(samples, "0 %d %d %d\n", f.Start.RSSKB, f.Start.HeapInuse, f.Start.Goroutines)

	start := time.Now()
	running := s.background(ctx, load{name: "steady", port: s.portA, n: int(math.Ceil(s.rate * s.duration.Seconds())), c: 16,
		prefix: fmt.Sprintf("steady-%d", s.started), seed: 15, rate: s.rate, dbURL: db})
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	var res loaded
	for done := false; !done; {
		select {
		case res = <-running:
			done = true
		case <-tick.C:
			m := gw.memory()
			fmt.Fprintf(samples, "%d %d %d %d\n", int(time.Since(start).Seconds()), m.RSSKB, m.HeapInuse, m.Goroutines)
			f.PeakRSSKB = max(f.PeakRSSKB, m.RSSKB)
		}
	}
	select { // the load's connections are closed: their goroutines end
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	f.End = gw.memory()
	f.PeakRSSKB = max(f.PeakRSSKB, f.End.RSSKB)
	fmt.Fprintf(samples, "%d %d %d %d (after the load)\n", int(time.Since(start).Seconds()), f.End.RSSKB, f.End.HeapInuse, f.End.Goroutines)
	s.stop(gw)
	s.say("steady: %s", res.line())
	f.Load = res.fig
	s.say("steady: memory samples (%s):", samplesPath)
	if b, err := os.ReadFile(samplesPath); err == nil {
		for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			s.say("steady:   %s", line)
		}
	}
	s.record(judge("steady", f))
	return nil
}

// rate is a rate as given: "200".
func rate(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }
