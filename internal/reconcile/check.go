package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
)

// checker checks one claimed target.
type checker struct {
	r       *Reconciler
	ctx     context.Context
	t       *notify.ReconcileTarget
	checked int
	// renewed is when the lease was last taken or renewed.
	renewed time.Time
}

// check compares what the gateway holds of t with Alipay's answers and
// repairs the differences, and returns how many entities it compared. It
// returns the store's error (the target is left to a later claim), and
// errLost when another claim took the target over.
func (r *Reconciler) check(ctx context.Context, t *notify.ReconcileTarget) (int, error) {
	c := &checker{r: r, ctx: ctx, t: t, renewed: r.cfg.Now()}
	if t.Attempt > r.cfg.MaxAttempts {
		return 0, c.record(notify.ReconcileError{Kind: notify.RecErrAbandoned,
			Message: fmt.Sprintf("claimed %d times without finishing: given up in this run", t.Attempt-1)})
	}
	state, err := r.cfg.Store.ReconcileSnapshot(ctx, t)
	if err != nil {
		return 0, err
	}
	authChecked := false
	if t.AuthAppID != "" {
		if state.AuthStatus != "authorized" {
			return 0, nil // cancelled since the run started: no token to ask with
		}
		var usable bool
		if authChecked, usable, err = c.authorization(state); err != nil {
			return c.checked, err
		}
		if !usable {
			return c.checked, r.cfg.Store.MarkReconciled(ctx, t, authChecked, false)
		}
	}
	versionsChecked := false
	if t.MiniAppID != "" {
		if versionsChecked, err = c.versions(state); err != nil {
			return c.checked, err
		}
	}
	return c.checked, r.cfg.Store.MarkReconciled(ctx, t, authChecked, versionsChecked)
}

// authorization asks Alipay whether the merchant's token is valid and
// cancels the authorization when Alipay says it is invalid, unless the
// authorization changed since state was read (before the token asked
// about was): a grant or a refresh stored during the query replaced the
// token Alipay judged, and cancelling would end the new authorization;
// that is recorded on the run (token_changed) and changes nothing. It
// reports whether Alipay's answer was about the stored token, and whether
// the token may be used for the version queries.
func (c *checker) authorization(state *notify.ReconcileState) (answered, usable bool, err error) {
	var info *outbound.TokenInfo
	at, ok, err := c.call(outbound.MethodAuthTokenQuery, "", func(ctx context.Context) (err error) {
		info, err = c.r.cfg.Alipay.QueryToken(ctx, c.t.AppID, c.t.AuthAppID)
		return err
	})
	if err != nil || !ok {
		return false, false, err
	}
	c.checked++
	c.r.cfg.Metrics.ReconcileCheck(notify.DriftAuthorization)
	switch info.Status {
	case outbound.TokenValid:
		return true, true, nil
	case outbound.TokenInvalid:
	default:
		return true, false, c.record(notify.ReconcileError{Method: outbound.MethodAuthTokenQuery, Kind: notify.RecErrUnknownStatus,
			Message: fmt.Sprintf("Alipay answered token status %q, which the gateway does not know: nothing changed", notify.Clip(info.Status))})
	}
	observed, _ := json.Marshal(map[string]string{"status": info.Status, "auth_app_id": info.AuthAppID, "user_id": info.UserID})
	expect := state.AuthSetBy
	applied, err := c.repair(notify.Repair{
		Change: notify.AuthCancel{
			Origin:    notify.Origin{AppID: c.t.AppID, NotifyID: notify.RepairID(c.t.RunID, notify.DriftAuthorization, c.t.AuthAppID), At: c.observedAt(at)},
			AuthAppID: c.t.AuthAppID, UserID: info.UserID,
		},
		Kind: notify.DriftAuthorization, Entity: c.t.AuthAppID, Field: "status", After: "cancelled", Observed: observed,
		Expect: &expect,
	})
	if notify.ErrorCode(err) == notify.ECONFLICT {
		return false, false, c.record(notify.ReconcileError{Method: outbound.MethodAuthTokenQuery, Kind: notify.RecErrTokenChanged,
			Message: "Alipay answered the token invalid, but the authorization changed during the check (granted again or refreshed): " +
				notify.ErrorMessage(err) + "; nothing changed, the next run asks with the new token"})
	}
	if err == nil && !applied {
		c.r.log.Warn().Int64("run", c.t.RunID).Str("app_id", c.t.AppID).Str("auth_app_id", c.t.AuthAppID).
			Msg("reconcile: Alipay answered the token invalid, but the authorization was cancelled since, or set by a grant newer than the query less the clock skew: nothing changed")
	}
	return true, false, err
}

