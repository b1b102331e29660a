package main

import (
	"errors"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/loadtest"
)

func ptr(f float64) *float64 { return &f }

// The figures of a passing run of each scenario, and the line each prints
// (make soak's lines as the README shows them).
func passingKill9() kill9Figures {
	return kill9Figures{N: 10000, AtKill: 3960,
		During: loadFigures{Sent: 10000, Acked: 3999, Failed: map[string]int{"conn_error": 6001}, StoredUnacked: 11},
		Resend: loadFigures{Sent: 10000, Acked: 10000},
		Inbox:  inboxFigures{Rows: 10000, Distinct: 10000, Deliveries: 14010, MinDeliveries: 1, MaxDeliveries: 2}}
}

func passingPgrestart() pgrestartFigures {
	return pgrestartFigures{N: 5000,
		During: loadFigures{Sent: 5000, Acked: 4165, Failed: map[string]int{"503": 835}, AckedAfter: 2943,
			FirstFailureS: ptr(6.17), LastFailureS: ptr(10.29)},
		Readyz:  "ready",
		Resend:  loadFigures{Sent: 5000, Acked: 5000},
		Inbox:   inboxFigures{Rows: 5000, Distinct: 5000, Deliveries: 5835, MinDeliveries: 1, MaxDeliveries: 2},
		History: historyFigures{Expected: 3575, Rows: 3575, Distinct: 3575}}
}

func passingReplicasSame() replicasSameFigures {
	return replicasSameFigures{N: 10000, A: loadFigures{Sent: 10000, Acked: 10000}, B: loadFigures{Sent: 10000, Acked: 10000},
		Inbox:   inboxFigures{Rows: 10000, Distinct: 10000, Deliveries: 20000, MinDeliveries: 2, MaxDeliveries: 2},
		History: historyFigures{Expected: 7213, Rows: 7213, Distinct: 7213}}
}

func passingReplicasPairs() replicasPairsFigures {
	return replicasPairsFigures{Pairs: 2000, A: loadFigures{Sent: 2000, Acked: 2000}, B: loadFigures{Sent: 2000, Acked: 2000},
		Apps: 2000, Newest: 2000, Late: 1972, Early: 28}
}

func passingSteady() steadyFigures {
	return steadyFigures{Rate: 200, Load: loadFigures{Sent: 12000, Acked: 12000, PerSecond: 200.4},
		Start: memSample{RSSKB: 17 * 1024, HeapInuse: 10<<20 + 5, Goroutines: 15}, PeakRSSKB: 37*1024 + 900,
		End: memSample{RSSKB: 37*1024 + 100, HeapInuse: 11 << 20, Goroutines: 15}}
}

func passingWebhooks() webhooksFigures {
	return webhooksFigures{
		A: loadFigures{Sent: 3000, Acked: 2890, Failed: map[string]int{"503": 110}},
		B: loadFigures{Sent: 3000, Acked: 2500, Failed: map[string]int{"503": 110, "conn_error": 390}},
		DB: webhookDBFigures{Events: 11000, Deliveries: 11000, Delivered: 11000, MaxAttempts: 5,
			Attempts: 14100, Attempts5xx: 2700, TimedOut: 260, Refused: 120, OtherNoAnswer: 20},
		Receiver:       loadtest.ReceiverStats{Distinct: 11000, Deliveries: 11420, Failed: 2700, Slow: 260},
		InFlightAtKill: 6, SettledS: ptr(95.27)}
}

