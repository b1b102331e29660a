package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// BenchmarkIntakeOutbox measures what the outbox costs the intake (issue
// 19): the throughput of group-committed batches of audit notifications, two
// flushers at once as in production, with
//
//	A   the inbox insert and the state upsert, without the events CTE (the intake before the outbox);
//	B   the intake as shipped: the events written by the inbox insert's CTE;
//	C   B, and river jobs in the intake's transaction, one per event and endpoint (2 endpoints), inserted
//	    by river's own Client.InsertManyTx (its JobInsertFastMany, and its insert notify) in an explicit
//	    transaction, after the insert has said which events it wrote;
//	Cp  C's jobs, river's statements (captured from InsertManyTx) sent in the intake's batch instead:
//	    what river's rows cost without the round trips its API takes;
//	Cr  C with jobs that carry a reference to the event (its key in events) instead of the event;
//	D   C with one job per event (a fan-out job, to make the deliveries later);
//
// each on a schema of its own (river's migrations run on those of C, Cp, Cr and
// D), interleaved: every round runs each variant once, in an order rotated
// by round, after a warm-up round. It reports, per variant, the median over
// rounds of notifications per second and of the ratio to A within a round,
// and per notification the Postgres CPU (every postgres process, the
// postmaster's reaped children included), this process's CPU, and WAL bytes.
// It runs once (-benchtime 1x), on the server of TEST_DATABASE_URL:
//
//	go test -run '^$' -bench IntakeOutbox -benchtime 1x -timeout 60m ./internal/postgres
//
// Settings (environment): OUTBOX_BENCH_ROUNDS (7), OUTBOX_BENCH_BATCHES
// (batches per flusher and segment, 40), OUTBOX_BENCH_SIZE (notifications
// per batch, 64), OUTBOX_BENCH_FLUSHERS (2), OUTBOX_BENCH_VARIANTS (A,B,C,Cp,Cr,D).
// Each segment's line gives the WAL it spans (insert LSNs), for pg_waldump.
//
// On a 2-core machine shared with other work (Postgres 15, river v0.51.2;
// two runs of 9 rounds), relative to B: A 1.40-1.65, C 0.34, Cp 0.33-0.39,
// Cr 0.55, D 0.46-0.53; WAL per notification A 2.9 kB, B 4.8, C 14.5,
// Cp 14.5, Cr 9.3, D 9.8; Postgres CPU per notification A 78-90 µs, B
// 125-148, C 415-458, Cp 401-431, Cr 258-275, D 281-309. A river job costs
// more than an event row: its ON CONFLICT (speculative insertion, for every
// row), the GIN indexes on args and metadata (their pending lists), and its
// RETURNING of every column.
func BenchmarkIntakeOutbox(b *testing.B) {
	if os.Getenv("TEST_DATABASE_URL") == "" && os.Getenv("DATABASE_URL") == "" {
		b.Skip("no TEST_DATABASE_URL")
	}
	cfg := benchConfig{
		rounds:   envInt(b, "OUTBOX_BENCH_ROUNDS", 7),
		batches:  envInt(b, "OUTBOX_BENCH_BATCHES", 40),
		size:     envInt(b, "OUTBOX_BENCH_SIZE", 64),
		flushers: envInt(b, "OUTBOX_BENCH_FLUSHERS", 2),
	}
	names := strings.Split(envString("OUTBOX_BENCH_VARIANTS", "A,B,C,Cp,Cr,D"), ",")
	ctx := context.Background()
	var variants []*variant
	for _, name := range names {
		variants = append(variants, newVariant(b, ctx, strings.TrimSpace(name)))
	}
	probe := newProbe(b, ctx, variants[0].db)
	b.Logf("%d rounds (and a warm-up) of %d variants; a segment: %d flushers x %d batches x %d audit notifications; load before: %s",
		cfg.rounds, len(variants), cfg.flushers, cfg.batches, cfg.size, loadavg())
	b.ResetTimer()
	for round := 0; round <= cfg.rounds; round++ {
		for i := range variants {
			v := variants[(i+round)%len(variants)]
			s := v.segment(b, ctx, cfg, probe)
			v.total.notes, v.total.events, v.total.jobs = v.total.notes+s.notes, v.total.events+s.events, v.total.jobs+s.jobs
			if round > 0 {
				v.segs = append(v.segs, s)
			}
			b.Logf("round %d %-2s %8.0f notes/s  pg %5.0f µs/note  client %4.0f µs/note  others %4.0f%% cpu  wal %5.0f B/note  jobs %.2f/note  ckpt %d  lsn %s-%s",
				round, v.name, s.rate(), s.pgCPU.Seconds()*1e6/float64(s.notes), s.clientCPU.Seconds()*1e6/float64(s.notes),
				100*s.othersCPU.Seconds()/s.wall.Seconds(), float64(s.wal)/float64(s.notes), float64(s.jobs)/float64(s.notes), s.checkpoints, lsn(s.walStart), lsn(s.walStart+s.wal))
		}
	}
	b.StopTimer()
	b.Logf("load after: %s", loadavg())
	for _, v := range variants {
		v.check(b, ctx)
	}
	a := variants[0]
	b.Logf("variant   notes/s  ratio-to-%s (median of per-round; range)  pg µs/note  client µs/note  WAL B/note  events/note  jobs/note  others' cpu (median, max)", a.name)
	for _, v := range variants {
		var rates, ratios, pg, client, wal, others []float64
		for r, s := range v.segs {
			rates = append(rates, s.rate())
			ratios = append(ratios, s.rate()/a.segs[r].rate())
			pg = append(pg, s.pgCPU.Seconds()*1e6/float64(s.notes))
			client = append(client, s.clientCPU.Seconds()*1e6/float64(s.notes))
			wal = append(wal, float64(s.wal)/float64(s.notes))
			others = append(others, 100*s.othersCPU.Seconds()/s.wall.Seconds())
		}
		s := v.segs[0]
		b.Logf("%-7s %9.0f  %.3f (%.3f-%.3f)  %10.0f  %14.0f  %10.0f  %11.2f  %9.2f  %3.0f%%, %3.0f%%", v.name, median(rates), median(ratios),
			slices.Min(ratios), slices.Max(ratios), median(pg), median(client), median(wal),
			float64(s.events)/float64(s.notes), float64(s.jobs)/float64(s.notes), median(others), slices.Max(others))
		b.ReportMetric(median(rates), "notes/s_"+v.name)
		b.ReportMetric(median(ratios), "ratio_"+v.name)
		b.ReportMetric(median(pg), "pg-µs/note_"+v.name)
		b.ReportMetric(median(wal), "WAL-B/note_"+v.name)
	}
}

