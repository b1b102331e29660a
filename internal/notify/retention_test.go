package notify_test

import (
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

func TestRetention_Check(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	defaults := notify.Retention{Notifications: 90 * day, Failed: 365 * day, Events: 30 * day, TemplateMessages: 90 * day, Digests: 30 * day}
	t.Run("OK", func(t *testing.T) {
		for _, r := range []notify.Retention{defaults, {}, {Notifications: 72 * time.Hour, Failed: 72 * time.Hour, Events: time.Hour}} {
			if err := r.Check(); err != nil {
				t.Errorf("%+v: %v", r, err)
			}
		}
	})
	t.Run("ErrTooShort", func(t *testing.T) {
		r := defaults
		r.Notifications = 48 * time.Hour
		r.Events = time.Hour
		if err := r.Check(); notify.ErrorCode(err) != notify.EINVALID {
			t.Fatalf("%v", err)
		}
	})
	t.Run("ErrEventsOutliveNotifications", func(t *testing.T) {
		for _, events := range []time.Duration{0, 100 * day} {
			r := defaults
			r.Events = events
			if err := r.Check(); notify.ErrorCode(err) != notify.EINVALID {
				t.Errorf("events %s: %v", events, err)
			}
		}
	})
	t.Run("ErrNegative", func(t *testing.T) {
		r := defaults
		r.Digests = -time.Hour
		if err := r.Check(); notify.ErrorCode(err) != notify.EINVALID {
			t.Fatalf("%v", err)
		}
	})
}

func TestRetention_Cutoffs(t *testing.T) {
	t.Parallel()
	now := time.Now()
	cs := notify.Retention{Notifications: 100 * time.Hour, Events: 10 * time.Hour}.Cutoffs(now)
	if len(cs) != 3 || cs[0].What != notify.PruneNotifications || !cs[0].Before.Equal(now.Add(-100*time.Hour)) ||
		cs[1].What != notify.PruneEvents || !cs[1].Before.Equal(now.Add(-10*time.Hour)) ||
		cs[2].What != notify.PruneReconcileRuns || !cs[2].Before.Equal(now.Add(-10*time.Hour)) {
		t.Fatalf("%v", cs)
	}
}
