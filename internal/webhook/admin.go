package webhook

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// AdminStore is what Admin needs of the database (postgres.DB). Each
// method returns an ENOTFOUND *notify.Error for an unknown id and an
// EUNAVAILABLE one when the database cannot be reached.
type AdminStore interface {
	CreateEndpoint(ctx context.Context, c notify.EndpointChange, secret string) (*notify.Endpoint, error)
	Endpoints(ctx context.Context, enabledOnly bool) ([]*notify.Endpoint, error)
	Endpoint(ctx context.Context, id int64) (*notify.Endpoint, error)
	UpdateEndpoint(ctx context.Context, id int64, c notify.EndpointChange) (*notify.Endpoint, error)
	DeleteEndpoint(ctx context.Context, id int64) error
	RotateSecret(ctx context.Context, id int64, secret string, overlap time.Duration) (*notify.Endpoint, error)
	Deliveries(ctx context.Context, f view.DeliveryFilter) ([]*view.Delivery, string, error)
	Delivery(ctx context.Context, id int64) (*view.Delivery, error)
	RetryDelivery(ctx context.Context, id int64) (*view.Delivery, error)
	ReplayEndpoint(ctx context.Context, id int64, since time.Time) (int, error)
	Events(ctx context.Context, f view.EventFilter) (*view.EventPage, error)
}

// Admin manages the endpoints for the ops API: it checks what it is
// given, makes the secrets, and passes the rest to the store.
type Admin struct {
	AdminStore
	// Resolve says why host does not resolve, or nil; the system
	// resolver when nil.
	Resolve func(ctx context.Context, host string) error
	// Overlap is how long a rotated-out secret keeps signing (24h).
	Overlap time.Duration
}

// Create checks c (notify.CheckEndpoint, and that its host resolves) and
// stores the endpoint with a new secret, which the answer carries. It
// returns an EINVALID *notify.Error for an endpoint that cannot work.
func (a *Admin) Create(ctx context.Context, c notify.EndpointChange) (*notify.Endpoint, error) {
	if err := a.check(ctx, c, true); err != nil {
		return nil, err
	}
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return nil, err
	}
	return a.CreateEndpoint(ctx, c, secret)
}

// Update checks c as Create does and changes what it sets.
func (a *Admin) Update(ctx context.Context, id int64, c notify.EndpointChange) (*notify.Endpoint, error) {
	if err := a.check(ctx, c, false); err != nil {
		return nil, err
	}
	return a.UpdateEndpoint(ctx, id, c)
}

// Rotate gives endpoint id a new secret, which the answer carries; the
// former one keeps signing (a second signature) for Overlap.
func (a *Admin) Rotate(ctx context.Context, id int64) (*notify.Endpoint, error) {
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return nil, err
	}
	overlap := a.Overlap
	if overlap <= 0 {
		overlap = 24 * time.Hour
	}
	return a.RotateSecret(ctx, id, secret, overlap)
}

func (a *Admin) check(ctx context.Context, c notify.EndpointChange, creating bool) error {
	if err := notify.CheckEndpoint(c, creating); err != nil {
		return err
	}
	if c.URL == nil {
		return nil
	}
	u, _ := url.Parse(*c.URL) // CheckEndpoint parsed it
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	resolve := a.Resolve
	if resolve == nil {
		resolve = lookUp
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := resolve(ctx, host); err != nil {
		return notify.Errorf(notify.EINVALID, "bad_endpoint", "url's host %q does not resolve: %v", notify.Clip(host), err)
	}
	return nil
}

func lookUp(ctx context.Context, host string) error {
	_, err := net.DefaultResolver.LookupHost(ctx, host)
	return err
}
