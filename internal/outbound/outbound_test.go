package outbound_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestNew(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	app := testkit.KeyApp()
	good := outbound.Config{Apps: []*alipay.App{app}, GatewayURL: "http://127.0.0.1:1/gateway.do", Store: db, Sealer: testkit.Sealer(t)}
	t.Run("OK", func(t *testing.T) {
		svc, err := outbound.New(good)
		if err != nil || strings.Join(svc.AppIDs(), ",") != testkit.AppID {
			t.Fatal(err)
		}
		if !outbound.Configured(good.Apps) || outbound.Configured([]*alipay.App{{ID: "x"}}) {
			t.Fatal("Configured")
		}
	})
	certNoSN := testkit.CertApp()
	certNoSN.AppCertSN = ""
	for name, edit := range map[string]func(*outbound.Config){
		"ErrNoSealer":     func(c *outbound.Config) { c.Sealer = nil },
		"ErrNoStore":      func(c *outbound.Config) { c.Store = nil },
		"ErrNoGateway":    func(c *outbound.Config) { c.GatewayURL = "" },
		"ErrNoPrivateKey": func(c *outbound.Config) { c.Apps = []*alipay.App{{ID: testkit.AppID, Keys: app.Keys}} },
		"ErrNoAppCertSN":  func(c *outbound.Config) { c.Apps = []*alipay.App{certNoSN} },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			edit(&cfg)
			if _, err := outbound.New(cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
	t.Run("ErrAppIDAmongSeveral", func(t *testing.T) {
		cert := testkit.CertApp()
		cfg := good
		cfg.Apps = []*alipay.App{app, cert}
		svc, err := outbound.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = svc.SendTemplateMessage(context.Background(), message(), "")
		wantCode(t, err, notify.EINVALID, "missing_app_id")
	})
}

// TestService_CertMode runs the three calls in certificate mode: requests
// carry app_cert_sn and alipay_root_cert_sn; answers are verified with the
// cert their alipay_cert_sn names, among the configured ones only.
func TestService_CertMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{certMode: true})
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		e.authorize(t)
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{AuthAppID: testkit.MerchantAppID, UserID: userID, TemplateIDs: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
		calls := e.sim.Calls(send)
		if p := calls[len(calls)-1].Params; p.Get("app_cert_sn") != e.app.AppCertSN || p.Get("alipay_root_cert_sn") != e.app.RootCertSN {
			t.Fatalf("%v", p)
		}
	})
	t.Run("OKRotatedCert", func(t *testing.T) {
		e.sim.Fail(send, openapisim.Fault{SignWith: testkit.PKI().Rotated.Key, CertSN: alipay.CertSN(testkit.PKI().Rotated.Cert)})
		if _, _, err := e.svc.SendTemplateMessage(ctx, message(), ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrWrongCertKey", func(t *testing.T) {
		// Signed by the rotated key but naming the current cert.
		e.sim.Fail(send, openapisim.Fault{SignWith: testkit.PKI().Rotated.Key})
		_, _, err := e.svc.SendTemplateMessage(ctx, message(), "")
		wantCode(t, err, outbound.EUPSTREAM, "alipay_bad_answer")
	})
	t.Run("ErrUnknownCert", func(t *testing.T) {
		// A cert that chains to no configured root (or any unconfigured
		// SN) is refused, never downloaded.
		e.sim.Fail(send, openapisim.Fault{SignWith: testkit.PKI().Rogue.Key, CertSN: alipay.CertSN(testkit.PKI().Rogue.Cert)})
		_, _, err := e.svc.SendTemplateMessage(ctx, message(), "")
		wantCode(t, err, outbound.EUPSTREAM, "alipay_bad_answer")
		if len(e.sim.Calls("alipay.open.app.alipaycert.download")) != 0 {
			t.Fatal("the client tried to download a cert")
		}
	})
	t.Run("ErrBusiness", func(t *testing.T) {
		e.sim.Fail(send, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "USER_TEMPLATE_ILLEGAL", SubMsg: "模板不合法"})
		_, _, err := e.svc.SendTemplateMessage(ctx, message(), "")
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.SubCode != "USER_TEMPLATE_ILLEGAL" {
			t.Fatalf("%v", err)
		}
	})
}
