package bench

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestNiceTicksAreRoundAndCoverTheRange(t *testing.T) {
	for _, c := range []struct{ lo, hi float64 }{{0, 1}, {0, 2000}, {3.2, 11.7}, {100, 6000}, {0.001, 0.04}} {
		ticks := niceTicks(c.lo, c.hi, 8)
		if ticks[0] > c.lo || ticks[len(ticks)-1] < c.hi {
			t.Errorf("ticks %v do not cover [%v, %v]", ticks, c.lo, c.hi)
		}
		if len(ticks) < 3 || len(ticks) > 20 {
			t.Errorf("ticks %v for [%v, %v]: want a handful", ticks, c.lo, c.hi)
		}
	}
}

func TestEveryGlyphIsSevenRowsOfFive(t *testing.T) {
	for r, g := range glyphs {
		rows := bytes.Fields([]byte(g))
		if len(rows) != glyphH {
			t.Errorf("%q has %d rows", r, len(rows))
		}
		for _, row := range rows {
			if len(row) != glyphW {
				t.Errorf("%q has a row of %d pixels", r, len(row))
			}
		}
	}
}

// count is how many pixels of img have colour c.
func count(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)) == c {
				n++
			}
		}
	}
	return n
}

func TestAChartDrawsItsSeriesAndReferencesIntoAPNG(t *testing.T) {
	c := Chart{Title: "Step lag", XLabel: "N", YLabel: "seconds",
		Series: []Series{{Label: "p99", X: []float64{100, 500, 2000}, Y: []float64{0.2, 0.5, 1.8}, Color: Orange, Points: true}},
		Refs:   []Ref{{Label: "TARGET", Value: 1, Color: Red}}}
	path := filepath.Join(t.TempDir(), "c.png")
	if err := c.WritePNG(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if img.Bounds().Dx() != chartW || img.Bounds().Dy() != chartH {
		t.Errorf("size %v", img.Bounds())
	}
	// Three 7×7 markers and the lines between them, the legend swatch.
	if n := count(img, Orange); n < 3*49 {
		t.Errorf("%d orange pixels: the series was not drawn", n)
	}
	if n := count(img, Red); n < 100 {
		t.Errorf("%d red pixels: the reference line was not drawn", n)
	}
	empty := Chart{Title: "nothing"}.Draw()
	if count(empty, Orange) != 0 {
		t.Error("an empty chart has series pixels")
	}
}

func TestECDFStepsFromZeroToAHundred(t *testing.T) {
	s := ECDF("x", []float64{3, 1, 2}, Blue)
	if len(s.X) != 6 || s.Y[0] != 0 || s.Y[len(s.Y)-1] != 100 || s.X[0] != 1 || s.X[len(s.X)-1] != 3 {
		t.Errorf("ECDF %v / %v", s.X, s.Y)
	}
}

func TestScrapeReadsCountersGaugesAndHistograms(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`# TYPE canaryd_api_requests_total counter
canaryd_api_requests_total{method="GET",code="200"} 7
canaryd_api_requests_total{method="PATCH",code="409"} 2
# TYPE canaryd_workqueue_depth gauge
canaryd_workqueue_depth 3
# TYPE canaryd_check_duration_seconds histogram
canaryd_check_duration_seconds_bucket{le="0.1"} 4
canaryd_check_duration_seconds_bucket{le="+Inf"} 5
canaryd_check_duration_seconds_sum 0.75
canaryd_check_duration_seconds_count 5
`))
	}))
	defer srv.Close()
	m, err := Scrape(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("canaryd_api_requests_total"); got != 9 {
		t.Errorf("sum of requests %v, want 9", got)
	}
	if got := m.Sum("canaryd_api_requests_total", "code", "409"); got != 2 {
		t.Errorf("409s %v, want 2", got)
	}
	if got := m.Get("canaryd_workqueue_depth"); got != 3 {
		t.Errorf("queue %v, want 3", got)
	}
	if n, sum := m.Get("canaryd_check_duration_seconds"), m.SumOf("canaryd_check_duration_seconds"); n != 5 || sum != 0.75 {
		t.Errorf("histogram count %v sum %v, want 5 and 0.75", n, sum)
	}
	if by := m.By("canaryd_api_requests_total", "method"); by["GET"] != 7 || by["PATCH"] != 2 {
		t.Errorf("by method %v", by)
	}
}
