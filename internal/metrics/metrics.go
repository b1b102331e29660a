// Package metrics defines the gateway's Prometheus series. A *Metrics is
// made once in main and passed to the packages that report; nothing here is
// global. Every method is safe on a nil *Metrics, so tests may pass none.
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const ns = "alipay_gateway"

// Metrics holds the gateway's series.
type Metrics struct {
	Registry *prometheus.Registry

	notifications    *prometheus.CounterVec
	refusals         *prometheus.CounterVec
	intake           *prometheus.HistogramVec
	batchSize        prometheus.Histogram
	outbound         *prometheus.CounterVec
	lastNotification prometheus.Gauge
	wsConnected      *prometheus.GaugeVec
	wsReconnects     *prometheus.CounterVec
	oldestFailedAge  prometheus.Gauge
	poolConnections  *prometheus.GaugeVec
	certExpiry       *prometheus.GaugeVec

	webhookDeliveries *prometheus.CounterVec
	webhookDuration   *prometheus.HistogramVec
	webhookPending    *prometheus.GaugeVec
	webhookDead       *prometheus.GaugeVec
	webhookDisabled   prometheus.Gauge
	feedLag           prometheus.Gauge

	pruned     *prometheus.CounterVec
	tableBytes *prometheus.GaugeVec
	retention  *prometheus.GaugeVec

	batchMetrics // batches.go
	reconcile    reconcileMetrics
	recent       *Recent // the last day's refusals and repeats, for the console
}

// New returns the gateway's metrics on a fresh registry that also holds the
// Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		recent:   newRecent(time.Now),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notifications_total",
			Help: "Notifications acknowledged with success, by msg_method and outcome (applied, stale, unhandled, failed, duplicate, replay: its signed content is stored under another notify_id, pruned: stored once and pruned since, foreign: about another app's entity)."},
			[]string{"msg_method", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "refusals_total",
			Help: "Deliveries answered fail, by reason (bad_signature, unknown_app, unknown_cert_sn, body_too_large, database_unavailable, ...)."},
			[]string{"reason"}),
		intake: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "intake_duration_seconds",
			Help:    "Time from a delivery's arrival to its reply, by channel.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}},
			[]string{"channel"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "batch_size",
			Help: "Notifications committed per group-commit transaction.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}),
		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "outbound_calls_total",
			Help: "Calls to Alipay's OpenAPI, by method and result (success, business_error, transport_error)."},
			[]string{"method", "result"}),
		lastNotification: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_notification_timestamp_seconds",
			Help: "Unix time of the last notification acknowledged with success."}),
		wsConnected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "websocket_connected",
			Help: "1 while the app's WebSocket channel to Alipay is connected."}, []string{"app_id"}),
		wsReconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "websocket_reconnects_total",
			Help: "WebSocket channel reconnections, by app."}, []string{"app_id"}),
		oldestFailedAge: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "oldest_failed_notification_age_seconds",
			Help: "Age of the oldest notification in status failed (0 when there is none)."}),
		poolConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "db_pool_connections",
			Help: "Database pool connections by state (acquired, idle, total, max)."}, []string{"state"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "cert_expiry_timestamp_seconds",
			Help: "Unix time at which a configured Alipay certificate expires (its NotAfter), by app_id and cert_sn."},
			[]string{"app_id", "cert_sn"}),
		webhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_attempts_total",
			Help: "Webhook delivery attempts, by endpoint id and result (delivered; failed, to be tried again; dead: failed for the last time, dead-lettered)."},
			[]string{"endpoint_id", "result"}),
		webhookDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "webhook_attempt_duration_seconds",
			Help:    "Time from a webhook attempt's start to its answer (or failure), by endpoint id.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"endpoint_id"}),
		webhookPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "webhook_oldest_pending_seconds",
			Help: "Age of an enabled endpoint's oldest pending delivery (0 when none is pending), by endpoint id."}, []string{"endpoint_id"}),
		webhookDead: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "webhook_dead_deliveries",
			Help: "Dead-lettered deliveries (no 2xx within the delivery window), by endpoint id."}, []string{"endpoint_id"}),
		webhookDisabled: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "webhook_endpoints_disabled",
			Help: "Webhook endpoints disabled, by an operator or for failing too long."}),
		feedLag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "events_feed_lag_seconds",
			Help: "Age of the oldest committed event the feed does not show yet, held back by a transaction still in flight (0 when none)."}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "pruned_rows_total",
			Help: "Rows deleted by the retention prune, by what (notifications, failed_notifications, events: with their deliveries and attempts, template_messages, template_batches: with their recipients, reconcile_runs: with their errors, pruned_digests)."},
			[]string{"what"}),
		tableBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "table_bytes",
			Help: "Size of a table the prune deletes from, indexes and TOAST included, sampled after each prune."}, []string{"table"}),
		retention: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "retention_seconds",
			Help: "How long each kind of record is kept (RETENTION_*; 0: forever)."}, []string{"what"}),
	}
	m.Registry.MustRegister(m.notifications, m.refusals, m.intake, m.batchSize, m.outbound, m.lastNotification,
		m.wsConnected, m.wsReconnects, m.oldestFailedAge, m.poolConnections, m.certExpiry,
		m.webhookDeliveries, m.webhookDuration, m.webhookPending, m.webhookDead, m.webhookDisabled, m.feedLag,
		m.pruned, m.tableBytes, m.retention,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerBatches()
	m.registerReconcile()
	return m
}

