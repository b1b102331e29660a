package batchsend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
)

// What Alipay's answers mean for a batch. The codes are those of
// docs/template-message-batches.md §1 (the common error codes and the
// send's sub_codes, with their sources).
const (
	// codeCallLimited is Alipay's 调用频次超限 (call frequency limit
	// exceeded): the call was refused before it was processed.
	codeCallLimited = "40005"
	// codeAuthToken is 授权权限不足 (insufficient authorization): for a
	// merchant, its app_auth_token is invalid, expired or lacks the API.
	codeAuthToken = "20001"
	// codeNoPermission is 40006, the app may not call the method.
	codeNoPermission = "40006"
	// codeInvalidArgument is 40002, whose sub_codes below refuse the app's
	// request itself, whatever the recipient.
	codeInvalidArgument = "40002"
)

// appRefusals are 40002 sub_codes that refuse the app's request itself
// (its signature, its app id): every call of the batch would get them.
var appRefusals = map[string]bool{
	"isv.invalid-signature":      true,
	"isv.invalid-signature-type": true,
	"isv.invalid-app-id":         true,
}

// sharedDataRefusals are sub_codes of a refused template or data: with
// the batch's shared data, every recipient would get them.
var sharedDataRefusals = map[string]string{
	"USER_TEMPLATE_ILLEGAL":      notify.StopTemplateIllegal,
	"USER_TEMPLATE_LACK_KEYWORD": notify.StopTemplateKeywords,
	"USER_KEYWORD_LENGTH_ERROR":  notify.StopTemplateKeywords,
}

// tokenStop returns the stop reason of a merchant token that cannot be
// had (outbound.Service.MerchantToken's error): its authorization is
// cancelled, or was never recorded, or its token expired; "" for any other
// error (the database, a key), which may pass.
func tokenStop(err error) string {
	switch notify.ErrorCode(err) {
	case notify.ENOTFOUND:
		return notify.StopAuthorizationCancelled
	case notify.ECONFLICT:
		if notify.ErrorReason(err) == "token_expired" {
			return notify.StopAuthorizationExpired
		}
		return notify.StopAuthorizationCancelled
	}
	return ""
}

// batchStop returns why Alipay's refusal be of recipient c stops batch b
// (every recipient left would get it), or "".
func batchStop(b *notify.TemplateBatch, c notify.ClaimedRecipient, be *outbound.BusinessError) string {
	switch be.Code {
	case codeAuthToken:
		switch {
		case b.AuthAppID == "":
			return notify.StopInsufficientPermissions
		case be.SubCode == "aop.app-auth-token-time-out":
			return notify.StopAuthorizationExpired
		case be.SubCode == "aop.invalid-app-auth-token-no-api":
			return notify.StopInsufficientPermissions
		}
		return notify.StopAuthorizationCancelled
	case codeNoPermission:
		return notify.StopInsufficientPermissions
	case codeInvalidArgument:
		if appRefusals[be.SubCode] {
			return notify.StopAppRefused
		}
	}
	if c.Data == nil { // the batch's shared data
		return sharedDataRefusals[be.SubCode]
	}
	return ""
}

// attempt makes recipient c's calls for batch b of appID: the pre-check
// (if the batch asks for one), then the send; and says what they came to.
func (s *Sender) attempt(ctx context.Context, appID string, b *notify.TemplateBatch, token string, c notify.ClaimedRecipient) result {
	r := result{batch: b, outcome: notify.RecipientOutcome{BatchID: c.BatchID, Seq: c.Seq, Attempt: c.Attempt}}
	user := c.ToUserID
	if user == "" {
		user = c.ToOpenID
	}
	if b.Precheck {
		subscribed, took, err := s.cfg.Outbound.Subscribed(ctx, appID, token, user, b.UserTemplateID)
		r.took = took
		if err != nil || !subscribed {
			r.unused = 1 // the send's token
			s.precheckFailed(&r, b, c, err)
			return r
		}
	}
	data := c.Data
	if data == nil {
		data = b.Data
	}
	took, err := s.cfg.Outbound.SendBatchMessage(ctx, appID, token, outbound.BatchMessage{
		ToUserID: c.ToUserID, ToOpenID: c.ToOpenID, UserTemplateID: b.UserTemplateID, Page: b.Page, Data: data,
	})
	r.took += took
	r.outcome.Latency = r.took
	o := &r.outcome
	var be *outbound.BusinessError
	if errors.As(err, &be) {
		o.Code, o.SubCode, o.SubMsg = be.Code, be.SubCode, be.SubMsg
	}
	switch {
	case err == nil:
		o.Status, o.Code, r.metric = notify.RecipientSent, "10000", "sent"
	case be != nil && be.Code == codeCallLimited:
		r.limited = true
		s.retry(&r, "rate_limited", err)
	case be != nil && notify.ErrorCode(err) == outbound.EBUSINESS:
		o.Status, o.Error, r.metric = notify.RecipientFailed, notify.ErrorMessage(err), "failed"
		r.stop = batchStop(b, c, be)
	case outbound.NotSent(err):
		s.retry(&r, "retried", err)
	default:
		// Alipay's 20000, a timeout or a failure after the request was
		// written, an HTTP 5xx, an answer that cannot be trusted: it may
		// have been sent.
		o.Status, o.Error, r.metric = notify.RecipientUnknown, notify.ErrorMessage(err), "unknown"
	}
	return r
}

// precheckFailed sets r for a pre-check that did not say "subscribed":
// skipped when Alipay says the user is not; a query that failed is tried
// again (it changes nothing), a refused one fails the recipient (and stops
// the batch when every one would be refused).
func (s *Sender) precheckFailed(r *result, b *notify.TemplateBatch, c notify.ClaimedRecipient, err error) {
	o := &r.outcome
	o.Latency = r.took
	var be *outbound.BusinessError
	if errors.As(err, &be) {
		o.Code, o.SubCode, o.SubMsg = be.Code, be.SubCode, be.SubMsg
	}
	switch {
	case err == nil:
		o.Status, o.Error, r.metric = notify.RecipientSkipped, "not subscribed: the subscription query does not list the template as subscribed", "skipped"
	case be != nil && be.Code == codeCallLimited:
		r.limited = true
		s.retry(r, "rate_limited", err)
	case be != nil && notify.ErrorCode(err) == outbound.EBUSINESS:
		o.Status, o.Error, r.metric = notify.RecipientFailed, "the subscription query was refused: "+notify.ErrorMessage(err), "failed"
		r.stop = batchStop(b, notify.ClaimedRecipient{Data: []byte("{}")}, be) // not about the data
	default:
		s.retry(r, "retried", err)
	}
}

// retry schedules r's recipient again after the backoff, unless its
// attempts ran out: then it is failed, "retries exhausted".
func (s *Sender) retry(r *result, metric string, err error) {
	o := &r.outcome
	r.metric = metric
	if o.Attempt >= s.cfg.MaxAttempts {
		o.Status, r.metric = notify.RecipientFailed, "failed"
		o.Error = fmt.Sprintf("retries exhausted after %d attempts: %s", o.Attempt, notify.ErrorMessage(err))
		return
	}
	o.Status, o.Error = notify.RecipientPending, notify.ErrorMessage(err)
	o.NextAt = time.Now().Add(s.cfg.Backoff(o.Attempt))
}
