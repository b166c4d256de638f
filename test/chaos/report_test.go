package chaos

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"text/tabwriter"
	"time"
)

// row is one scenario's line in the table make chaos prints.
type row struct {
	trials, converged, violations int
	worst                         time.Duration // worst recovery time
	recovery                      string        // what recovery means for this scenario
	order                         int
}

var report struct {
	mu   sync.Mutex
	rows map[string]*row
}

// record adds trials to a scenario's row. Recovery times only raise the
// worst; what they measure is said once per scenario.
func record(scenario, recovery string, trials, converged, violations int, worst time.Duration) {
	report.mu.Lock()
	defer report.mu.Unlock()
	if report.rows == nil {
		report.rows = map[string]*row{}
	}
	r, ok := report.rows[scenario]
	if !ok {
		r = &row{recovery: recovery, order: len(report.rows)}
		report.rows[scenario] = r
	}
	r.trials += trials
	r.converged += converged
	r.violations += violations
	if worst > r.worst {
		r.worst = worst
	}
}

// scenario is one row's trials in progress: begin counts them at once, as
// not converged, so a trial that dies on t.Fatal still shows in the table
// (and fails the run); end adds what the trials achieved.
type scenario struct{ name, recovery string }

func begin(name, recovery string, trials int) scenario {
	if env.skip != "" {
		return scenario{} // the test is about to skip: no row
	}
	record(name, recovery, trials, 0, 0, 0)
	return scenario{name, recovery}
}

func (s scenario) end(converged, violations int, worst time.Duration) {
	if s.name != "" {
		record(s.name, s.recovery, 0, converged, violations, worst)
	}
}

func anyViolation() bool {
	report.mu.Lock()
	defer report.mu.Unlock()
	for _, r := range report.rows {
		if r.violations > 0 || r.converged < r.trials {
			return true
		}
	}
	return false
}

func printTable(w io.Writer) {
	report.mu.Lock()
	defer report.mu.Unlock()
	if len(report.rows) == 0 {
		return
	}
	names := make([]string, 0, len(report.rows))
	for n := range report.rows {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return report.rows[names[i]].order < report.rows[names[j]].order })
	mode := "short"
	if *full {
		mode = "full"
	}
	fmt.Fprintf(w, "\nchaos (%s run)\n", mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\ttrials\tconverged\tviolations\tworst recovery\trecovery is")
	for _, n := range names {
		r := report.rows[n]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", n, r.trials, r.converged, r.violations, r.worst.Round(10*time.Millisecond), r.recovery)
	}
	_ = tw.Flush()
}