func TestFigures_String(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		f    figures
		want string
	}{
		{"kill9", passingKill9(), "killed after 3960 acks; during the run 3999 acknowledged, all stored (loadgen check exit 0), " +
			"6001 not acknowledged of which 11 were stored anyway; resend after restart: 10000/10000 acknowledged (exit 0); " +
			"inbox 10000 rows, 10000 distinct, delivery_count 1..2 (sum 14010)"},
		{"pgrestart", passingPgrestart(), "during the run 4165 acknowledged, all stored (exit 0); failed: 835 × 503 and 0 other, " +
			"in 6.1s..10.2s, then 2943 acknowledged; readyz after: ready; resend: 5000/5000 acknowledged (exit 0); " +
			"inbox 5000 rows, 5000 distinct, delivery_count 1..2; history 3575 rows, 3575 distinct, 3575 expected"},
		{"replicas-same", passingReplicasSame(), "same 10000 to A and B: exit 0/0; inbox 10000 rows, 10000 distinct, " +
			"delivery_count 2..2 (sum 20000 of 20000); history 7213 rows, 7213 distinct, 7213 expected"},
		{"replicas-pairs", passingReplicasPairs(), "2000 pairs: exit 0/0; 2000 mini-apps, 2000 in the newest state " +
			"(audit_passed from A); the older (B) reached its gateway after the newer for 1972 pairs, before it for 28"},
		{"webhooks", passingWebhooks(), "11000 events, 11000 received (11420 deliveries: 420 duplicates, 0 with another body), " +
			"0 missing, 0 unknown, 0 refused by the receiver's check; all delivered 95.2s after the load; webhook_deliveries 11000: " +
			"11000 delivered, 0 pending, 0 dead, at most 5 attempts; attempts 14100: 2700 × 5xx, 260 timed out, 120 refused, " +
			"20 other without an answer; injected 2700 × 500 and 260 late; B killed with 6 in flight; loads A 2890/3000 " +
			"acknowledged (exit 0), B 2500/3000 (exit 0)"},
		{"steady", passingSteady(), "12000/12000 acknowledged at 200/s (exit 0); RSS 17 MiB at start, 37 MiB peak, " +
			"37 MiB at end; heap in use 10 -> 11 MiB; goroutines 15 -> 15"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := judge(tc.name, tc.f)
			if want := "PASS " + tc.name + ": " + tc.want; v.String() != want {
				t.Errorf("got  %s\nwant %s", v, want)
			}
		})
	}
}