// Accepted counts a notification answered success.
func (m *Metrics) Accepted(method, outcome string) {
	if m == nil {
		return
	}
	m.notifications.WithLabelValues(method, outcome).Inc()
	m.lastNotification.SetToCurrentTime()
	m.recentAccepted(outcome)
}

// Refused counts a delivery answered fail.
func (m *Metrics) Refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
		m.recent.add("refused:" + reason)
	}
}

// Intake records how long a delivery took.
func (m *Metrics) Intake(channel string, d time.Duration) {
	if m != nil {
		m.intake.WithLabelValues(channel).Observe(d.Seconds())
	}
}

// Batch records a group commit's size.
func (m *Metrics) Batch(n int) {
	if m != nil {
		m.batchSize.Observe(float64(n))
	}
}

// Outbound counts a call to Alipay's OpenAPI.
func (m *Metrics) Outbound(method, result string) {
	if m != nil {
		m.outbound.WithLabelValues(method, result).Inc()
	}
}

// WebSocketConnected sets an app's channel state.
func (m *Metrics) WebSocketConnected(appID string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.wsConnected.WithLabelValues(appID).Set(v)
}

// WebSocketReconnect counts a reconnection.
func (m *Metrics) WebSocketReconnect(appID string) {
	if m != nil {
		m.wsReconnects.WithLabelValues(appID).Inc()
	}
}

// CertExpiry records when an app's Alipay cert (by its SN) expires.
func (m *Metrics) CertExpiry(appID, certSN string, notAfter time.Time) {
	if m != nil {
		m.certExpiry.WithLabelValues(appID, certSN).Set(float64(notAfter.Unix()))
	}
}

// WebhookAttempt counts a webhook attempt and its duration; result is
// delivered, failed or dead.
func (m *Metrics) WebhookAttempt(endpointID int64, result string, d time.Duration) {
	if m != nil {
		id := strconv.FormatInt(endpointID, 10)
		m.webhookDeliveries.WithLabelValues(id, result).Inc()
		m.webhookDuration.WithLabelValues(id).Observe(d.Seconds())
	}
}

// WebhookGauges sets the dispatcher's gauges: by endpoint id, the age of
// its oldest pending delivery and its dead deliveries; the disabled
// endpoints; the feed's lag. Endpoints not named are removed.
func (m *Metrics) WebhookGauges(pending map[int64]time.Duration, dead map[int64]int, disabled int, feedLag time.Duration) {
	if m == nil {
		return
	}
	m.webhookPending.Reset()
	m.webhookDead.Reset()
	for id, n := range dead {
		label := strconv.FormatInt(id, 10)
		m.webhookDead.WithLabelValues(label).Set(float64(n))
		m.webhookPending.WithLabelValues(label).Set(pending[id].Seconds())
	}
	m.webhookDisabled.Set(float64(disabled))
	m.feedLag.Set(feedLag.Seconds())
}

// Pruned counts rows the retention prune deleted.
func (m *Metrics) Pruned(what string, n int64) {
	if m != nil {
		m.pruned.WithLabelValues(what).Add(float64(n))
	}
}

// TableSizes sets the pruned tables' sizes, in bytes.
func (m *Metrics) TableSizes(bytes map[string]int64) {
	if m == nil {
		return
	}
	for table, n := range bytes {
		m.tableBytes.WithLabelValues(table).Set(float64(n))
	}
}

// Retention sets how long each kind of record is kept (0: forever).
func (m *Metrics) Retention(keep map[string]time.Duration) {
	if m == nil {
		return
	}
	for what, d := range keep {
		m.retention.WithLabelValues(what).Set(d.Seconds())
	}
}

// Sampler is what the periodic gauges read.
type Sampler interface {
	OldestFailedAge(ctx context.Context) (time.Duration, error)
}

// Sample refreshes the pool and backlog gauges; main calls it on a timer.
func (m *Metrics) Sample(ctx context.Context, pool *pgxpool.Pool, s Sampler) {
	if m == nil {
		return
	}
	if pool != nil {
		st := pool.Stat()
		m.poolConnections.WithLabelValues("acquired").Set(float64(st.AcquiredConns()))
		m.poolConnections.WithLabelValues("idle").Set(float64(st.IdleConns()))
		m.poolConnections.WithLabelValues("total").Set(float64(st.TotalConns()))
		m.poolConnections.WithLabelValues("max").Set(float64(st.MaxConns()))
	}
	if s != nil {
		if age, err := s.OldestFailedAge(ctx); err == nil {
			m.oldestFailedAge.Set(age.Seconds())
		}
	}
}
