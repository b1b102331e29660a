package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/retention"
)

// prune is `gateway prune [--dry-run]`: it deletes now what the RETENTION_*
// settings no longer keep, as every gateway does each PRUNE_INTERVAL (one
// at a time: while a gateway prunes, it says so and deletes nothing), and
// prints what it deleted, spending a tenth of its time deleting (cliDuty).
// With --dry-run it counts what it would delete and deletes nothing.
func prune(args []string, stdout io.Writer) error {
	c, dryRun, err := openDryRun("prune", "count what would be deleted, delete nothing", args)
	if c == nil {
		return err
	}
	defer c.close()
	ctx, cfg, db, log := c.ctx, c.cfg, c.db, c.log
	r := cfg.Retention()
	for _, k := range r.Kept() {
		if k.For == 0 {
			fmt.Fprintf(stdout, "%-22s kept forever\n", k.What)
		}
	}
	if len(r.Cutoffs(time.Now())) == 0 {
		fmt.Fprintln(stdout, "everything is kept forever: nothing to prune")
		return nil
	}
	if dryRun {
		for _, c := range r.Cutoffs(time.Now()) {
			n, err := db.Prunable(ctx, c)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%-22s %d to delete (older than %s; dry run: nothing deleted)\n", c.What, n, c.Before.UTC().Format(time.RFC3339))
		}
		return nil
	}
	// It cannot see the gateways' intake: a tenth of its time deleting.
	res, err := retention.New(retention.Config{Store: db, Retention: r, Batch: cfg.PruneBatch, Duty: cliDuty, Logger: log}).Run(ctx)
	if !res.Ran && err == nil {
		return errors.New("prune: another gateway is pruning now; nothing deleted")
	}
	for _, c := range r.Cutoffs(time.Now()) {
		fmt.Fprintf(stdout, "%-22s %d deleted\n", c.What, res.Deleted[c.What])
	}
	return err
}

// cliDuty is the share of its time `gateway prune` spends deleting
// (retention.Config.Duty): less than the gateways' pruner, which yields to
// a busy intake, since it cannot see the intake's load.
const cliDuty = 0.1

// retentionGauge is r by what it prunes, for the retention_seconds gauge.
func retentionGauge(r notify.Retention) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, k := range r.Kept() {
		out[string(k.What)] = k.For
	}
	return out
}
