package console

import (
	"fmt"

	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// chart is a stacked bar chart of intake buckets, drawn by the template as
// SVG: oldest bucket on the left, one segment per status.
type chart struct {
	Width, Height int
	Max           int // the tallest bar's total
	Bars          []bar
	Label         string // its accessible name
}

type bar struct {
	X, W  int
	Title string // the bucket and its counts, for a tooltip and screen readers
	Segs  []seg
	Tick  string // an axis label under some bars
}

type seg struct {
	Y, H  int
	Class string // the status: applied, stale, unhandled, failed
}

const (
	chartHeight = 120
	chartPad    = 16 // room for the axis labels
)

// intakeChart draws buckets (newest first, as the store returns them),
// width px wide; tick labels every tickEvery bars, as fmtTick says.
func intakeChart(buckets []view.IntakeBucket, width int, label string, tickEvery int, fmtTick func(view.IntakeBucket) string, title func(view.IntakeBucket) string) chart {
	ch := chart{Width: width, Height: chartHeight + chartPad, Label: label}
	for _, b := range buckets {
		ch.Max = max(ch.Max, b.Total())
	}
	n := len(buckets)
	if n == 0 {
		return ch
	}
	slot := width / n
	scale := func(v int) int {
		if ch.Max == 0 {
			return 0
		}
		h := v * chartHeight / ch.Max
		if v > 0 && h == 0 {
			h = 1 // a bucket with any is visible
		}
		return h
	}
	for i := range n {
		b := buckets[n-1-i]
		br := bar{X: i * slot, W: max(slot-2, 1), Title: title(b)}
		y := chartHeight
		for _, s := range []struct {
			v     int
			class string
		}{{b.Applied, "applied"}, {b.Stale, "stale"}, {b.Unhandled, "unhandled"}, {b.Failed, "failed"}} {
			h := scale(s.v)
			if h == 0 {
				continue
			}
			y -= h
			br.Segs = append(br.Segs, seg{Y: y, H: h, Class: s.class})
		}
		if tickEvery > 0 && i%tickEvery == 0 {
			br.Tick = fmtTick(b)
		}
		ch.Bars = append(ch.Bars, br)
	}
	return ch
}

// BaseY is where the bars stand.
func (ch chart) BaseY() int { return chartHeight }

// TickY is where the tick labels go.
func (ch chart) TickY() int { return chartHeight + chartPad - 3 }

// ViewBox is the SVG's viewBox.
func (ch chart) ViewBox() string { return fmt.Sprintf("0 0 %d %d", ch.Width, ch.Height) }
