package intake

import (
	"context"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// ReprocessStore is what Reprocess needs of the store (postgres.DB): it
// holds the row's lock while decide runs and what it decides is applied.
type ReprocessStore interface {
	Reprocess(ctx context.Context, appID, notifyID string, decide func(*notify.Notification) (notify.Decided, error)) (*view.StoredNotification, error)
}

// Reprocess decides again a stored notification that ended failed or
// unhandled, and applies what the registry now says (after an upgrade, or
// once ALIPAY_ENCRYPT_KEY is configured: an encrypted biz_content is decoded
// again first, with Config.Redecode). It returns the store's errors
// (ENOTFOUND for an unknown notification) and the error of a handler that
// refuses it, which then stays as it was.
func (p *Pipeline) Reprocess(ctx context.Context, appID, notifyID string) (*view.StoredNotification, error) {
	return p.cfg.Store.Reprocess(ctx, appID, notifyID, func(n *notify.Notification) (notify.Decided, error) {
		if n.Encrypted && p.cfg.Redecode != nil {
			p.cfg.Redecode(n)
		}
		return p.cfg.Registry.Decide(n)
	})
}