type benchConfig struct{ rounds, batches, size, flushers int }

// variant is one way of ingesting, on a schema of its own.
type variant struct {
	name   string
	db     *postgres.DB
	outbox postgres.BenchOutbox
	jobs   func(events int) int // river jobs per batch
	segs   []segment
	total  segment // every segment's, the warm-up's too
}

// endpoints is how many webhook endpoints take every event (C, Cp).
const endpoints = 2

// deliveryArgs is a river job delivering one event to one endpoint: the
// event is carried whole, as the envelope the receiver is sent.
type deliveryArgs struct {
	EndpointID int64           `json:"endpoint_id"`
	Event      json.RawMessage `json:"event"`
}

func (deliveryArgs) Kind() string { return "webhook_delivery" }

// deliveryRefArgs is deliveryArgs with the event's key in events instead
// of the event (Cr).
type deliveryRefArgs struct {
	EndpointID int64  `json:"endpoint_id"`
	AppID      string `json:"app_id"`
	NotifyID   string `json:"notify_id"`
	Type       string `json:"type"`
}

func (deliveryRefArgs) Kind() string { return "webhook_delivery" }

// fanoutArgs is a river job making an event's deliveries later (D).
type fanoutArgs struct {
	Event json.RawMessage `json:"event"`
}

func (fanoutArgs) Kind() string { return "webhook_fanout" }

