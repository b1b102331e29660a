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

// tokenHalt says what a merchant token that cannot be had
// (outbound.Service.MerchantToken's error) does to the batch: stop it when
// the authorization is cancelled or was never recorded; pause it when the
// token expired or is missing, which the refresher or a new authorization
// may mend; neither ("", "") for any other error (the database, a key),
// which may pass.
func tokenHalt(err error) (stop, pause string) {
	switch notify.ErrorCode(err) {
	case notify.ENOTFOUND:
		return notify.StopAuthorizationCancelled, ""
	case notify.ECONFLICT:
		switch notify.ErrorReason(err) {
		case "token_expired":
			return "", notify.PauseTokenExpired
		case "no_token":
			return "", notify.PauseNoToken
		}
		return notify.StopAuthorizationCancelled, ""
	}
	return "", ""
}

// batchHalt says what Alipay's refusal be of recipient c does to batch b,
// when every recipient left would get it: the reason to stop it, or to
// pause it (the merchant's token timed out: it may be refreshed); ("", "")
// when it is the recipient's alone.
func batchHalt(b *notify.TemplateBatch, c notify.ClaimedRecipient, be *outbound.BusinessError) (stop, pause string) {
	switch be.Code {
	case codeAuthToken:
		switch {
		case b.AuthAppID == "":
			return notify.StopInsufficientPermissions, ""
		case be.SubCode == "aop.app-auth-token-time-out":
			return "", notify.PauseTokenExpired
		case be.SubCode == "aop.invalid-app-auth-token-no-api":
			return notify.StopInsufficientPermissions, ""
		}
		return notify.StopAuthorizationCancelled, ""
	case codeNoPermission:
		return notify.StopInsufficientPermissions, ""
	case codeInvalidArgument:
		if appRefusals[be.SubCode] {
			return notify.StopAppRefused, ""
		}
	}
	if c.Data == nil { // the batch's shared data
		return sharedDataRefusals[be.SubCode], ""
	}
	return "", ""
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
		// The query may have taken the call's whole timeout: the batch may
		// have been paused, cancelled or stopped meanwhile.
		if !s.stillRunning(ctx, &r, c) {
			r.unused = 1
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
	refused := be != nil && notify.ErrorCode(err) == outbound.EBUSINESS
	switch {
	case err == nil:
		o.Status, o.Code, r.metric = notify.RecipientSent, "10000", "sent"
	case refused && !be.Verified:
		// Unsigned: Alipay's, perhaps, or anyone's between. It may not
		// fail this recipient (it may have been sent), nor retry it (a
		// second message), nor stop the batch: unknown, and a refusal of
		// the whole batch pauses it, for an operator to look.
		o.Status, r.metric = notify.RecipientUnknown, "unknown"
		o.Error = "the refusal's signature did not verify (an unsigned answer): whether Alipay sent it is unknown: " + notify.ErrorMessage(err)
		r.limited = be.Code == codeCallLimited // slowing down takes nothing back
		if stop, pause := batchHalt(b, c, be); stop != "" || pause != "" {
			r.pause = notify.PauseUnverifiedRefusal
		}
	case be != nil && be.Code == codeCallLimited:
		r.limited = true
		s.retry(&r, "rate_limited", err)
	case refused:
		r.stop, r.pause = batchHalt(b, c, be)
		if r.pause != "" {
			// Refused, so surely not sent: sent once the batch resumes.
			s.retry(&r, "paused", err)
			break
		}
		o.Status, o.Error, r.metric = notify.RecipientFailed, notify.ErrorMessage(err), "failed"
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

// stillRunning checks, before a pre-checked recipient's send, that its
// batch is still running and the claim still held, and renews the claim
// for the send (Store.RenewClaim). When not, it sets r: a paused batch's
// recipient is pending again, a cancelled or stopped one's pending too,
// which the store records as cancelled (RecordRecipients); a claim lost
// meanwhile (made unknown) is left as it is; and a store error leaves the
// recipient pending, to try again: none of them was sent.
func (s *Sender) stillRunning(ctx context.Context, r *result, c notify.ClaimedRecipient) bool {
	status, held, err := s.cfg.Store.RenewClaim(ctx, c.BatchID, c.Seq, c.Attempt)
	o := &r.outcome
	o.Latency = r.took
	switch {
	case err != nil:
		s.retry(r, "retried", err)
		return false
	case status == notify.BatchRunning && held:
		return true
	case status == notify.BatchRunning:
		// ExpireClaims made it unknown: it stays so (and is counted so).
		o.Status, o.Error = notify.RecipientUnknown, "claim expired during the pre-check: not sent"
		return false
	}
	metric := "cancelled"
	if status == notify.BatchPaused {
		metric = "paused"
	}
	o.Status, r.metric, o.NextAt = notify.RecipientPending, metric, time.Now()
	o.Error = "not sent: the batch was " + status + " during the pre-check"
	return false
}

// precheckFailed sets r for a pre-check that did not say "subscribed":
// skipped when Alipay says the user is not; a query that failed is tried
// again (it changes nothing), and so is one refused unverified (pausing the
// batch when it refused the batch as a whole); a refused one fails the
// recipient (and stops the batch when every one would be refused), or
// pauses the batch with the recipient pending (the merchant's token timed
// out).
func (s *Sender) precheckFailed(r *result, b *notify.TemplateBatch, c notify.ClaimedRecipient, err error) {
	o := &r.outcome
	o.Latency = r.took
	var be *outbound.BusinessError
	if errors.As(err, &be) {
		o.Code, o.SubCode, o.SubMsg = be.Code, be.SubCode, be.SubMsg
	}
	refused := be != nil && notify.ErrorCode(err) == outbound.EBUSINESS
	switch {
	case err == nil:
		o.Status, o.Error, r.metric = notify.RecipientSkipped, "not subscribed: the subscription query does not list the template as subscribed", "skipped"
	case refused && !be.Verified:
		// The query changes nothing: tried again whatever it says.
		metric := "retried"
		if be.Code == codeCallLimited {
			r.limited, metric = true, "rate_limited"
		}
		if stop, pause := batchHalt(b, notify.ClaimedRecipient{Data: []byte("{}")}, be); stop != "" || pause != "" {
			r.pause = notify.PauseUnverifiedRefusal
		}
		s.retry(r, metric, err)
	case be != nil && be.Code == codeCallLimited:
		r.limited = true
		s.retry(r, "rate_limited", err)
	case refused:
		r.stop, r.pause = batchHalt(b, notify.ClaimedRecipient{Data: []byte("{}")}, be) // not about the data
		if r.pause != "" {
			s.retry(r, "paused", err)
			break
		}
		o.Status, o.Error, r.metric = notify.RecipientFailed, "the subscription query was refused: "+notify.ErrorMessage(err), "failed"
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
