package intake_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/intake"
)

func TestOutageLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := intake.OutageLogger(zerolog.New(&buf))
	for range 500 {
		log.Error().Str("reason", "database_unavailable").Msg("notification refused")
	}
	lines := strings.Count(buf.String(), "\n")
	if lines < 1 || lines > 20 { // 10 a second; the loop may straddle a second
		t.Fatalf("%d lines for 500 refusals in an outage", lines)
	}
}