func newVariant(b *testing.B, ctx context.Context, name string) *variant {
	v := &variant{name: name, db: pgtest.New(b), jobs: func(int) int { return 0 }}
	var client *river.Client[pgx.Tx]
	if name == "C" || name == "Cp" || name == "Cr" || name == "D" {
		driver := riverpgxv5.New(v.db.Pool)
		m, err := rivermigrate.New(driver, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			b.Fatalf("river migrations: %v", err)
		}
		// An insert-only client: no queues, no workers.
		client, err = river.NewClient(driver, &river.Config{})
		if err != nil {
			b.Fatal(err)
		}
		// A first insert, rolled back, so that the driver has looked up
		// the server's capabilities before Cp captures statements.
		tx, err := v.db.Pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := client.InsertManyTx(ctx, tx, []river.InsertManyParams{{Args: fanoutArgs{Event: json.RawMessage(`{}`)}}}); err != nil {
			b.Fatal(err)
		}
		_ = tx.Rollback(ctx)
	}
	switch name {
	case "A":
		v.outbox.NoEvents = true
	case "B":
	case "C":
		v.outbox.InTx = func(ctx context.Context, tx pgx.Tx, events []postgres.BenchEvent) error {
			_, err := client.InsertManyTx(ctx, tx, deliveries(events))
			return err
		}
		v.jobs = func(n int) int { return n * endpoints }
	case "Cr":
		v.outbox.InTx = func(ctx context.Context, tx pgx.Tx, events []postgres.BenchEvent) error {
			params := make([]river.InsertManyParams, 0, len(events)*endpoints)
			for _, ev := range events {
				for ep := int64(1); ep <= endpoints; ep++ {
					params = append(params, river.InsertManyParams{Args: deliveryRefArgs{EndpointID: ep, AppID: ev.AppID, NotifyID: ev.NotifyID, Type: ev.Type}})
				}
			}
			_, err := client.InsertManyTx(ctx, tx, params)
			return err
		}
		v.jobs = func(n int) int { return n * endpoints }
	case "Cp":
		v.outbox.Queue = func(batch *pgx.Batch, events []postgres.BenchEvent) error {
			_, err := client.InsertManyTx(ctx, queueTx{batch: batch}, deliveries(events))
			return err
		}
		v.jobs = func(n int) int { return n * endpoints }
	case "D":
		v.outbox.InTx = func(ctx context.Context, tx pgx.Tx, events []postgres.BenchEvent) error {
			params := make([]river.InsertManyParams, len(events))
			for i, ev := range events {
				params[i] = river.InsertManyParams{Args: fanoutArgs{Event: envelope(ev)}}
			}
			_, err := client.InsertManyTx(ctx, tx, params)
			return err
		}
		v.jobs = func(n int) int { return n }
	default:
		b.Fatalf("unknown variant %q (A, B, C, Cp, Cr, D)", name)
	}
	return v
}

// check fails b unless v's schema holds the rows its segments counted.
func (v *variant) check(b *testing.B, ctx context.Context) {
	var notes, events, jobs int
	var river bool
	if err := v.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM notifications), (SELECT count(*) FROM events),
		to_regclass('river_job') IS NOT NULL`).Scan(&notes, &events, &river); err != nil {
		b.Fatal(err)
	}
	if river {
		if err := v.db.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'available'`).Scan(&jobs); err != nil {
			b.Fatal(err)
		}
	}
	wantEvents := v.total.events
	if v.outbox.NoEvents {
		wantEvents = 0
	}
	if notes != v.total.notes || events != wantEvents || jobs != v.total.jobs {
		b.Fatalf("%s: %d notifications, %d events, %d jobs stored; want %d, %d, %d", v.name, notes, events, jobs, v.total.notes, wantEvents, v.total.jobs)
	}
}

// deliveries returns the jobs delivering events to each endpoint.
func deliveries(events []postgres.BenchEvent) []river.InsertManyParams {
	params := make([]river.InsertManyParams, 0, len(events)*endpoints)
	for _, ev := range events {
		env := envelope(ev)
		for ep := int64(1); ep <= endpoints; ep++ {
			params = append(params, river.InsertManyParams{Args: deliveryArgs{EndpointID: ep, Event: env}})
		}
	}
	return params
}