// observedAt dates an observation made by a call that started at: its
// place in the ordering with the notifications is the call's start less
// the clock skew allowed (Config.ClockSkew), so that a notification Alipay
// dates near the query, on a clock that may lag the gateway's, wins.
func (c *checker) observedAt(at time.Time) int64 {
	return at.Add(-c.r.cfg.ClockSkew).UnixMilli()
}

// versions compares the mini-app's versions with Alipay's and repairs
// those that differ. It reports whether Alipay's list answered.
func (c *checker) versions(state *notify.ReconcileState) (bool, error) {
	if state.MiniAppOwner != "" && state.MiniAppOwner != c.t.AppID {
		return false, c.record(notify.ReconcileError{Kind: notify.RecErrForeign,
			Message: fmt.Sprintf("mini-app %s belongs to app %s: app %s's answer changes nothing", c.t.MiniAppID, state.MiniAppOwner, c.t.AppID)})
	}
	var list []outbound.MiniVersion
	_, ok, err := c.call(outbound.MethodMiniVersionList, "", func(ctx context.Context) (err error) {
		list, err = c.r.cfg.Alipay.MiniVersions(ctx, c.t.AppID, c.t.AuthAppID, KnownStatuses)
		return err
	})
	if err != nil || !ok {
		return false, err
	}
	// The newest version with an outcome sets the app-level state; Alipay
	// lists the newest version number first.
	newest := ""
	for _, v := range list {
		if s, _ := AuditState(v.Status); s != "" {
			newest = v.Version
			break
		}
	}
	listed := map[string]bool{}
	for i := len(list) - 1; i >= 0; i-- { // oldest first: the newest's repair is the latest
		v := list[i]
		listed[v.Version] = true
		c.checked++
		c.r.cfg.Metrics.ReconcileCheck(notify.DriftMiniAppVersion)
		s, known := AuditState(v.Status)
		switch stored, has := state.Versions[v.Version]; {
		case !known:
			err = c.record(notify.ReconcileError{Method: outbound.MethodMiniVersionList, Version: v.Version, Kind: notify.RecErrUnknownStatus,
				Message: fmt.Sprintf("version %s has status %q, which the gateway does not know: nothing changed", v.Version, notify.Clip(v.Status))})
		case s == "" || has && stored == s:
			continue
		default:
			err = c.version(v.Version, v.BundleID, v.Status, state, v.Version != newest)
		}
		if err != nil {
			return true, err
		}
	}
	// A stored version the list leaves out has a status the gateway does
	// not ask for, or is gone: its detail says which.
	var unlisted []string
	for v := range state.Versions {
		if !listed[v] {
			unlisted = append(unlisted, v)
		}
	}
	sort.Strings(unlisted)
	for _, v := range unlisted {
		c.checked++
		c.r.cfg.Metrics.ReconcileCheck(notify.DriftMiniAppVersion)
		if err := c.version(v, "", "", state, true); err != nil {
			return true, err
		}
	}
	return true, nil
}

