package metrics_test

import (
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/metrics"
)

// TestMetrics_Nil: every method is safe on a nil *Metrics.
func TestMetrics_Nil(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	m.Accepted("m", "applied")
	m.Refused("bad_signature")
	m.Intake("http", time.Millisecond)
	m.Batch(1)
	m.Outbound("m", "success")
	m.WebSocketConnected("app", true)
	m.WebSocketReconnect("app")
	m.CertExpiry("app", "sn", time.Now())
	m.Sample(t.Context(), nil, nil)
}
