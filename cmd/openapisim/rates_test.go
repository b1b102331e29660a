package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// even is n send times a second apart by 1/perSecond from t0, shuffled
// (the analysis sorts).
func even(t0 int64, n int, perSecond float64) []int64 {
	ts := make([]int64, n)
	for i := range ts {
		ts[i] = t0 + int64(float64(i)*1e6/perSecond)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
	return ts
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestAnalyze(t *testing.T) {
	t.Parallel()
	const t0 = 1_700_000_000_000_000
	steady := rateOptions{Target: 50, Tolerance: 0.05, Drop: 2 * time.Second, Window: 10 * time.Second}

	t.Run("OKDrain", func(t *testing.T) {
		t.Parallel()
		// 20,000 sends at 1,250/s: 16 s less one gap.
		r := analyze(even(t0, 20000, 1250), rateOptions{N: 20000, MinRate: 1000})
		if !r.Pass || r.N != 20000 || !near(r.Rate, 1250) || !near(r.SpanS, 19999/1250.0) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("ErrDrainSlow", func(t *testing.T) {
		t.Parallel()
		r := analyze(even(t0, 20000, 900), rateOptions{N: 20000, MinRate: 1000})
		if r.Pass || len(r.Fails) != 1 || !strings.Contains(r.Fails[0], "rate 900.0/s below") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("ErrDrainShort", func(t *testing.T) {
		t.Parallel()
		if r := analyze(even(t0, 19999, 2000), rateOptions{N: 20000, MinRate: 1000}); r.Pass {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("OKSteady", func(t *testing.T) {
		t.Parallel()
		// A burst of 40 at the start (dropped), then 50/s for 60 s.
		ts := even(t0+2_500_000, 3000, 50)
		for i := range 40 {
			ts = append(ts, t0+int64(i)*1000)
		}
		r := analyze(ts, steady)
		if !r.Pass || r.Kept != 3000 || !near(r.SteadyRate, 50) || len(r.Windows) != 5 || r.SecondMin != 50 || r.SecondMax != 50 {
			t.Fatalf("%+v", r)
		}
		for _, w := range r.Windows {
			if w != 50 {
				t.Fatalf("windows %v", r.Windows)
			}
		}
	})
	t.Run("ErrWindowOff", func(t *testing.T) {
		t.Parallel()
		// 50/s on average, but 40/s then 60/s by halves: the steady rate
		// passes, the windows do not.
		ts := even(t0, 1200, 40)
		last := t0 + int64(1199*1e6/40)
		ts = append(ts, even(last+16667, 1800, 60)...)
		r := analyze(ts, steady)
		if r.Pass || near(r.SteadyRate, 0) || math.Abs(r.SteadyRate-50) > 2.5 {
			t.Fatalf("%+v", r)
		}
		if !strings.Contains(strings.Join(r.Fails, ";"), "window 0") {
			t.Fatalf("fails %q", r.Fails)
		}
	})
	t.Run("ErrSteadyFast", func(t *testing.T) {
		t.Parallel()
		r := analyze(even(t0, 3000, 53), steady)
		if r.Pass || !strings.Contains(r.Fails[0], "steady rate 53.00/s outside [47.50, 52.50]") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("ErrNoFullWindow", func(t *testing.T) {
		t.Parallel()
		if r := analyze(even(t0, 400, 50), steady); r.Pass || !strings.Contains(strings.Join(r.Fails, ";"), "no full 10s window") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("ErrEmpty", func(t *testing.T) {
		t.Parallel()
		if r := analyze(nil, steady); r.Pass {
			t.Fatalf("%+v", r)
		}
	})
}

func TestRunRates(t *testing.T) {
	t.Parallel()
	in, _ := json.Marshal(map[string]any{"sent": 3000, "send_times": even(1_700_000_000_000_000, 3000, 50)})
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		var out bytes.Buffer
		if err := runRates([]string{"-target", "50"}, bytes.NewReader(in), &out, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		var r rateReport
		if err := json.Unmarshal(out.Bytes(), &r); err != nil || !r.Pass || r.N != 3000 {
			t.Fatalf("%s: %v", out.Bytes(), err)
		}
	})
	t.Run("ErrFail", func(t *testing.T) {
		t.Parallel()
		var out bytes.Buffer
		if err := runRates([]string{"-target", "40"}, bytes.NewReader(in), &out, &bytes.Buffer{}); err == nil || !strings.Contains(out.String(), `"pass":false`) {
			t.Fatalf("%v %s", err, out.Bytes())
		}
	})
	t.Run("ErrInput", func(t *testing.T) {
		t.Parallel()
		if err := runRates(nil, strings.NewReader("nope"), &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Fatal("accepted")
		}
	})
}
