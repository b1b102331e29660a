package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// reconcileMetrics are reconciliation's series (internal/reconcile).
type reconcileMetrics struct {
	reconcileRuns    *prometheus.CounterVec
	reconcileChecks  *prometheus.CounterVec
	reconcileRepairs *prometheus.CounterVec
	reconcileErrors  *prometheus.CounterVec
}

// registerReconcile makes and registers m's reconciliation series.
func (m *Metrics) registerReconcile() {
	m.reconcile = reconcileMetrics{
		reconcileRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_runs_total",
			Help: "Reconciliation runs this replica started, by trigger (schedule, outage, manual)."}, []string{"trigger"}),
		reconcileChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_checks_total",
			Help: "Entities this replica compared with Alipay's answer, by kind (authorization, mini_app_version)."}, []string{"kind"}),
		reconcileRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_repairs_total",
			Help: "Repairs of state that differed from Alipay's answer (a notification was lost), by kind (authorization, mini_app_version)."},
			[]string{"kind"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reconcile_errors_total",
			Help: "Checks that changed nothing for want of a trustworthy answer, by kind (business_error, invalid_token, rate_limited, upstream_error, unknown_status, no_token, abandoned, foreign, token_changed)."},
			[]string{"kind"}),
	}
	m.Registry.MustRegister(m.reconcile.reconcileRuns, m.reconcile.reconcileChecks, m.reconcile.reconcileRepairs, m.reconcile.reconcileErrors)
}

// ReconcileRun counts a run started, by its trigger.
func (m *Metrics) ReconcileRun(trigger string) {
	if m != nil {
		m.reconcile.reconcileRuns.WithLabelValues(trigger).Inc()
	}
}

// ReconcileCheck counts an entity compared with Alipay's answer.
func (m *Metrics) ReconcileCheck(kind string) {
	if m != nil {
		m.reconcile.reconcileChecks.WithLabelValues(kind).Inc()
	}
}

// ReconcileRepair counts a repair.
func (m *Metrics) ReconcileRepair(kind string) {
	if m != nil {
		m.reconcile.reconcileRepairs.WithLabelValues(kind).Inc()
	}
}

// ReconcileError counts a check that changed nothing.
func (m *Metrics) ReconcileError(kind string) {
	if m != nil {
		m.reconcile.reconcileErrors.WithLabelValues(kind).Inc()
	}
}

// refusedGenuine are the refusal reasons a genuine delivery from Alipay
// gets when the gateway is at fault (its database, its keys or certs, its
// token key, a restart): a period of them with nothing accepted is an
// outage. Malformed requests are no sign of one.
var refusedGenuine = map[string]bool{"database_unavailable": true, "bad_signature": true, "unknown_cert_sn": true,
	"cert_expired": true, "unknown_app": true, "token_key_missing": true, "shutting_down": true, "timeout": true}

// DeliveryTotals returns the deliveries answered success so far, and
// those refused for a reason that a genuine notification meets when the
// gateway is at fault, for the reconciler's outage detector; zeros on a
// nil *Metrics.
func (m *Metrics) DeliveryTotals() (accepted, refused float64) {
	if m == nil {
		return 0, 0
	}
	accepted = sum(m.notifications, nil)
	refused = sum(m.refusals, func(labels []*dto.LabelPair) bool {
		for _, l := range labels {
			if l.GetName() == "reason" {
				return refusedGenuine[l.GetValue()]
			}
		}
		return false
	})
	return accepted, refused
}

// sum adds up the counters of v whose labels keep accepts (all when nil).
func sum(v *prometheus.CounterVec, keep func([]*dto.LabelPair) bool) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		v.Collect(ch)
		close(ch)
	}()
	total := 0.0
	for metric := range ch {
		var d dto.Metric
		if metric.Write(&d) != nil || keep != nil && !keep(d.GetLabel()) {
			continue
		}
		total += d.GetCounter().GetValue()
	}
	return total
}