// TestFigures_Pass: each condition of each verdict, broken alone, fails it.
func TestFigures_Pass(t *testing.T) {
	t.Parallel()
	type tc struct {
		name string
		f    figures
		want bool
	}
	var cases []tc
	add := func(name string, want bool, f figures) { cases = append(cases, tc{name, f, want}) }

	add("OKKill9", true, passingKill9())
	for name, change := range map[string]func(*kill9Figures){
		"ErrKill9DuringCheck":   func(f *kill9Figures) { f.During.Exit = loadtest.ExitFailed },
		"ErrKill9ResendExit":    func(f *kill9Figures) { f.Resend.Exit = loadtest.ExitNotAcked },
		"ErrKill9NothingAcked":  func(f *kill9Figures) { f.During.Acked = 0 },
		"ErrKill9AllAcked":      func(f *kill9Figures) { f.During.Acked = f.During.Sent },
		"ErrKill9ResendMissing": func(f *kill9Figures) { f.Resend.Acked = f.N - 1 },
		"ErrKill9RowMissing":    func(f *kill9Figures) { f.Inbox.Rows = f.N - 1 },
		"ErrKill9RowDoubled":    func(f *kill9Figures) { f.Inbox.Rows, f.Inbox.Distinct = f.N+1, f.N },
		"ErrKill9NoDelivery":    func(f *kill9Figures) { f.Inbox.MinDeliveries = 0 },
	} {
		f := passingKill9()
		change(&f)
		add(name, false, f)
	}

	add("OKPgrestart", true, passingPgrestart())
	for name, change := range map[string]func(*pgrestartFigures){
		"ErrPgrestartDuringCheck":    func(f *pgrestartFigures) { f.During.Exit = loadtest.ExitFailed },
		"ErrPgrestartResendExit":     func(f *pgrestartFigures) { f.Resend.Exit = loadtest.ExitFailed },
		"ErrPgrestartNo503":          func(f *pgrestartFigures) { f.During.Failed = map[string]int{"conn_error": 835} },
		"ErrPgrestartNoSuccessAfter": func(f *pgrestartFigures) { f.During.AckedAfter = 0 },
		"ErrPgrestartResendMissing":  func(f *pgrestartFigures) { f.Resend.Acked = f.N - 1 },
		"ErrPgrestartRowMissing":     func(f *pgrestartFigures) { f.Inbox.Rows, f.Inbox.Distinct = f.N-1, f.N-1 },
		"ErrPgrestartRowDoubled":     func(f *pgrestartFigures) { f.Inbox.Rows = f.N + 1 },
		"ErrPgrestartEffectMissing":  func(f *pgrestartFigures) { f.History.Rows, f.History.Distinct = 3574, 3574 },
		"ErrPgrestartEffectDoubled":  func(f *pgrestartFigures) { f.History.Rows = 3576 },
	} {
		f := passingPgrestart()
		change(&f)
		add(name, false, f)
	}

	add("OKReplicasSame", true, passingReplicasSame())
	for name, change := range map[string]func(*replicasSameFigures){
		"ErrReplicasSameExitA":     func(f *replicasSameFigures) { f.A.Exit = loadtest.ExitFailed },
		"ErrReplicasSameExitB":     func(f *replicasSameFigures) { f.B.Exit = loadtest.ExitNotAcked },
		"ErrReplicasSameRows":      func(f *replicasSameFigures) { f.Inbox.Rows = f.N + 1 },
		"ErrReplicasSameDistinct":  func(f *replicasSameFigures) { f.Inbox.Distinct = f.N - 1 },
		"ErrReplicasSameOnce":      func(f *replicasSameFigures) { f.Inbox.MinDeliveries = 1 },
		"ErrReplicasSameThrice":    func(f *replicasSameFigures) { f.Inbox.MaxDeliveries = 3 },
		"ErrReplicasSameEffects":   func(f *replicasSameFigures) { f.History.Rows = f.History.Expected + 1 },
		"ErrReplicasSameNoEffects": func(f *replicasSameFigures) { f.History.Distinct = f.History.Expected - 1 },
	} {
		f := passingReplicasSame()
		change(&f)
		add(name, false, f)
	}

	add("OKReplicasPairsAllEarly", true, func() figures { f := passingReplicasPairs(); f.Late, f.Early = 0, 2000; return f }())
	for name, change := range map[string]func(*replicasPairsFigures){
		"ErrReplicasPairsExitA":  func(f *replicasPairsFigures) { f.A.Exit = loadtest.ExitFailed },
		"ErrReplicasPairsExitB":  func(f *replicasPairsFigures) { f.B.Exit = loadtest.ExitFailed },
		"ErrReplicasPairsApps":   func(f *replicasPairsFigures) { f.Apps = f.Pairs - 1 },
		"ErrReplicasPairsOlder":  func(f *replicasPairsFigures) { f.Newest = f.Pairs - 1 },
		"ErrReplicasPairsNoApps": func(f *replicasPairsFigures) { f.Apps, f.Newest = 0, 0 },
	} {
		f := passingReplicasPairs()
		change(&f)
		add(name, false, f)
	}

	add("OKSteady", true, passingSteady())
	add("OKSteadyAt95Percent", true, func() figures { f := passingSteady(); f.Load.PerSecond = 190.9; return f }())
	add("OKSteadyTenGoroutinesMore", true, func() figures { f := passingSteady(); f.End.Goroutines += 10; return f }())
	for name, change := range map[string]func(*steadyFigures){
		"ErrSteadyExit":       func(f *steadyFigures) { f.Load.Exit = loadtest.ExitFailed },
		"ErrSteadyNotAcked":   func(f *steadyFigures) { f.Load.Acked-- },
		"ErrSteadySlow":       func(f *steadyFigures) { f.Load.PerSecond = 189.99 },
		"ErrSteadyGoroutines": func(f *steadyFigures) { f.End.Goroutines = f.Start.Goroutines + 11 },
	} {
		f := passingSteady()
		change(&f)
		add(name, false, f)
	}

	add("OKWebhooks", true, passingWebhooks())
	add("OKWebhooksNoDuplicates", true, func() figures { f := passingWebhooks(); f.Receiver.Deliveries = f.Receiver.Distinct; return f }())
	for name, change := range map[string]func(*webhooksFigures){
		"ErrWebhooksLoadA": func(f *webhooksFigures) { f.A.Exit = loadtest.ExitFailed },
		"ErrWebhooksLoadB": func(f *webhooksFigures) { f.B.Exit = loadtest.ExitFailed },
		"ErrWebhooksNoEvents": func(f *webhooksFigures) {
			f.DB = webhookDBFigures{}
			f.Receiver = loadtest.ReceiverStats{Failed: 1, Slow: 1}
		},
		"ErrWebhooksNotSettled":   func(f *webhooksFigures) { f.SettledS = nil },
		"ErrWebhooksMissing":      func(f *webhooksFigures) { f.Missing = 1 },
		"ErrWebhooksUnknown":      func(f *webhooksFigures) { f.Extra = 1 },
		"ErrWebhooksBadSignature": func(f *webhooksFigures) { f.Receiver.Rejected = 1 },
		"ErrWebhooksOtherBody":    func(f *webhooksFigures) { f.Receiver.Differing = 1 },
		"ErrWebhooksNoDelivery":   func(f *webhooksFigures) { f.DB.Deliveries = f.DB.Events - 1 },
		"ErrWebhooksUndelivered":  func(f *webhooksFigures) { f.DB.Delivered, f.DB.Pending = f.DB.Events-1, 1 },
		"ErrWebhooksDead":         func(f *webhooksFigures) { f.DB.Delivered, f.DB.Dead = f.DB.Events-1, 1 },
		"ErrWebhooksNo500":        func(f *webhooksFigures) { f.Receiver.Failed = 0 },
		"ErrWebhooksNoLate":       func(f *webhooksFigures) { f.Receiver.Slow = 0 },
		"ErrWebhooksNoRefused":    func(f *webhooksFigures) { f.DB.Refused = 0 },
		"ErrWebhooksNoneInFlight": func(f *webhooksFigures) { f.InFlightAtKill = 0 },
	} {
		f := passingWebhooks()
		change(&f)
		add(name, false, f)
	}

	for _, c := range cases {
		if got := c.f.pass(); got != c.want {
			t.Errorf("%s: pass() = %v, want %v (%s)", c.name, got, c.want, c.f)
		}
	}
}

