package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"
)

// rateOptions are what `openapisim rates` checks.
type rateOptions struct {
	// N, when positive, takes the first N send times only.
	N int
	// MinRate, when positive, is the least overall rate that passes.
	MinRate float64
	// Target, when positive, is the rate the steady part and every window
	// must be within Tolerance (a share) of, after Drop.
	Target, Tolerance float64
	Drop, Window      time.Duration
}

// rateReport is what `openapisim rates` prints. Rates are sends a second;
// a span of n sends is from the first to the last, so its rate is
// (n-1)/span.
type rateReport struct {
	N     int     `json:"n"`
	SpanS float64 `json:"span_s"`
	Rate  float64 `json:"rate"`
	// After dropping the first Drop: the sends kept, their rate, the
	// count of each full Window from the first kept send a second, and
	// the least and most of the full one-second windows.
	Kept       int       `json:"kept,omitempty"`
	SteadyRate float64   `json:"steady_rate,omitempty"`
	Windows    []float64 `json:"windows,omitempty"`
	SecondMin  float64   `json:"second_min,omitempty"`
	SecondMax  float64   `json:"second_max,omitempty"`
	Pass       bool      `json:"pass"`
	Fails      []string  `json:"fails,omitempty"`
}

// analyze measures send times (Unix microseconds, any order) against o.
func analyze(times []int64, o rateOptions) rateReport {
	ts := slices.Clone(times)
	slices.Sort(ts)
	if o.N > 0 && len(ts) > o.N {
		ts = ts[:o.N]
	}
	r := rateReport{N: len(ts)}
	fail := func(format string, args ...any) { r.Fails = append(r.Fails, fmt.Sprintf(format, args...)) }
	if o.N > 0 && len(ts) < o.N {
		fail("%d sends, want %d", len(ts), o.N)
	}
	if len(ts) < 2 {
		fail("fewer than two sends")
		return r
	}
	r.SpanS = float64(ts[len(ts)-1]-ts[0]) / 1e6
	r.Rate = rate(len(ts), r.SpanS)
	if o.MinRate > 0 && r.Rate < o.MinRate {
		fail("rate %.1f/s below %.1f/s", r.Rate, o.MinRate)
	}
	if o.Target > 0 {
		lo, hi := o.Target*(1-o.Tolerance), o.Target*(1+o.Tolerance)
		start := ts[0] + o.Drop.Microseconds()
		i, _ := slices.BinarySearch(ts, start)
		kept := ts[i:]
		r.Kept = len(kept)
		if len(kept) < 2 {
			fail("fewer than two sends after the first %v", o.Drop)
		} else {
			r.SteadyRate = rate(len(kept), float64(kept[len(kept)-1]-kept[0])/1e6)
			if r.SteadyRate < lo || r.SteadyRate > hi {
				fail("steady rate %.2f/s outside [%.2f, %.2f]", r.SteadyRate, lo, hi)
			}
			r.Windows = windows(kept, o.Window)
			if len(r.Windows) == 0 {
				fail("no full %v window after the first %v", o.Window, o.Drop)
			}
			for k, w := range r.Windows {
				if w < lo || w > hi {
					fail("window %d (%v from the first kept send): %.2f/s outside [%.2f, %.2f]", k, time.Duration(k)*o.Window, w, lo, hi)
				}
			}
			if s := windows(kept, time.Second); len(s) > 0 {
				r.SecondMin, r.SecondMax = slices.Min(s), slices.Max(s)
			}
		}
	}
	r.Pass = len(r.Fails) == 0
	return r
}

// rate is n sends over span seconds, first to last; 0 for no span.
func rate(n int, span float64) float64 {
	if span <= 0 {
		return 0
	}
	return float64(n-1) / span
}

// windows counts ts (sorted, not empty) in consecutive windows of length
// w from ts[0], the full ones only (ending at or before the last send),
// as sends a second.
func windows(ts []int64, w time.Duration) []float64 {
	us := w.Microseconds()
	if us <= 0 {
		return nil
	}
	full := int((ts[len(ts)-1] - ts[0]) / us)
	out := make([]float64, full)
	for _, t := range ts {
		if k := int((t - ts[0]) / us); k < full {
			out[k]++
		}
	}
	for k := range out {
		out[k] /= w.Seconds()
	}
	return out
}

// runRates is `openapisim rates`: it reads GET /sim/stats?times=1's JSON
// from stdin, prints the rateReport as JSON, and fails when it does not
// pass.
func runRates(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("openapisim rates", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o rateOptions
	fs.IntVar(&o.N, "n", 0, "take the first N sends (fewer fails)")
	fs.Float64Var(&o.MinRate, "min-rate", 0, "fail when the rate, first to last send, is below this")
	fs.Float64Var(&o.Target, "target", 0, "the rate the steady part and each window must be near")
	fs.Float64Var(&o.Tolerance, "tolerance", 0.05, "how near, as a share of -target")
	fs.DurationVar(&o.Drop, "drop", 2*time.Second, "with -target: leave out the sends of this long from the first")
	fs.DurationVar(&o.Window, "window", 10*time.Second, "with -target: each full window of this long must be near it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var st struct {
		SendTimes []int64 `json:"send_times"`
	}
	if err := json.NewDecoder(stdin).Decode(&st); err != nil {
		return fmt.Errorf("stdin: want GET /sim/stats?times=1's JSON: %v", err)
	}
	r := analyze(st.SendTimes, o)
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(r); err != nil {
		return err
	}
	if !r.Pass {
		return errors.New("rates: FAIL")
	}
	return nil
}
