package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// batchMetrics are the series of bulk template messages (internal/batchsend).
type batchMetrics struct {
	batchSends    *prometheus.CounterVec
	batchDuration prometheus.Histogram
	batchPending  *prometheus.GaugeVec
	batchIdle     *prometheus.GaugeVec
	batchStopped  *prometheus.CounterVec
	batchPaused   *prometheus.CounterVec
	batchRateWait *prometheus.CounterVec
}

// registerBatches makes and registers the batch series.
func (m *Metrics) registerBatches() {
	m.batchSends = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "template_batch_sends_total",
		Help: "Calls for recipients of template message batches, by ISV app and result (sent; failed: Alipay refused, or retries ran out; unknown: it may have reached Alipay (an unsigned refusal too), sent again only by retry-unknown; skipped: the pre-check found no subscription; retried: not reached Alipay, tried again; rate_limited: Alipay's 40005, tried again; paused: not sent, its batch paused, tried again once resumed; cancelled: not sent, its batch cancelled or stopped during the pre-check)."},
		[]string{"app_id", "result"})
	m.batchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "template_batch_send_duration_seconds",
		Help:    "Time of one call of a batch's recipient to Alipay (a send, or a pre-check query).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}})
	m.batchPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "template_batch_pending",
		Help: "Recipients of running and paused template message batches still to send, by ISV app (sampled)."}, []string{"app_id"})
	m.batchIdle = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "template_batch_idle_seconds",
		Help: "Longest time a running template message batch with recipients left has gone without a send finishing, by ISV app (sampled; 0 when none)."}, []string{"app_id"})
	m.batchStopped = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "template_batch_stopped_total",
		Help: "Template message batches stopped, by reason (authorization_cancelled, template_illegal, template_keywords, insufficient_permissions, app_refused)."},
		[]string{"reason"})
	m.batchPaused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "template_batch_paused_total",
		Help: "Template message batches paused by the sender until an operator resumes them, by reason (merchant_token_expired, merchant_token_missing, unverified_refusal)."},
		[]string{"reason"})
	m.batchRateWait = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "template_batch_rate_wait_seconds_total",
		Help: "Time this replica's batch sender waited for the ISV app's rate limit (TEMPLATE_SEND_RATE), by app."}, []string{"app_id"})
	m.Registry.MustRegister(m.batchSends, m.batchDuration, m.batchPending, m.batchIdle, m.batchStopped, m.batchPaused, m.batchRateWait)
}

// BatchSend counts a call of a batch's recipient, by result; a call made
// (d > 0) is timed.
func (m *Metrics) BatchSend(appID, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.batchSends.WithLabelValues(appID, result).Inc()
	if d > 0 {
		m.batchDuration.Observe(d.Seconds())
	}
}

// BatchUnknown counts n recipients whose claims expired (unknown).
func (m *Metrics) BatchUnknown(appID string, n int) {
	if m != nil {
		m.batchSends.WithLabelValues(appID, "unknown").Add(float64(n))
	}
}

// BatchStopped counts a batch stopped for reason.
func (m *Metrics) BatchStopped(reason string) {
	if m != nil {
		m.batchStopped.WithLabelValues(reason).Inc()
	}
}

// BatchPaused counts a batch the sender paused for reason.
func (m *Metrics) BatchPaused(reason string) {
	if m != nil {
		m.batchPaused.WithLabelValues(reason).Inc()
	}
}

// BatchRateWait adds time spent waiting for appID's rate limit.
func (m *Metrics) BatchRateWait(appID string, d time.Duration) {
	if m != nil && d > 0 {
		m.batchRateWait.WithLabelValues(appID).Add(d.Seconds())
	}
}

// BatchGauges sets, by ISV app, the recipients left to send and the
// longest a running batch went without a send; apps not named are
// removed.
func (m *Metrics) BatchGauges(pending map[string]int, idle map[string]time.Duration) {
	if m == nil {
		return
	}
	m.batchPending.Reset()
	m.batchIdle.Reset()
	for app, n := range pending {
		m.batchPending.WithLabelValues(app).Set(float64(n))
		m.batchIdle.WithLabelValues(app).Set(idle[app].Seconds())
	}
}
