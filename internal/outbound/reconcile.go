package outbound

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The query methods the reconciler (internal/reconcile) asks Alipay with;
// their fields are in docs/reconciliation.md.
const (
	MethodMiniVersionList   = "alipay.open.mini.version.list.query"
	MethodMiniVersionDetail = "alipay.open.mini.version.detail.query"
	MethodAuthTokenQuery    = "alipay.open.auth.token.app.query"
)

// MiniVersion is one version in alipay.open.mini.version.list.query's
// answer (app_version_info).
type MiniVersion struct {
	Version      string      `json:"app_version"`
	BundleID     string      `json:"bundle_id"`
	Status       string      `json:"version_status"`
	BaseAudit    string      `json:"base_audit"`
	PromoteAudit string      `json:"promote_audit"`
	CanRelease   notify.Text `json:"can_release"`
	CreateTime   string      `json:"create_time"`
}

// MiniVersionDetail is alipay.open.mini.version.detail.query's answer, the
// fields of a version's audit.
type MiniVersionDetail struct {
	Version      string `json:"app_version"`
	Status       string `json:"status"`
	RejectReason string `json:"reject_reason"`
	BaseAudit    string `json:"base_audit"`
	PromoteAudit string `json:"promote_audit"`
	// BaseAuditRecord and PromoteAuditRecord are MiniAppAuditReason
	// objects ({"audit_images": [...], "memos": [...]}), as received.
	BaseAuditRecord    json.RawMessage `json:"base_audit_record"`
	PromoteAuditRecord json.RawMessage `json:"promote_audit_record"`
	CanRelease         notify.Text     `json:"can_release"`
	GmtAuditEnd        string          `json:"gmt_audit_end"`
}

// TokenInfo is alipay.open.auth.token.app.query's answer: what Alipay
// knows of a merchant's app_auth_token.
type TokenInfo struct {
	AuthAppID   string      `json:"auth_app_id"`
	UserID      string      `json:"user_id"`
	Status      string      `json:"status"` // valid or invalid
	ExpiresIn   notify.Text `json:"expires_in"`
	AuthStart   string      `json:"auth_start"`
	AuthEnd     string      `json:"auth_end"`
	AuthMethods []string    `json:"auth_methods"`
}

// Token statuses of TokenInfo.
const (
	TokenValid   = "valid"
	TokenInvalid = "invalid"
)

type versionListAnswer struct {
	common
	Infos []MiniVersion `json:"app_version_infos"`
}

type versionDetailAnswer struct {
	common
	MiniVersionDetail
}

type tokenQueryAnswer struct {
	common
	TokenInfo
}

// onBehalf returns the client of appID and the token to call with for
// merchant app authAppID: its stored app_auth_token, or none for the ISV
// app's own mini-app (authAppID empty).
func (s *Service) onBehalf(ctx context.Context, appID, authAppID string) (*client, string, error) {
	c, err := s.client(appID)
	if err != nil {
		return nil, "", err
	}
	if authAppID == "" {
		return c, "", nil
	}
	token, err := s.authToken(ctx, c.app.ID, authAppID)
	return c, token, err
}

// MiniVersions calls alipay.open.mini.version.list.query for the mini-app
// of merchant app authAppID (with its app_auth_token), or the ISV app
// appID's own when authAppID is empty, listing the versions in statuses
// (Alipay lists none without them), newest version number first. It
// returns the client's and the merchant token's errors as
// SendTemplateMessage does (ENOTFOUND, ECONFLICT for a cancelled or
// expired authorization, EINTERNAL for a token that does not open), a
// *BusinessError when Alipay refused (20001 for a token it does not take,
// 40005 when rate limited), and an EUPSTREAM *notify.Error when the call
// failed or its answer could not be trusted.
func (s *Service) MiniVersions(ctx context.Context, appID, authAppID string, statuses []string) ([]MiniVersion, error) {
	c, token, err := s.onBehalf(ctx, appID, authAppID)
	if err != nil {
		return nil, err
	}
	var ans versionListAnswer
	if _, err := s.call(ctx, c, MethodMiniVersionList, map[string]any{"version_status": strings.Join(statuses, ",")}, token, &ans); err != nil {
		return nil, err
	}
	return ans.Infos, nil
}

// MiniVersionDetail calls alipay.open.mini.version.detail.query for one
// version (of bundleID, the Alipay client when empty) of the mini-app
// MiniVersions would list. It returns MiniVersions' errors.
func (s *Service) MiniVersionDetail(ctx context.Context, appID, authAppID, version, bundleID string) (*MiniVersionDetail, error) {
	c, token, err := s.onBehalf(ctx, appID, authAppID)
	if err != nil {
		return nil, err
	}
	biz := map[string]any{"app_version": version}
	if bundleID != "" {
		biz["bundle_id"] = bundleID
	}
	var ans versionDetailAnswer
	if _, err := s.call(ctx, c, MethodMiniVersionDetail, biz, token, &ans); err != nil {
		return nil, err
	}
	if ans.Version != "" && ans.Version != version {
		return nil, notify.Errorf(EUPSTREAM, "alipay_other_version", "Alipay answered the detail of version %s for %s", ans.Version, version)
	}
	return &ans.MiniVersionDetail, nil
}

// QueryToken calls alipay.open.auth.token.app.query with merchant app
// authAppID's stored app_auth_token (in biz_content, the call being the
// ISV app's own). It returns MiniVersions' errors, and an EUPSTREAM
// *notify.Error (alipay_other_merchant) when the answer is about another
// merchant app.
func (s *Service) QueryToken(ctx context.Context, appID, authAppID string) (*TokenInfo, error) {
	c, token, err := s.onBehalf(ctx, appID, authAppID)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, notify.Errorf(notify.EINVALID, "missing_auth_app_id", "the token query needs a merchant app")
	}
	var ans tokenQueryAnswer
	if _, err := s.call(ctx, c, MethodAuthTokenQuery, map[string]any{"app_auth_token": token}, "", &ans); err != nil {
		return nil, err
	}
	if ans.AuthAppID != "" && ans.AuthAppID != authAppID {
		return nil, notify.Errorf(EUPSTREAM, "alipay_other_merchant", "Alipay answered the token query of %s for %s", authAppID, ans.AuthAppID)
	}
	return &ans.TokenInfo, nil
}
