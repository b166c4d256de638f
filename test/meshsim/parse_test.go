package meshsim

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestParseWeight(t *testing.T) {
	for _, tt := range []struct {
		in      any
		want    int64
		wantErr bool
	}{
		{"900m", 900, false},
		{"1", 1000, false},
		{int64(90), 90000, false},
		{float64(10), 10000, false}, // JSON numbers may arrive as float64
		{"0", 0, false},
		{"-100m", 0, true},
		{"lots", 0, true},
		{nil, 0, true},
		{true, 0, true},
		{math.Inf(1), 0, true},
	} {
		got, err := parseWeight(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseWeight(%#v) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseHeaderClasses(t *testing.T) {
	hc, err := parseHeaderClasses("x-canary=always:0.1, X-User=beta&x-region=eu:0.05")
	if err != nil {
		t.Fatal(err)
	}
	if len(hc) != 2 || hc[0].share != 0.1 || hc[0].headers["x-canary"] != "always" ||
		hc[1].share != 0.05 || hc[1].headers["x-user"] != "beta" || hc[1].headers["x-region"] != "eu" {
		t.Errorf("parsed %+v", hc)
	}
	for u, want := range map[float64]string{0.05: "always", 0.12: "beta", 0.5: ""} {
		if got := pickHeaders(hc, u)["x-canary"] + pickHeaders(hc, u)["x-user"]; got != want {
			t.Errorf("pickHeaders(u=%v) = %q, want %q", u, got, want)
		}
	}
	for _, bad := range []string{"x=y", "x=y:2", "x=y:0.6,z=w:0.6", "=y:0.1", "x:0.1"} {
		if _, err := parseHeaderClasses(bad); err == nil {
			t.Errorf("parseHeaderClasses(%q) accepted", bad)
		}
	}
}

// TestPoissonHasTheRequestedMean checks both regimes of the Poisson draw (product method ≤ 30, normal above):
// the mean of 20000 draws within 5 standard errors, and the variance near the mean, as for a Poisson.
func TestPoissonHasTheRequestedMean(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, mean := range []float64{0.3, 2, 50} {
		const n = 20000
		var sum, sumSq float64
		for range n {
			x := float64(poisson(r, mean))
			sum += x
			sumSq += x * x
		}
		m := sum / n
		v := sumSq/n - m*m
		if se := math.Sqrt(mean / n); math.Abs(m-mean) > 5*se {
			t.Errorf("mean %v: sample mean %.4f, want within %.4f", mean, m, 5*se)
		}
		if math.Abs(v/mean-1) > 0.1 {
			t.Errorf("mean %v: sample variance %.3f, want ≈ the mean", mean, v)
		}
	}
}
