package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/alipay-notify-gateway/gateway/internal/loadtest"
)

// The figures each scenario gathers, and its verdict from them. Nothing in
// this file touches a process or the database: the scenarios fill these in
// and print their String, after PASS or FAIL as pass says.

// verdict is one scenario's line: "PASS kill9: <figures>".
type verdict struct {
	name    string
	pass    bool
	figures string
}

func (v verdict) String() string {
	word := "FAIL"
	if v.pass {
		word = "PASS"
	}
	return word + " " + v.name + ": " + v.figures
}

// figures are a scenario's figures with their verdict.
type figures interface {
	pass() bool
	String() string
}

func judge(name string, f figures) verdict { return verdict{name, f.pass(), f.String()} }

// loadFigures are one load run's: its first pass, its check, and its exit
// status as loadgen would exit.
type loadFigures struct {
	Sent, Acked   int
	Failed        map[string]int // by outcome: HTTP status or conn_error
	PerSecond     float64
	AckedAfter    int      // acknowledged after the last failure
	FirstFailureS *float64 // seconds since the pass started
	LastFailureS  *float64
	StoredUnacked int // from the check: stored though never acknowledged
	Exit          int
}

// figuresOf reads a run's figures from its report and error; allow says
// whether deliveries not acknowledged were expected (loadgen's
// -allow-failures).
func figuresOf(rep *loadtest.Report, err error, allow bool) loadFigures {
	var f loadFigures
	f.Exit = loadtest.ExitFailed
	if rep == nil {
		return f
	}
	if err == nil {
		f.Exit = rep.Exit(allow)
	}
	if len(rep.Passes) > 0 {
		s := rep.Passes[0]
		f.Sent, f.Acked, f.Failed, f.PerSecond = s.Sent, s.Acked, s.Failed, s.PerSecond
		f.AckedAfter, f.FirstFailureS, f.LastFailureS = s.AckedAfter, s.FirstFailureS, s.LastFailureS
	}
	if rep.Check != nil {
		f.StoredUnacked = rep.Check.StoredUnacked
	}
	return f
}

// unacked is how many deliveries were not acknowledged.
func (f loadFigures) unacked() int { return f.Sent - f.Acked }

// failedOther counts the failures other than 503.
func (f loadFigures) failedOther() int {
	n := 0
	for k, v := range f.Failed {
		if k != "503" {
			n += v
		}
	}
	return n
}

// window is when the failures happened, "6.1s..10.2s" (tenths, rounded
// down), or "none".
func (f loadFigures) window() string {
	if f.FirstFailureS == nil || f.LastFailureS == nil {
		return "none"
	}
	return tenths(*f.FirstFailureS) + "s.." + tenths(*f.LastFailureS) + "s"
}

func tenths(s float64) string { return strconv.FormatFloat(math.Floor(s*10)/10, 'f', -1, 64) }

// inboxFigures are the inbox rows of a run's notifications (by prefix).
type inboxFigures struct {
	Rows, Distinct int
	Deliveries     int // sum of delivery_count
	MinDeliveries  int
	MaxDeliveries  int
}

// historyFigures are the history rows of a run's notifications: one
// expected per stored audit or order notification (applied or stale).
type historyFigures struct {
	Expected, Rows, Distinct int
}

func (h historyFigures) ok() bool { return h.Rows == h.Expected && h.Distinct == h.Expected }

// kill9Figures: the gateway killed with SIGKILL during a run of N, then a
// resend of all N after a restart.
type kill9Figures struct {
	N      int
	AtKill int64 // acknowledgements counted by the gateway when it was killed
	During loadFigures
	Resend loadFigures
	Inbox  inboxFigures
}

// pass: the run during the kill lost nothing acknowledged (its check
// passed), some were acknowledged and some not; the resend was all
// acknowledged and left exactly one row per notification.
func (f kill9Figures) pass() bool {
	return f.During.Exit == 0 && f.Resend.Exit == 0 && f.During.Acked > 0 && f.During.unacked() > 0 &&
		f.Resend.Acked == f.N && f.Inbox.Rows == f.N && f.Inbox.Distinct == f.N && f.Inbox.MinDeliveries >= 1
}

func (f kill9Figures) String() string {
	return fmt.Sprintf("killed after %d acks; during the run %d acknowledged, all stored (loadgen check exit %d), "+
		"%d not acknowledged of which %d were stored anyway; resend after restart: %d/%d acknowledged (exit %d); "+
		"inbox %d rows, %d distinct, delivery_count %d..%d (sum %d)",
		f.AtKill, f.During.Acked, f.During.Exit, f.During.unacked(), f.During.StoredUnacked, f.Resend.Acked, f.N,
		f.Resend.Exit, f.Inbox.Rows, f.Inbox.Distinct, f.Inbox.MinDeliveries, f.Inbox.MaxDeliveries, f.Inbox.Deliveries)
}

// pgrestartFigures: Postgres stopped and started during a steady run of
// N, then a resend of all N.
type pgrestartFigures struct {
	N       int
	During  loadFigures
	Readyz  string // what /readyz answered after the run
	Resend  loadFigures
	Inbox   inboxFigures
	History historyFigures
}

