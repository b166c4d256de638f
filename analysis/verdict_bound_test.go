package analysis

import (
	"math"
	"testing"
)

func TestSuccessUpperBound(t *testing.T) {
	for _, tc := range []struct {
		p, n, want float64
	}{
		{39.0 / 40, 40, 0.9944}, // one failure in 40: 99 % is not shown broken
		{38.0 / 40, 40, 0.9833}, // two: it is
		{0.95, 1000, 0.9602},    // large samples: close to p
		{1, 10, 1},
		{0.5, 0, 1}, // no data: nothing is shown
	} {
		if got := successUpperBound(tc.p, tc.n); math.Abs(got-tc.want) > 0.0005 {
			t.Errorf("upper bound of %.4f over %.0f = %.4f, want %.4f", tc.p, tc.n, got, tc.want)
		}
	}
}
