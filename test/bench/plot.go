package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"slices"
	"strconv"
)

// Series is one line (or set of points) on a Chart.
type Series struct {
	Label  string
	X, Y   []float64
	Color  color.RGBA
	Points bool // draw a marker at each point
	NoLine bool
}

// Ref is a dashed reference line: a target or a theoretical value.
type Ref struct {
	Label    string
	Value    float64
	Vertical bool // x = Value; otherwise y = Value
	Color    color.RGBA
}

// Chart is a simple x/y chart drawn into a PNG, with a 5×7 bitmap font so
// the report needs no plotting tool.
type Chart struct {
	Title, XLabel, YLabel string
	Series                []Series
	Refs                  []Ref
	// YFromZero starts the y axis at 0 even when every value is above it.
	YFromZero bool
}

// Palette of the report's charts.
var (
	Blue   = color.RGBA{31, 119, 180, 255}
	Orange = color.RGBA{255, 127, 14, 255}
	Green  = color.RGBA{44, 160, 44, 255}
	Red    = color.RGBA{214, 39, 40, 255}
	Purple = color.RGBA{148, 103, 189, 255}
	Gray   = color.RGBA{127, 127, 127, 255}
)

const chartW, chartH = 900, 540

// WritePNG draws the chart to path.
func (c Chart) WritePNG(path string) error {
	img := c.Draw()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("chart %s: %w", path, err)
	}
	return f.Close()
}

// Draw renders the chart.
func (c Chart) Draw() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	draw.Draw(img, img.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
	black := color.RGBA{0, 0, 0, 255}
	light := color.RGBA{225, 225, 225, 255}

	xmin, xmax, ymin, ymax := c.bounds()
	xt := niceTicks(xmin, xmax, 8)
	yt := niceTicks(ymin, ymax, 6)
	xmin, xmax = math.Min(xmin, xt[0]), math.Max(xmax, xt[len(xt)-1])
	ymin, ymax = math.Min(ymin, yt[0]), math.Max(ymax, yt[len(yt)-1])

	left := 20 + 8*advance
	top := 20 + 2*lineH
	right := chartW - 30
	cols := c.legendColumns(chartW - 30 - left)
	bottom := chartH - 20 - 2*lineH - lineH*((len(c.Series)+cols-1)/cols)
	px := func(x float64) int { return left + int(math.Round((x-xmin)/(xmax-xmin)*float64(right-left))) }
	py := func(y float64) int { return bottom - int(math.Round((y-ymin)/(ymax-ymin)*float64(bottom-top))) }

	drawText(img, (chartW-textWidth(c.Title))/2, 12, c.Title, black)
	drawText(img, left, 12+lineH, c.YLabel, black)
	for _, v := range yt {
		y := py(v)
		line(img, left, y, right, y, light, 1)
		s := fmtTick(v)
		drawText(img, left-8-textWidth(s), y-glyphH*fontScale/2, s, black)
	}
	for _, v := range xt {
		x := px(v)
		line(img, x, top, x, bottom, light, 1)
		s := fmtTick(v)
		drawText(img, x-textWidth(s)/2, bottom+8, s, black)
	}
	line(img, left, bottom, right, bottom, black, 1)
	line(img, left, top, left, bottom, black, 1)
	drawText(img, (left+right-textWidth(c.XLabel))/2, bottom+8+lineH, c.XLabel, black)

	for _, r := range c.Refs {
		if r.Vertical {
			x := px(r.Value)
			dashed(img, x, top, x, bottom, r.Color)
			drawText(img, x+6, top+4, r.Label, r.Color)
		} else {
			y := py(r.Value)
			dashed(img, left, y, right, y, r.Color)
			drawText(img, right-textWidth(r.Label)-4, y-lineH, r.Label, r.Color)
		}
	}
	for _, s := range c.Series {
		for i := range s.X {
			if math.IsNaN(s.Y[i]) || math.IsNaN(s.X[i]) {
				continue
			}
			x, y := px(s.X[i]), py(s.Y[i])
			if !s.NoLine && i > 0 && !math.IsNaN(s.Y[i-1]) {
				line(img, px(s.X[i-1]), py(s.Y[i-1]), x, y, s.Color, 2)
			}
			if s.Points {
				for dy := -3; dy <= 3; dy++ {
					for dx := -3; dx <= 3; dx++ {
						img.Set(x+dx, y+dy, s.Color)
					}
				}
			}
		}
	}
	// Legend under the x label, as many entries a row as fit.
	ly := bottom + 8 + 2*lineH
	for i, s := range c.Series {
		x := left + (i%cols)*((right-left)/cols)
		y := ly + (i/cols)*lineH
		for dy := 2; dy < 12; dy++ {
			for dx := 0; dx < 16; dx++ {
				img.Set(x+dx, y+dy, s.Color)
			}
		}
		drawText(img, x+22, y, s.Label, black)
	}
	return img
}

// legendColumns is how many legend entries fit side by side in width (at
// most three): a swatch, a gap and the longest label each.
func (c Chart) legendColumns(width int) int {
	longest := 0
	for _, s := range c.Series {
		longest = max(longest, textWidth(s.Label))
	}
	return max(1, min(3, width/(longest+22+advance)))
}

func (c Chart) bounds() (xmin, xmax, ymin, ymax float64) {
	xmin, ymin = math.Inf(1), math.Inf(1)
	xmax, ymax = math.Inf(-1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			if math.IsNaN(s.X[i]) || math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				continue
			}
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
		}
	}
	for _, r := range c.Refs {
		if r.Vertical {
			xmin, xmax = math.Min(xmin, r.Value), math.Max(xmax, r.Value)
		} else {
			ymin, ymax = math.Min(ymin, r.Value), math.Max(ymax, r.Value)
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax = 0, 1
	}
	if math.IsInf(ymin, 1) {
		ymin, ymax = 0, 1
	}
	if c.YFromZero && ymin > 0 {
		ymin = 0
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax == ymin {
		ymin, ymax = ymin-1, ymax+1
	}
	return xmin, xmax, ymin, ymax
}

// niceTicks picks about n round tick values (steps of 1, 2 or 5 × 10^k)
// covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for v := math.Floor(lo/step) * step; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, math.Round(v/step)*step)
	}
	if ticks[len(ticks)-1] < hi {
		ticks = append(ticks, ticks[len(ticks)-1]+step)
	}
	return ticks
}

func fmtTick(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e7 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// line draws a straight line of width w (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color, w int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		for i := range w {
			img.Set(x0+i, y0, c)
			img.Set(x0, y0+i, c)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

// dashed draws a horizontal or vertical dashed line, 8 pixels on, 6 off.
func dashed(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	n := max(abs(x1-x0), abs(y1-y0))
	for i := 0; i <= n; i++ {
		if i%14 >= 8 {
			continue
		}
		x, y := x0, y0
		if x1 != x0 {
			x = x0 + i*(x1-x0)/n
		}
		if y1 != y0 {
			y = y0 + i*(y1-y0)/n
		}
		img.Set(x, y, c)
		img.Set(x+1, y, c)
		img.Set(x, y+1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// ECDF turns values into a step line: the share of values at or below x.
func ECDF(label string, values []float64, c color.RGBA) Series {
	s := Series{Label: label, Color: c}
	sorted := append([]float64(nil), values...)
	slices.Sort(sorted)
	n := float64(len(sorted))
	prev := 0.0
	for i, v := range sorted {
		s.X = append(s.X, v, v)
		s.Y = append(s.Y, prev, float64(i+1)/n*100)
		prev = float64(i+1) / n * 100
	}
	return s
}