// version asks the detail of a version whose listed status (listStatus,
// empty when unlisted) differs from the stored one, and repairs it as the
// detail says.
func (c *checker) version(version, bundleID, listStatus string, state *notify.ReconcileState, versionOnly bool) error {
	var d *outbound.MiniVersionDetail
	at, ok, err := c.call(outbound.MethodMiniVersionDetail, version, func(ctx context.Context) (err error) {
		d, err = c.r.cfg.Alipay.MiniVersionDetail(ctx, c.t.AppID, c.t.AuthAppID, version, bundleID)
		return err
	})
	if err != nil || !ok {
		return err
	}
	s, known := AuditState(d.Status)
	stored, has := state.Versions[version]
	switch {
	case !known:
		return c.record(notify.ReconcileError{Method: outbound.MethodMiniVersionDetail, Version: version, Kind: notify.RecErrUnknownStatus,
			Message: fmt.Sprintf("version %s has status %q, which the gateway does not know: nothing changed", version, notify.Clip(d.Status))})
	case s == "" || has && stored == s:
		return nil
	}
	reason := ""
	if s == notify.AuditRejected {
		reason = d.RejectReason
	}
	observed, _ := json.Marshal(map[string]string{"version_status": listStatus, "status": d.Status, "reject_reason": d.RejectReason,
		"base_audit": d.BaseAudit, "promote_audit": d.PromoteAudit})
	entity := c.t.MiniAppID + "@" + version
	_, err = c.repair(notify.Repair{
		Change: notify.AuditChange{
			Origin:             notify.Origin{AppID: c.t.AppID, NotifyID: notify.RepairID(c.t.RunID, notify.DriftMiniAppVersion, entity), At: c.observedAt(at)},
			Method:             notify.MethodReconcile,
			MiniAppID:          c.t.MiniAppID,
			Version:            version,
			AuditStatus:        s,
			BundleID:           bundleID,
			AuditReason:        reason,
			BaseAudit:          d.BaseAudit,
			PromoteAudit:       d.PromoteAudit,
			BaseAuditReason:    reasonObject(d.BaseAuditRecord),
			PromoteAuditReason: reasonObject(d.PromoteAuditRecord),
			VersionOnly:        versionOnly,
		},
		Kind: notify.DriftMiniAppVersion, Entity: entity, Field: "audit_status", After: s, Observed: observed,
	})
	return err
}

// reasonObject keeps a reason record when it is a JSON object; null
// otherwise.
func reasonObject(m json.RawMessage) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal(m, &obj) != nil || obj == nil {
		return json.RawMessage("null")
	}
	return m
}

// repair applies r for the checker's target, and counts and logs it when
// it applied.
func (c *checker) repair(r notify.Repair) (bool, error) {
	r.Target = *c.t
	applied, err := c.r.cfg.Store.Repair(c.ctx, r)
	if err != nil || !applied {
		return false, err
	}
	c.r.cfg.Metrics.ReconcileRepair(r.Kind)
	c.r.log.Warn().Int64("run", c.t.RunID).Str("app_id", c.t.AppID).Str("auth_app_id", c.t.AuthAppID).Str("kind", r.Kind).
		Str("entity", r.Entity).Str("field", r.Field).Str("after", r.After).Str("notify_id", r.Change.Ordering().NotifyID).
		Msg("reconcile: repaired what a lost notification would have set")
	return true, nil
}