// pass: nothing acknowledged was lost; there were 503s, then
// acknowledgements again; the resend was all acknowledged; one inbox row
// and one history row per notification.
func (f pgrestartFigures) pass() bool {
	return f.During.Exit == 0 && f.Resend.Exit == 0 && f.During.Failed["503"] > 0 && f.During.AckedAfter > 0 &&
		f.Resend.Acked == f.N && f.Inbox.Rows == f.N && f.Inbox.Distinct == f.N && f.History.ok()
}

func (f pgrestartFigures) String() string {
	return fmt.Sprintf("during the run %d acknowledged, all stored (exit %d); failed: %d × 503 and %d other, in %s, "+
		"then %d acknowledged; readyz after: %s; resend: %d/%d acknowledged (exit %d); inbox %d rows, %d distinct, "+
		"delivery_count %d..%d; history %d rows, %d distinct, %d expected",
		f.During.Acked, f.During.Exit, f.During.Failed["503"], f.During.failedOther(), f.During.window(),
		f.During.AckedAfter, strings.ReplaceAll(f.Readyz, "\n", ""), f.Resend.Acked, f.N, f.Resend.Exit,
		f.Inbox.Rows, f.Inbox.Distinct, f.Inbox.MinDeliveries, f.Inbox.MaxDeliveries,
		f.History.Rows, f.History.Distinct, f.History.Expected)
}

// replicasSameFigures: the same N notifications sent to gateways A and B at
// once.
type replicasSameFigures struct {
	N       int
	A, B    loadFigures
	Inbox   inboxFigures
	History historyFigures
}

// pass: one inbox row per notification, delivered twice, and one history
// row.
func (f replicasSameFigures) pass() bool {
	return f.A.Exit == 0 && f.B.Exit == 0 && f.Inbox.Rows == f.N && f.Inbox.Distinct == f.N &&
		f.Inbox.MinDeliveries == 2 && f.Inbox.MaxDeliveries == 2 && f.History.ok()
}

func (f replicasSameFigures) String() string {
	return fmt.Sprintf("same %d to A and B: exit %d/%d; inbox %d rows, %d distinct, delivery_count %d..%d (sum %d of %d); "+
		"history %d rows, %d distinct, %d expected",
		f.N, f.A.Exit, f.B.Exit, f.Inbox.Rows, f.Inbox.Distinct, f.Inbox.MinDeliveries, f.Inbox.MaxDeliveries,
		f.Inbox.Deliveries, 2*f.N, f.History.Rows, f.History.Distinct, f.History.Expected)
}

// replicasPairsFigures: Pairs pairs about one mini-app each, audit.passed
// (newer) to A and audit.rejected (older) to B, at once.
type replicasPairsFigures struct {
	Pairs int
	A, B  loadFigures
	Apps  int // mini-apps the pairs are about
	// Newest counts the mini-apps in the newest state: audit_passed, set by
	// A's notification.
	Newest int
	// Late and Early count the pairs whose older notification reached its
	// gateway after the newer one, and before it.
	Late, Early int
}

// pass: every mini-app ends in the newest state, whichever arrived first.
func (f replicasPairsFigures) pass() bool {
	return f.A.Exit == 0 && f.B.Exit == 0 && f.Apps == f.Pairs && f.Newest == f.Pairs
}

func (f replicasPairsFigures) String() string {
	return fmt.Sprintf("%d pairs: exit %d/%d; %d mini-apps, %d in the newest state (audit_passed from A); "+
		"the older (B) reached its gateway after the newer for %d pairs, before it for %d",
		f.Pairs, f.A.Exit, f.B.Exit, f.Apps, f.Newest, f.Late, f.Early)
}

// memSample is the gateway's memory at one moment.
type memSample struct {
	RSSKB      int64 // resident set size, kB
	HeapInuse  int64 // go_memstats_heap_inuse_bytes
	Goroutines int64 // go_goroutines
}

// steadyFigures: Rate notifications a second for a while.
type steadyFigures struct {
	Rate       float64 // what was asked
	Load       loadFigures
	Start, End memSample
	PeakRSSKB  int64 // the highest RSS sampled, at start, every 10 s of the load, and at end
}

// pass: everything acknowledged, at no less than 95 % of the rate asked
// (whole notifications a second), and no more than 10 goroutines left
// over.
func (f steadyFigures) pass() bool {
	return f.Load.Exit == 0 && f.Load.Acked == f.Load.Sent && math.Floor(f.Load.PerSecond)*100 >= f.Rate*95 &&
		f.End.Goroutines <= f.Start.Goroutines+10
}

func (f steadyFigures) String() string {
	return fmt.Sprintf("%d/%d acknowledged at %.0f/s (exit %d); RSS %d MiB at start, %d MiB peak, %d MiB at end; "+
		"heap in use %d -> %d MiB; goroutines %d -> %d",
		f.Load.Acked, f.Load.Sent, math.Floor(f.Load.PerSecond), f.Load.Exit, f.Start.RSSKB/1024, f.PeakRSSKB/1024,
		f.End.RSSKB/1024, f.Start.HeapInuse/(1<<20), f.End.HeapInuse/(1<<20), f.Start.Goroutines, f.End.Goroutines)
}

