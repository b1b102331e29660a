package openapisim

import (
	"encoding/json"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The query methods the reconciler calls (docs/reconciliation.md).
const (
	MethodMiniVersionList   = "alipay.open.mini.version.list.query"
	MethodMiniVersionDetail = "alipay.open.mini.version.detail.query"
	MethodAuthTokenQuery    = "alipay.open.auth.token.app.query"
)

// DefaultBundleID is the Alipay client, the bundle_id of a version when
// none is set.
const DefaultBundleID = "com.alipay.alipaywallet"

// Version is a mini-app version as Alipay knows it: what
// alipay.open.mini.version.list.query and .detail.query answer of it.
type Version struct {
	Version string
	// Status is its version_status (INIT, AUDITING, AUDIT_REJECT,
	// WAIT_RELEASE, BASE_AUDIT_PASS, GRAY, RELEASE, OFFLINE,
	// AUDIT_OFFLINE, or anything else).
	Status string
	// DetailStatus, when set, is what the detail query answers as status
	// instead of Status: the list and the detail disagreeing.
	DetailStatus string
	BundleID     string // DefaultBundleID when empty
	RejectReason string
	BaseAudit    string // PASS or REJECT
	PromoteAudit string
	// BaseAuditRecord and PromoteAuditRecord are the reason objects
	// ({"audit_images": [...], "memos": [...]}), as JSON; none when nil.
	BaseAuditRecord    json.RawMessage
	PromoteAuditRecord json.RawMessage
	CanRelease         string
}

// reconState is what the query methods answer from: the versions of each
// mini-app, and the tokens that stopped working.
type reconState struct {
	versions map[string]map[string]Version // mini_app_id -> version -> Version
	invalid  map[string]grant              // app_auth_token -> grant the merchant cancelled
	expired  map[string]grant              // app_auth_token -> grant whose token expired
}

func (r *reconState) init() {
	if r.versions == nil {
		r.versions, r.invalid, r.expired = map[string]map[string]Version{}, map[string]grant{}, map[string]grant{}
	}
}

// SetVersion records (or replaces) a version of mini-app miniAppID: the
// merchant app authAppID's mini-app when it is reached with its token,
// the ISV app's own when miniAppID is the ISV app's id.
func (s *Sim) SetVersion(miniAppID string, v Version) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.init()
	if s.recon.versions[miniAppID] == nil {
		s.recon.versions[miniAppID] = map[string]Version{}
	}
	s.recon.versions[miniAppID][v.Version] = v
}

// RemoveVersion forgets a version (deleted at Alipay).
func (s *Sim) RemoveVersion(miniAppID, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.init()
	delete(s.recon.versions[miniAppID], version)
}

// Invalidate ends authAppID's authorization of appID as the merchant
// cancelling it: its app_auth_token stops working (20001
// aop.invalid-app-auth-token), and alipay.open.auth.token.app.query
// answers it with status invalid.
func (s *Sim) Invalidate(appID, authAppID string) {
	s.moveTokens(appID, authAppID, func(r *reconState) map[string]grant { return r.invalid })
}

// InvalidateToken makes one app_auth_token stop working as Invalidate
// does (20001 aop.invalid-app-auth-token; the token query answers it
// with status invalid), leaving its authorization's refresh token and
// other tokens as they are: a token Alipay no longer takes while a
// refresh still works.
func (s *Sim) InvalidateToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.init()
	if g, found := s.tokens[token]; found {
		s.recon.invalid[token] = g
		delete(s.tokens, token)
	}
}

// Expire makes authAppID's app_auth_token for appID expired: every call
// with it answers 20001 aop.app-auth-token-time-out until it is refreshed
// (the refresh token still works).
func (s *Sim) Expire(appID, authAppID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.init()
	for t, g := range s.tokens {
		if g.appID == appID && g.authAppID == authAppID {
			s.recon.expired[t] = g
		}
	}
}

func (s *Sim) moveTokens(appID, authAppID string, to func(*reconState) map[string]grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.init()
	for t, g := range s.tokens {
		if g.appID == appID && g.authAppID == authAppID {
			to(&s.recon)[t] = g
		}
	}
	s.revokeLocked(appID, authAppID)
}

var (
	errTokenTimeout = errInvalidToken.sub("aop.app-auth-token-time-out", "应用授权令牌已过期")
	// errNoVersion is the answer for a version the mini-app does not have.
	// Alipay's sub_code for it was not found; this one is made up.
	errNoVersion = errBusiness.sub("MINI_APP_VERSION_NOT_EXIST", "小程序版本不存在")
)

// expiredToken answers a call whose app_auth_token (the common parameter)
// has expired.
func (s *Sim) expiredToken(p url.Values) (errorAnswer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, expired := s.recon.expired[p.Get("app_auth_token")]; expired && p.Get("app_auth_token") != "" {
		return errTokenTimeout, true
	}
	return errorAnswer{}, false
}

// reconcile answers the query methods, for g's merchant app (its token
// given) or the ISV app's own mini-app.
func (s *Sim) reconcile(method, appID string, g grant, given bool, biz map[string]any) any {
	miniAppID := appID
	if given {
		miniAppID = g.authAppID
	}
	switch method {
	case MethodMiniVersionList:
		return s.versionList(miniAppID, biz)
	case MethodMiniVersionDetail:
		return s.versionDetail(miniAppID, biz)
	}
	return s.tokenQuery(appID, biz)
}

type versionInfo struct {
	AppVersion         string `json:"app_version"`
	BundleID           string `json:"bundle_id"`
	VersionStatus      string `json:"version_status"`
	BaseAudit          string `json:"base_audit,omitempty"`
	PromoteAudit       string `json:"promote_audit,omitempty"`
	CanRelease         string `json:"can_release,omitempty"`
	CreateTime         string `json:"create_time"`
	VersionDescription string `json:"version_description"`
}