// envelope is ev as a webhook carries it.
func envelope(ev postgres.BenchEvent) json.RawMessage {
	b, err := json.Marshal(struct {
		Type       string          `json:"type"`
		AppID      string          `json:"app_id"`
		NotifyID   string          `json:"notify_id"`
		OccurredAt time.Time       `json:"occurred_at"`
		Data       json.RawMessage `json:"data"`
	}{ev.Type, ev.AppID, ev.NotifyID, ev.OccurredAt, ev.Data})
	if err != nil {
		panic(err)
	}
	return b
}

// queueTx is a pgx.Tx that queues the statements it is given in a batch,
// answering no rows: river's InsertManyTx given it sends its statements in
// the intake's batch, where their rows are read and dropped.
type queueTx struct {
	pgx.Tx // nil: river's insert uses only Query and Exec
	batch  *pgx.Batch
}

func (t queueTx) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	t.batch.Queue(sql, args...)
	return noRows{}, nil
}

func (t queueTx) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	t.batch.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

// Conn is nil: river then takes the default query mode, the pool's.
func (t queueTx) Conn() *pgx.Conn { return nil }

func (t queueTx) QueryRow(context.Context, string, ...any) pgx.Row {
	panic("bench: river asked queueTx for a row")
}

type noRows struct{}