func TestFiguresOf(t *testing.T) {
	t.Parallel()
	rep := &loadtest.Report{
		Passes: []loadtest.Summary{{Pass: "new", Sent: 10, Acked: 7, Failed: map[string]int{"503": 2, "conn_error": 1},
			PerSecond: 3.5, AckedAfter: 4, FirstFailureS: ptr(1.25), LastFailureS: ptr(2)}},
		Check:   &loadtest.Check{Acked: 7, Stored: 7, StoredUnacked: 1},
		Unacked: 3,
	}
	f := figuresOf(rep, nil, true)
	if f.Sent != 10 || f.Acked != 7 || f.unacked() != 3 || f.failedOther() != 1 || f.StoredUnacked != 1 || f.Exit != 0 {
		t.Errorf("figuresOf = %+v", f)
	}
	if w := f.window(); w != "1.2s..2s" {
		t.Errorf("window() = %q, want 1.2s..2s", w)
	}
	if f := figuresOf(rep, nil, false); f.Exit != loadtest.ExitNotAcked {
		t.Errorf("without -allow-failures: exit %d, want %d", f.Exit, loadtest.ExitNotAcked)
	}
	if f := figuresOf(rep, errors.New("boom"), true); f.Exit != loadtest.ExitFailed || f.Acked != 7 {
		t.Errorf("after an error: %+v, want exit %d and the figures so far", f, loadtest.ExitFailed)
	}
	if f := figuresOf(nil, errors.New("boom"), true); f.Exit != loadtest.ExitFailed || f.Sent != 0 {
		t.Errorf("no report: %+v", f)
	}
	if w := (loadFigures{}).window(); w != "none" {
		t.Errorf("window() without failures = %q, want none", w)
	}
}

func TestRunLine(t *testing.T) {
	t.Parallel()
	rep := &loadtest.Report{
		Passes: []loadtest.Summary{{Pass: "new", Sent: 10, Acked: 9, Failed: map[string]int{"conn_error": 1}, PerSecond: 99.9, P99: 5.25}},
		Check:  &loadtest.Check{StoredUnacked: 1, DeliveryCounts: map[int]int{1: 9, 2: 1}},
	}
	want := "new acked 9/10 failed conn_error: 1 99/s p99 5.25ms; check missing 0 doubled 0 stored-unacked 1 " +
		"effects-missing 0 effects-doubled 0 delivery_count 1: 9, 2: 1; error: boom"
	if got := runLine(rep, errors.New("boom")); got != want {
		t.Errorf("runLine =\n%s\nwant\n%s", got, want)
	}
	if got := runLine(nil, nil); got != "nothing sent" {
		t.Errorf("runLine(nil) = %q", got)
	}
}

func TestSumMetric(t *testing.T) {
	t.Parallel()
	text := []byte(`# HELP alipay_gateway_notifications_total Notifications answered success.
# TYPE alipay_gateway_notifications_total counter
alipay_gateway_notifications_total{msg_method="a",outcome="applied"} 3960
alipay_gateway_notifications_total{msg_method="b c",outcome="stale"} 40
alipay_gateway_notifications_total_other 7
go_goroutines 15
go_memstats_heap_inuse_bytes 1.0838016e+07
`)
	for name, want := range map[string]int64{
		"alipay_gateway_notifications_total": 4000,
		"go_goroutines":                      15,
		"go_memstats_heap_inuse_bytes":       10838016,
		"absent":                             0,
	} {
		if got := sumMetric(text, name); got != want {
			t.Errorf("sumMetric(%s) = %d, want %d", name, got, want)
		}
	}
}

func TestDBURL(t *testing.T) {
	t.Parallel()
	got, err := dbURL("postgres://postgres@127.0.0.1:55460/gateway?sslmode=disable", "soak_kill9")
	if want := "postgres://postgres@127.0.0.1:55460/soak_kill9?sslmode=disable"; err != nil || got != want {
		t.Errorf("dbURL = %q, %v; want %q", got, err, want)
	}
}