// call takes a token of the ISV app's bucket and calls fn, trying again
// after Alipay's 40005 (rate limited). It returns when the successful
// call started, and ok false when Alipay's answer was an error or could
// not be trusted (recorded on the run); err is the store's, or errLost.
func (c *checker) call(method, version string, fn func(context.Context) error) (at time.Time, ok bool, err error) {
	backoff := c.r.cfg.RateLimitBackoff
	for attempt := 0; ; attempt++ {
		if err := c.take(); err != nil {
			return at, false, err
		}
		at = c.r.cfg.Now()
		callErr := fn(c.ctx)
		if err := c.renew(); err != nil {
			return at, false, err
		}
		if callErr == nil {
			return at, true, nil
		}
		if c.ctx.Err() != nil {
			return at, false, c.ctx.Err()
		}
		if notify.ErrorCode(callErr) == notify.EUNAVAILABLE {
			return at, false, callErr // the database, reading the token: left to a later claim
		}
		e := classify(callErr)
		e.Method, e.Version = method, version
		retry := e.Kind == notify.RecErrRateLimited && attempt < c.r.cfg.RateLimitRetries
		if retry {
			e.Message += fmt.Sprintf(" (try %d of %d; again in %s)", attempt+1, c.r.cfg.RateLimitRetries+1, backoff)
		}
		if err := c.record(e); err != nil {
			return at, false, err
		}
		if !retry {
			return at, false, nil
		}
		select {
		case <-time.After(backoff):
		case <-c.ctx.Done():
			return at, false, c.ctx.Err()
		}
		backoff *= 2
	}
}

// take waits for a token of the target's ISV app in the shared bucket.
func (c *checker) take() error {
	if c.r.cfg.Limiter == nil || c.r.cfg.Rate <= 0 {
		return nil
	}
	for {
		granted, wait, err := c.r.cfg.Limiter.TakeTokens(c.ctx, "openapi:"+c.t.AppID+":reconcile", c.r.cfg.Rate, 1, 1)
		if err != nil || granted > 0 {
			return err
		}
		if err := c.renew(); err != nil { // a long wait for the bucket keeps the lease
			return err
		}
		wait = max(wait, 5*time.Millisecond)
		select {
		case <-time.After(wait):
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
}

// renew renews the target's lease once half of it has passed; errLost
// when another claim took it.
func (c *checker) renew() error {
	now := c.r.cfg.Now()
	if now.Sub(c.renewed) < c.r.cfg.Lease/2 {
		return nil
	}
	mine, err := c.r.cfg.Store.ExtendLease(c.ctx, c.t, c.r.cfg.Lease)
	if err != nil {
		return err
	}
	if !mine {
		return errLost
	}
	c.renewed = now
	return nil
}

// record records e on the checker's run, for its target.
func (c *checker) record(e notify.ReconcileError) error {
	e.RunID, e.AppID, e.AuthAppID, e.MiniAppID = c.t.RunID, c.t.AppID, c.t.AuthAppID, c.t.MiniAppID
	c.r.cfg.Metrics.ReconcileError(e.Kind)
	ev := c.r.log.Warn()
	if e.Kind == notify.RecErrInvalidToken || e.Kind == notify.RecErrNoToken {
		ev = c.r.log.Error() // a merchant's token that does not work: reported, tried again next run
	}
	ev.Int64("run", e.RunID).Str("app_id", e.AppID).Str("auth_app_id", e.AuthAppID).Str("mini_app_id", e.MiniAppID).
		Str("version", e.Version).Str("method", e.Method).Str("kind", e.Kind).Str("code", e.Code).Str("sub_code", e.SubCode).
		Str("reason", e.Message).Msg("reconcile: check failed, nothing changed")
	return c.r.cfg.Store.RecordReconcileError(c.ctx, e)
}

// classify turns an error of an Alipay call into the run's error record.
func classify(err error) notify.ReconcileError {
	e := notify.ReconcileError{Kind: notify.RecErrUpstream, Message: notify.ErrorMessage(err)}
	var be *outbound.BusinessError
	if errors.As(err, &be) {
		e.Code, e.SubCode = be.Code, be.SubCode
		switch {
		case be.Code == "40005":
			e.Kind = notify.RecErrRateLimited
		case be.Code == "20001":
			e.Kind = notify.RecErrInvalidToken
		case notify.ErrorCode(err) == outbound.EBUSINESS:
			e.Kind = notify.RecErrBusiness
		}
		return e
	}
	switch notify.ErrorCode(err) {
	case notify.ECONFLICT, notify.ENOTFOUND, notify.EINTERNAL:
		e.Kind = notify.RecErrNoToken // the stored token is not to be used: Alipay was not asked
	}
	return e
}
