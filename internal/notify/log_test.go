package notify_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

func TestOutageLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := notify.OutageLogger(zerolog.New(&buf))
	err := notify.Errorf(notify.EUNAVAILABLE, "database_unavailable", "database unavailable: connection refused")
	for range 500 {
		notify.LogOutcome(log.Error(), notify.Outcome{}, err)
	}
	lines := strings.Count(buf.String(), "\n")
	if lines < 1 || lines > 20 { // 10 a second; the loop may straddle a second
		t.Fatalf("%d lines for 500 refusals in an outage", lines)
	}
}
