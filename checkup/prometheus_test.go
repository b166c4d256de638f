package checkup

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/analysis"
)

// promCounting answers the two scrape-target counts: targets labelled by
// deployment, and those of them with a pod_template_hash.
func promCounting(t *testing.T, labelled, hashed int) *analysis.Prom {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		n := labelled
		if strings.Contains(r.Form.Get("query"), "pod_template_hash") {
			n = hashed
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"%d"]}]}}`, n)
	}))
	t.Cleanup(srv.Close)
	p, err := analysis.NewPrometheus(analysis.Config{Client: analysis.ClientConfig{Address: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScrapeTargetLabels(t *testing.T) {
	for _, tc := range []struct {
		name              string
		labelled, hashed  int
		status            Status
		title, detailPart string
	}{
		{"every target carries deployment and pod_template_hash", 3, 3, OK,
			"Prometheus labels its scrape targets by deployment and pod_template_hash (3 targets)", ""},
		{"targets without pod_template_hash are a warning", 3, 2, Warn,
			"1 of 3 scrape targets labelled by deployment have no pod_template_hash label", "rolled back a moment ago"},
		{"no target labelled by deployment fails", 0, 0, Fail,
			"no scrape target's up series has a deployment label", "every canary would hold at step 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &run{}
			r.scrapeLabels(context.Background(), promCounting(t, tc.labelled, tc.hashed))
			if len(r.results) != 1 {
				t.Fatalf("%d results, want 1: %+v", len(r.results), r.results)
			}
			got := r.results[0]
			if got.Status != tc.status || got.Title != tc.title || !strings.Contains(got.Detail, tc.detailPart) {
				t.Errorf("got %v %q (%s), want %v %q containing %q", got.Status, got.Title, got.Detail, tc.status, tc.title, tc.detailPart)
			}
		})
	}
}