func (noRows) Close()                                       {}
func (noRows) Err() error                                   { return nil }
func (noRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (noRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (noRows) Next() bool                                   { return false }
func (noRows) Scan(...any) error                            { return nil }
func (noRows) Values() ([]any, error)                       { return nil, nil }
func (noRows) RawValues() [][]byte                          { return nil }
func (noRows) Conn() *pgx.Conn                              { return nil }
func (noRows) TypeMap() *pgtype.Map                         { return nil }

// segment is one variant's part of a round.
type segment struct {
	notes, events, jobs int
	wall                time.Duration
	pgCPU, clientCPU    time.Duration
	othersCPU           time.Duration // the machine's busy time that is neither
	wal, walStart       int64
	checkpoints         int64
}

func (s segment) rate() float64 { return float64(s.notes) / s.wall.Seconds() }

// segment ingests fresh notifications with cfg.flushers batches in flight.
func (v *variant) segment(b *testing.B, ctx context.Context, cfg benchConfig, p *probe) segment {
	batches := make(chan []notify.Decided, cfg.flushers*cfg.batches)
	for range cfg.flushers * cfg.batches {
		batches <- auditBatch(b, cfg.size)
	}
	close(batches)
	runtime.GC()
	before := p.sample(b, ctx)
	start := time.Now()
	var (
		mu  sync.Mutex
		s   segment
		wg  sync.WaitGroup
		bad error
	)
	for range cfg.flushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ds := range batches {
				n, ev, err := v.db.IngestBench(ctx, ds, v.outbox)
				mu.Lock()
				s.notes, s.events, s.jobs = s.notes+n, s.events+ev, s.jobs+v.jobs(ev)
				if err != nil && bad == nil {
					bad = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.wall = time.Since(start)
	if bad != nil {
		b.Fatalf("%s: %v", v.name, bad)
	}
	after := p.sample(b, ctx)
	s.pgCPU, s.clientCPU = after.pg-before.pg, after.client-before.client
	s.othersCPU = max(0, after.busy-before.busy-s.pgCPU-s.clientCPU)
	s.walStart, s.wal, s.checkpoints = before.wal, after.wal-before.wal, after.checkpoints-before.checkpoints
	return s
}

// benchSeq numbers the benchmark's mini-apps.
var benchSeq atomic.Int64

// auditBatch returns n decided audit notifications, each of a mini-app and
// version of its own (so each applies, and writes its two events), rejected
// with reasons or passed, with the parameters Alipay sends.
func auditBatch(b *testing.B, n int) []notify.Decided {
	ns := make([]*notify.Notification, n)
	for i := range ns {
		k := benchSeq.Add(1)
		miniApp := fmt.Sprintf("2021%012d", k)
		var n *notify.Notification
		if k%2 == 0 {
			n = testkit.Note(notify.MethodAuditRejected, fmt.Sprintf(`{"mini_app_id":"%s","mini_app_version":"0.1.%d","bundle_id":"com.alipay.alipaywallet","audit_reason":"小程序首页存在诱导分享行为，请修改后重新提交","base_audit":"REJECT","promote_audit":"REJECT","base_audit_reason":{"audit_images":["https://mdn.alipayobjects.com/audit/%d/a.png","https://mdn.alipayobjects.com/audit/%d/b.png"],"memos":[{"memo":"服务类目与实际经营内容不符","memo_image_list":["https://mdn.alipayobjects.com/audit/%d/m.png"]}]},"promote_audit_reason":{"memos":[{"memo":"营销页面缺少活动规则"}]}}`, miniApp, k, k, k, k), time.Now().UnixMilli())
		} else {
			n = testkit.Note(notify.MethodAuditPassed, fmt.Sprintf(`{"mini_app_id":"%s","mini_app_version":"0.1.%d","bundle_id":"com.alipay.alipaywallet","base_audit":"PASS","promote_audit":"PASS"}`, miniApp, k), time.Now().UnixMilli())
		}
		n.Params["app_id"] = n.AppID
		n.Params["notify_id"] = n.NotifyID
		n.Params["utc_timestamp"] = strconv.FormatInt(n.UTCTimestamp, 10)
		n.Params["version"] = "1.1"
		n.Params["charset"] = "utf-8"
		n.Params["sign_type"] = "RSA2"
		n.Params["sign"] = strings.Repeat("Qk9HVVNTSUdOQVRVUkU", 19)[:344] // an RSA2 (2048-bit) signature's length
		ns[i] = n
	}
	return decide(b, ns...)
}

// probe samples what a segment costs: CPU of the Postgres server (when it
// runs on this machine) and of this process, the machine's busy time, WAL
// written, checkpoints.
type probe struct {
	db         *postgres.DB
	postmaster int // 0 when the server's processes cannot be read
}

type sample struct {
	pg, client, busy time.Duration
	wal, checkpoints int64
}

func newProbe(b *testing.B, ctx context.Context, db *postgres.DB) *probe {
	p := &probe{db: db}
	var backend int
	if err := db.Pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		b.Fatal(err)
	}
	if st, err := procStat(backend); err == nil {
		p.postmaster = st.ppid
	} else {
		b.Logf("no Postgres CPU: %v", err)
	}
	return p
}

// clockTick is USER_HZ, the unit of /proc's CPU times.
const clockTick = 10 * time.Millisecond

func (p *probe) sample(b *testing.B, ctx context.Context) sample {
	var s sample
	if err := p.db.Pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint,
		(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)`).Scan(&s.wal, &s.checkpoints); err != nil {
		b.Fatal(err)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if p.postmaster != 0 {
		entries, _ := os.ReadDir("/proc")
		var ticks int64
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			st, err := procStat(pid)
			if err != nil {
				continue
			}
			switch {
			case pid == p.postmaster: // with its reaped children (backends and workers gone)
				ticks += st.utime + st.stime + st.cutime + st.cstime
			case st.ppid == p.postmaster:
				ticks += st.utime + st.stime
			}
		}
		s.pg = time.Duration(ticks) * clockTick
	}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, x := range f[1:min(len(f), 9)] {
			if i == 3 || i == 4 { // idle, iowait
				continue
			}
			n, _ := strconv.ParseInt(x, 10, 64)
			s.busy += time.Duration(n) * clockTick
		}
	}
	return s
}

// procStatus is what the benchmark reads of /proc/PID/stat.
type procStatus struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

func procStat(pid int) (procStatus, error) {
	var out procStatus
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return out, err
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return out, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	f := strings.Fields(string(data[i+1:])) // from field 3, state
	if len(f) < 15 {
		return out, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	out.ppid, _ = strconv.Atoi(f[1])
	out.utime, _ = strconv.ParseInt(f[11], 10, 64)
	out.stime, _ = strconv.ParseInt(f[12], 10, 64)
	out.cutime, _ = strconv.ParseInt(f[13], 10, 64)
	out.cstime, _ = strconv.ParseInt(f[14], 10, 64)
	return out, nil
}

// lsn writes a WAL position as Postgres does.
func lsn(pos int64) string { return fmt.Sprintf("%X/%X", uint64(pos)>>32, uint32(pos)) }

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

func envString(name, def string) string {
	if s := os.Getenv(name); s != "" {
		return s
	}
	return def
}
