package console

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

func (c *Console) batchRoutes(r chi.Router) {
	r.Get("/", c.batches)
	r.Get("/{id}", c.batch)
	r.Post("/{id}/pause", c.batchAction("paused", Batches.Pause))
	r.Post("/{id}/resume", c.batchAction("resumed", Batches.Resume))
	r.Post("/{id}/cancel", c.batchAction("cancelled", Batches.Cancel))
	r.Post("/{id}/retry-unknown", c.retryUnknown)
}

// batchStatuses and recipientStatuses are the filters' choices, in the
// order they are offered.
var (
	batchStatuses = []string{notify.BatchRunning, notify.BatchPaused, notify.BatchFinished, notify.BatchStopped, notify.BatchCancelled}
	// recipientStatuses leaves sending out: a claim in flight, for a
	// moment; it is counted with pending.
	recipientStatuses = []string{notify.RecipientSent, notify.RecipientFailed, notify.RecipientSkipped, notify.RecipientUnknown,
		notify.RecipientPending, notify.RecipientCancelled}
)

type batchesData struct {
	Query    listQuery
	Items    []*view.BatchProgress
	Statuses []string
}

// batches lists the batches newest first, with their progress.
func (c *Console) batches(w http.ResponseWriter, r *http.Request) {
	v, err := formValues(r, "status", "app_id")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if s := v["status"]; s != "" && !slices.Contains(batchStatuses, s) {
		c.fail(w, r, badQuery("status", errWord("running, paused, finished, stopped or cancelled")))
		return
	}
	items, next, err := c.cfg.Store.BatchList(r.Context(), view.BatchFilter{AppID: v["app_id"], Status: v["status"], After: r.URL.Query().Get("cursor")})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "batches", "nav.batches", batchesData{Query: listQuery{Values: v, Next: nextPage(r, next)}, Items: items, Statuses: batchStatuses})
}

// statusCount is a recipient status with its count, for the filter links.
type statusCount struct {
	Status string
	N      int
}

type batchData struct {
	Batch      *view.TemplateBatch
	Done       int           // recipients no longer pending or being sent
	ETA        time.Duration // 0: none
	SubCodes   []count       // failed, by sub_code, most first
	Counts     []statusCount // by recipient status, in recipientStatuses' order
	Status     string        // the recipients' filter
	Recipients []*view.BatchRecipient
	Next       string
}

// Can says whether the batch's status allows an action (the store
// decides; the page offers only what it would allow).
func (d *batchData) Can(action string) bool {
	switch s := d.Batch.Status; action {
	case "pause":
		return s == notify.BatchRunning
	case "resume":
		return s == notify.BatchPaused
	case "cancel":
		return s == notify.BatchRunning || s == notify.BatchPaused
	case "retry-unknown":
		return d.Batch.Counts.Unknown > 0 && s != notify.BatchCancelled && s != notify.BatchStopped
	}
	return false
}

// batch shows one batch: its template, its progress, rate and time left,
// its failures by sub_code, the actions its status allows, and its
// recipients of an outcome, a page at a time.
func (c *Console) batch(w http.ResponseWriter, r *http.Request) {
	id, err := idOf(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v, err := formValues(r, "status")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	status := v["status"]
	if status != "" && !slices.Contains(recipientStatuses, status) && status != notify.RecipientSending {
		c.fail(w, r, badQuery("status", errWord("sent, failed, skipped, unknown, pending, sending or cancelled")))
		return
	}
	ctx := r.Context()
	b, err := c.cfg.Batches.Batch(ctx, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rs, next, err := c.cfg.Batches.Recipients(ctx, view.RecipientFilter{BatchID: id, Status: status, After: r.URL.Query().Get("cursor")})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := batchData{Batch: b, Done: b.Counts.Total - b.Counts.Pending - b.Counts.Sending, Status: status, Recipients: rs, Next: nextPage(r, next)}
	if b.ETASeconds != nil {
		d.ETA = time.Duration(*b.ETASeconds * float64(time.Second))
	}
	for k, n := range b.FailedBySubCode {
		d.SubCodes = append(d.SubCodes, count{k, n})
	}
	sort.Slice(d.SubCodes, func(i, j int) bool {
		return d.SubCodes[i].N > d.SubCodes[j].N || d.SubCodes[i].N == d.SubCodes[j].N && d.SubCodes[i].Key < d.SubCodes[j].Key
	})
	by := map[string]int{notify.RecipientSent: b.Counts.Sent, notify.RecipientFailed: b.Counts.Failed, notify.RecipientSkipped: b.Counts.Skipped,
		notify.RecipientUnknown: b.Counts.Unknown, notify.RecipientPending: b.Counts.Pending + b.Counts.Sending, notify.RecipientCancelled: b.Counts.Cancelled}
	for _, s := range recipientStatuses {
		d.Counts = append(d.Counts, statusCount{s, by[s]})
	}
	c.render(w, r, "batch", "batch.title", &d)
}

// batchAction is a POST that changes a batch's status with do, then
// shows the batch with the flash message of done.
func (c *Console) batchAction(done string, do func(Batches, context.Context, int64) (*view.TemplateBatch, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := idOf(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if _, err := do(c.cfg.Batches, r.Context(), id); err != nil {
			c.fail(w, r, err)
			return
		}
		c.log.Info().Int64("batch_id", id).Str("action", done).Msg("template message batch steered from the console")
		c.done(w, r, Base+"/batches/"+strconv.FormatInt(id, 10), done)
	}
}

// retryUnknown queues the unknown recipients again, once the operator has
// confirmed knowing that they may get the message twice.
func (c *Console) retryUnknown(w http.ResponseWriter, r *http.Request) {
	id, err := idOf(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		c.fail(w, r, notify.Errorf(notify.EINVALID, "not_confirmed",
			"retry-unknown may send the message twice to recipients who already got it: tick the box that says so"))
		return
	}
	b, err := c.cfg.Batches.RetryUnknown(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	n := 0
	if b.Requeued != nil {
		n = *b.Requeued
	}
	c.log.Warn().Int64("batch_id", id).Int("requeued", n).Msg("template message batch: unknown recipients queued again from the console; they may get the message twice")
	c.done(w, r, Base+"/batches/"+strconv.FormatInt(id, 10), "requeued")
}
