// Package certwatch watches the validity of the Alipay certificates the
// gateway verifies with (certificate mode) as time passes: it exports each
// one's expiry as a gauge, and logs a warning for a cert that expires within
// Soon and an error for one that has expired, at start and every hour.
package certwatch

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
)

// Soon is how long before a cert expires the check starts warning.
const Soon = 30 * 24 * time.Hour

// every is how often the check runs.
const every = time.Hour

// Config is what the watch needs.
type Config struct {
	// Apps are the configured apps; only their cert keys (a NotAfter) are
	// watched.
	Apps []*alipay.App
	// Metrics receives the expiry gauges; nil reports none.
	Metrics *metrics.Metrics
	// Logger receives a line for each cert expiring soon or expired.
	Logger zerolog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Level is what the check logs for a cert that expires at notAfter, at now:
// zerolog.ErrorLevel once it has expired, zerolog.WarnLevel within Soon of
// it, zerolog.NoLevel (nothing) earlier.
func Level(notAfter, now time.Time) zerolog.Level {
	switch left := notAfter.Sub(now); {
	case left < 0:
		return zerolog.ErrorLevel
	case left <= Soon:
		return zerolog.WarnLevel
	}
	return zerolog.NoLevel
}

// Start sets each cert's expiry gauge and checks the certs, then checks
// them again every hour in the background until ctx is done.
func Start(ctx context.Context, cfg Config) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	forEachCert(cfg.Apps, func(app string, k alipay.Key) { cfg.Metrics.CertExpiry(app, k.SN, k.NotAfter) })
	check(cfg)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				check(cfg)
			}
		}
	}()
}

// check logs a line for each cert expired or expiring soon.
func check(cfg Config) {
	now := cfg.Now()
	forEachCert(cfg.Apps, func(app string, k alipay.Key) {
		msg := "Alipay cert expires within 30 days: configure its successor (the new alipayCertPublicKey_RSA2.crt) next to it, if not done yet"
		level := Level(k.NotAfter, now)
		switch level {
		case zerolog.NoLevel:
			return
		case zerolog.ErrorLevel:
			msg = "Alipay cert has expired: configure the current alipayCertPublicKey_RSA2.crt and remove this one"
		}
		cfg.Logger.WithLevel(level).Str("app_id", app).Str("cert_sn", k.SN).
			Str("not_after", k.NotAfter.UTC().Format(time.RFC3339)).Msg(msg)
	})
}

// forEachCert calls f for each cert key (one with a NotAfter) of apps.
func forEachCert(apps []*alipay.App, f func(appID string, k alipay.Key)) {
	for _, a := range apps {
		for _, k := range a.Keys {
			if !k.NotAfter.IsZero() {
				f(a.ID, k)
			}
		}
	}
}
