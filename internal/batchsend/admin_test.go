package batchsend_test

import (
	"context"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestAdmin_Create(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// A retry with the Idempotency-Key answers the batch created, even
	// after the merchant's authorization was cancelled meanwhile.
	t.Run("OKReplayAfterCancelledAuthorization", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.authorize(t)
		r := request(users(1, 2))
		r.AuthAppID = testkit.MerchantAppID
		first, replayed, err := e.admin.Create(ctx, r, "campaign-1")
		if err != nil || replayed {
			t.Fatalf("%+v %v %v", first, replayed, err)
		}
		e.cancelAuthorization(t)
		again, _, err := e.admin.Create(ctx, request(users(1, 2)), "campaign-1")
		if err == nil || notify.ErrorCode(err) != notify.ECONFLICT || notify.ErrorReason(err) != "idempotency_key_reused" {
			t.Fatalf("another request with the key: %+v %v", again, err)
		}
		again, replayed, err = e.admin.Create(ctx, r, "campaign-1")
		if err != nil || !replayed || !again.Replayed || again.ID != first.ID {
			t.Fatalf("%+v %v %v", again, replayed, err)
		}
		// Without the key, a new batch for the merchant is refused.
		if _, _, err := e.admin.Create(ctx, r, "campaign-2"); notify.ErrorCode(err) != notify.ECONFLICT {
			t.Fatalf("%v", err)
		}
		if n := e.count(t, `SELECT count(*) FROM template_message_batches`); n != 1 {
			t.Fatalf("%d batches", n)
		}
	})
}