// runLine is a run's figures on one line, for people: each pass, then the
// check, then the error if any.
func runLine(rep *loadtest.Report, err error) string {
	var parts []string
	if rep != nil {
		for _, s := range rep.Passes {
			parts = append(parts, fmt.Sprintf("%s acked %d/%d failed %s %.0f/s p99 %sms", s.Pass, s.Acked, s.Sent,
				loadtest.CountsString(s.Failed), math.Floor(s.PerSecond), strconv.FormatFloat(s.P99, 'f', -1, 64)))
		}
		if c := rep.Check; c != nil {
			parts = append(parts, fmt.Sprintf("check missing %d doubled %d stored-unacked %d effects-missing %d effects-doubled %d delivery_count %s",
				c.Missing, c.Doubled, c.StoredUnacked, c.EffectsMissing, c.EffectsDoubled, loadtest.CountsString(c.DeliveryCounts)))
		}
	}
	if err != nil {
		parts = append(parts, "error: "+err.Error())
	}
	if len(parts) == 0 {
		return "nothing sent"
	}
	return strings.Join(parts, "; ")
}

// webhookDBFigures are the database's side of the webhooks scenario.
type webhookDBFigures struct {
	Events int // rows in events
	// Deliveries counts the rows of webhook_deliveries, then by status;
	// MaxAttempts is the most attempts one took.
	Deliveries, Delivered, Pending, Dead, MaxAttempts int
	// Attempts counts the rows of webhook_attempts, then those answered
	// 5xx, with no answer within the timeout, refused (no listener), and
	// with no answer otherwise (a connection closed, reset).
	Attempts, Attempts5xx, TimedOut, Refused, OtherNoAnswer int
}

// webhooksFigures: two replicas dispatching to one endpoint, a receiver
// that fails, through a kill -9 of one, a restart of the receiver and one
// of Postgres.
type webhooksFigures struct {
	A, B     loadFigures // the loads to each replica
	DB       webhookDBFigures
	Receiver loadtest.ReceiverStats
	// Missing counts the events the receiver never got, Extra the
	// webhook-ids it got that are no event's.
	Missing, Extra int
	// InFlightAtKill is how many deliveries the receiver was answering
	// when B was killed.
	InFlightAtKill int
	// SettledS is when every event was delivered, in seconds after the
	// load; nil when not within the wait.
	SettledS *float64
}

// duplicates is how many deliveries repeated a webhook-id received before.
func (f webhooksFigures) duplicates() int { return f.Receiver.Deliveries - f.Receiver.Distinct }

// pass: nothing acknowledged was lost (the loads' checks); every event
// reached the receiver, verified, and nothing else did; a repeated
// webhook-id always came with the same body; every delivery is delivered,
// none pending or dead; and the faults happened: 500s and late answers
// injected, attempts refused while the receiver was away, deliveries in
// flight when B was killed.
func (f webhooksFigures) pass() bool {
	return f.A.Exit == 0 && f.B.Exit == 0 && f.DB.Events > 0 && f.SettledS != nil && f.Missing == 0 && f.Extra == 0 &&
		f.Receiver.Rejected == 0 && f.Receiver.Differing == 0 &&
		f.DB.Deliveries == f.DB.Events && f.DB.Delivered == f.DB.Events && f.DB.Pending == 0 && f.DB.Dead == 0 &&
		f.Receiver.Failed > 0 && f.Receiver.Slow > 0 && f.DB.Refused > 0 && f.InFlightAtKill > 0
}

func (f webhooksFigures) String() string {
	settled := "not all delivered within the wait"
	if f.SettledS != nil {
		settled = "all delivered " + tenths(*f.SettledS) + "s after the load"
	}
	return fmt.Sprintf("%d events, %d received (%d deliveries: %d duplicates, %d with another body), %d missing, %d unknown, "+
		"%d refused by the receiver's check; %s; webhook_deliveries %d: %d delivered, %d pending, %d dead, at most %d attempts; "+
		"attempts %d: %d × 5xx, %d timed out, %d refused, %d other without an answer; injected %d × 500 and %d late; "+
		"B killed with %d in flight; loads A %d/%d acknowledged (exit %d), B %d/%d (exit %d)",
		f.DB.Events, f.Receiver.Distinct, f.Receiver.Deliveries, f.duplicates(), f.Receiver.Differing, f.Missing, f.Extra,
		f.Receiver.Rejected, settled, f.DB.Deliveries, f.DB.Delivered, f.DB.Pending, f.DB.Dead, f.DB.MaxAttempts,
		f.DB.Attempts, f.DB.Attempts5xx, f.DB.TimedOut, f.DB.Refused, f.DB.OtherNoAnswer, f.Receiver.Failed, f.Receiver.Slow,
		f.InFlightAtKill, f.A.Acked, f.A.Sent, f.A.Exit, f.B.Acked, f.B.Sent, f.B.Exit)
}