// versionList answers the versions whose status version_status lists
// (none without it: "不填默认不返回"), newest version number first, and
// the legacy app_versions.
func (s *Sim) versionList(miniAppID string, biz map[string]any) any {
	want := map[string]bool{}
	for _, st := range strings.Split(str(biz, "version_status"), ",") {
		if st = strings.TrimSpace(st); st != "" {
			want[st] = true
		}
	}
	bundle := str(biz, "bundle_id")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.init()
	out := struct {
		success
		Infos    []versionInfo `json:"app_version_infos"`
		Versions []string      `json:"app_versions"`
	}{success: ok, Infos: []versionInfo{}, Versions: []string{}}
	for _, v := range s.recon.versions[miniAppID] {
		if !want[v.Status] || bundle != "" && bundleOf(v) != bundle {
			continue
		}
		out.Infos = append(out.Infos, versionInfo{AppVersion: v.Version, BundleID: bundleOf(v), VersionStatus: v.Status,
			BaseAudit: v.BaseAudit, PromoteAudit: v.PromoteAudit, CanRelease: v.CanRelease,
			CreateTime: time.Now().In(chinaTime).Format(time.DateTime), VersionDescription: "version " + v.Version})
	}
	sort.Slice(out.Infos, func(i, j int) bool { return versionLess(out.Infos[j].AppVersion, out.Infos[i].AppVersion) })
	newest := map[string]bool{}
	for _, v := range out.Infos {
		if !newest[v.VersionStatus] {
			newest[v.VersionStatus] = true
			out.Versions = append(out.Versions, v.AppVersion)
		}
	}
	return out
}

// versionDetail answers one version's detail.
func (s *Sim) versionDetail(miniAppID string, biz map[string]any) any {
	version := str(biz, "app_version")
	if version == "" {
		return errMissing.sub("isv.missing-parameter", "缺少必选参数app_version")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.init()
	v, found := s.recon.versions[miniAppID][version]
	if !found || str(biz, "bundle_id") != "" && str(biz, "bundle_id") != bundleOf(v) {
		return errNoVersion
	}
	status := v.Status
	if v.DetailStatus != "" {
		status = v.DetailStatus
	}
	return struct {
		success
		AppVersion         string          `json:"app_version"`
		Status             string          `json:"status"`
		RejectReason       string          `json:"reject_reason,omitempty"`
		BaseAudit          string          `json:"base_audit,omitempty"`
		PromoteAudit       string          `json:"promote_audit,omitempty"`
		BaseAuditRecord    json.RawMessage `json:"base_audit_record,omitempty"`
		PromoteAuditRecord json.RawMessage `json:"promote_audit_record,omitempty"`
		CanRelease         string          `json:"can_release,omitempty"`
		AppName            string          `json:"app_name"`
		VersionDesc        string          `json:"version_desc"`
		GmtAuditEnd        string          `json:"gmt_audit_end,omitempty"`
	}{success: ok, AppVersion: v.Version, Status: status, RejectReason: v.RejectReason, BaseAudit: v.BaseAudit,
		PromoteAudit: v.PromoteAudit, BaseAuditRecord: v.BaseAuditRecord, PromoteAuditRecord: v.PromoteAuditRecord,
		CanRelease: v.CanRelease, AppName: "mini-app " + miniAppID, VersionDesc: "version " + v.Version,
		GmtAuditEnd: time.Now().In(chinaTime).Format(time.DateTime)}
}

// tokenQuery answers alipay.open.auth.token.app.query: the token in
// biz_content is valid, invalid (the merchant cancelled), expired, or
// unknown.
func (s *Sim) tokenQuery(appID string, biz map[string]any) any {
	token := str(biz, "app_auth_token")
	if token == "" {
		return errMissing.sub("isv.missing-parameter", "缺少必选参数app_auth_token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recon.init()
	status := "valid"
	g, found := s.tokens[token]
	switch _, expired := s.recon.expired[token]; {
	case found && expired:
		return errTokenTimeout
	case !found:
		if g, found = s.recon.invalid[token]; !found {
			return errInvalidToken
		}
		status = "invalid"
	}
	if g.appID != appID {
		return errInvalidToken
	}
	now := time.Now().In(chinaTime)
	return struct {
		success
		AuthAppID   string   `json:"auth_app_id"`
		UserID      string   `json:"user_id"`
		Status      string   `json:"status"`
		ExpiresIn   int64    `json:"expires_in"`
		AuthStart   string   `json:"auth_start"`
		AuthEnd     string   `json:"auth_end"`
		AuthMethods []string `json:"auth_methods"`
	}{ok, g.authAppID, g.userID, status, s.expiresIn, now.Format(time.DateTime),
		now.Add(time.Duration(s.expiresIn) * time.Second).Format(time.DateTime),
		[]string{MethodAuthTokenQuery, MethodMiniVersionList, MethodMiniVersionDetail}}
}

func bundleOf(v Version) string {
	if v.BundleID == "" {
		return DefaultBundleID
	}
	return v.BundleID
}

// versionLess orders x.y.z versions by their numbers (text where a part is
// not a number).
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, errA := strconv.Atoi(pa[i])
		nb, errB := strconv.Atoi(pb[i])
		switch {
		case errA == nil && errB == nil && na != nb:
			return na < nb
		case (errA != nil || errB != nil) && pa[i] != pb[i]:
			return pa[i] < pb[i]
		}
	}
	return len(pa) < len(pb)
}

// chinaTime is Beijing time, in which Alipay writes its times.
var chinaTime = time.FixedZone("CST", 8*3600)
