package checkup

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// Status is the outcome of one check.
type Status int

const (
	OK   Status = iota // ✔ it holds
	Warn               // ‼ worth knowing; canaryd still works
	Fail               // ✘ rollouts cannot work as configured
)

// Symbol is how a Status is printed.
func (s Status) Symbol() string {
	switch s {
	case OK:
		return "✔"
	case Warn:
		return "‼"
	}
	return "✘"
}

// Result is one line of the report.
type Result struct {
	Category string
	Status   Status
	Title    string // what holds (✔) or what is wrong (‼, ✘), one line
	Detail   string // what was found, when it adds to the title
	Hint     string // how to fix it; printed for ‼ and ✘
}

// Lease is where canaryd takes its leader-election Lease.
type Lease struct{ Namespace, Name string }

// Config says what to check: the cluster as canaryd would see it with the
// given flags. Client must be set; everything else has a default.
type Config struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface // needed for the ServiceProfile check
	// Host is the API server's address, shown in the first line.
	Host string
	// Namespaces canaryd watches; empty: all.
	Namespaces []string
	// Defaults are canaryd's cluster defaults (router, known checks).
	Defaults rollout.Spec
	// SMIVersion is the TrafficSplit version canaryd writes (default v1alpha1).
	SMIVersion string
	// HTTPRoute is the HTTPRoute API canaryd writes (its
	// --httproute-version); empty: as canaryd, the first served of
	// HTTPRouteVersions.
	HTTPRoute schema.GroupVersion
	// Lease, when set, adds the leader-election permissions.
	Lease *Lease
	// Prometheus is canaryd's analysis configuration; nil skips the
	// Prometheus checks with a warning saying why (PrometheusSkipped).
	Prometheus        *analysis.Config
	PrometheusSkipped string
	// MaxMetricTargets bounds the per-Deployment metrics checks (default 50):
	// each costs a handful of queries.
	MaxMetricTargets int
	// Timeout bounds each group of checks (default 20s).
	Timeout time.Duration
	Clock   func() time.Time
}

func (c Config) withDefaults() Config {
	if c.SMIVersion == "" {
		c.SMIVersion = "v1alpha1"
	}
	if c.Defaults.Router == "" {
		c.Defaults = rollout.DefaultSpec()
	}
	if c.MaxMetricTargets <= 0 {
		c.MaxMetricTargets = 50
	}
	if c.Timeout <= 0 {
		c.Timeout = 20 * time.Second
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// Report is the outcome of Run, in the order the checks ran.
type Report struct {
	Results []Result
}

// Failed says whether any check failed: the exit code of the commands.
func (r Report) Failed() bool {
	for _, res := range r.Results {
		if res.Status == Fail {
			return true
		}
	}
	return false
}

// Count returns how many results have status s.
func (r Report) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Find returns the results of a category whose title contains substr.
func (r Report) Find(category, substr string) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Category == category && strings.Contains(res.Title, substr) {
			out = append(out, res)
		}
	}
	return out
}

// Categories, in the order they are checked.
const (
	CatAPI        = "kubernetes-api"
	CatWorkloads  = "opted-in-deployments"
	CatRBAC       = "canaryd-rbac"
	CatRouting    = "routing-resources"
	CatInjection  = "linkerd-injection"
	CatProfiles   = "service-profiles"
	CatPrometheus = "prometheus"
)

// Run performs every check. It never fails as a whole: what cannot be
// checked is a result too.
func Run(ctx context.Context, cfg Config) Report {
	cfg = cfg.withDefaults()
	r := &run{cfg: cfg}
	if r.api() {
		r.cfg.HTTPRoute = r.httpRouteVersion()
		// The inventory and discovery come first: which routers are in use
		// and which routing resources are served decide what else to ask.
		r.workloads(ctx)
		r.discovered = r.discover()
		r.rbac(ctx)
		r.routing()
		r.injection(ctx)
		r.profiles(ctx)
	}
	r.prometheus(ctx)
	return Report{Results: r.results}
}

// run carries what earlier checks found to later ones.
type run struct {
	cfg     Config
	results []Result
	// deployments are the opted-in Deployments found (nil if unknown).
	deployments []deployment
	// served are the routing resources the API server serves; discovered
	// holds the discovery errors of those whose state is unknown.
	served     map[schema.GroupVersionResource]bool
	discovered map[schema.GroupVersionResource]error
}

func (r *run) add(cat string, s Status, title, detail, hint string) {
	r.results = append(r.results, Result{Category: cat, Status: s, Title: title, Detail: detail, Hint: hint})
}

func (r *run) api() bool {
	v, err := r.cfg.Client.Discovery().ServerVersion()
	where := "the API server"
	if r.cfg.Host != "" {
		where += " at " + r.cfg.Host
	}
	if err != nil {
		r.add(CatAPI, Fail, "cannot reach "+where, err.Error(),
			"check --kubeconfig and --context, and that the API server is up; nothing else can be checked without it")
		return false
	}
	r.add(CatAPI, OK, fmt.Sprintf("can reach %s (Kubernetes %s)", where, v.GitVersion), "", "")
	return true
}

// scope names the namespaces canaryd watches, for titles.
func (c Config) scope() string {
	switch len(c.Namespaces) {
	case 0:
		return "in all namespaces"
	case 1:
		return "in namespace " + c.Namespaces[0]
	}
	return "in namespaces " + strings.Join(c.Namespaces, ", ")
}

// Print writes the report like `linkerd check`: a header per category, one
// line per check, the detail and hint of every ‼ and ✘ indented below it,
// and a summary.
func (r Report) Print(w io.Writer) error {
	var b strings.Builder
	cat := ""
	for _, res := range r.Results {
		if res.Category != cat {
			if cat != "" {
				b.WriteString("\n")
			}
			cat = res.Category
			fmt.Fprintf(&b, "%s\n%s\n", cat, strings.Repeat("-", len(cat)))
		}
		for i, l := range wrap(res.Title, width-2) {
			if i == 0 {
				fmt.Fprintf(&b, "%s %s\n", res.Status.Symbol(), l)
			} else {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
		if res.Status == OK {
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(res.Detail), "\n") {
			for _, l := range wrap(line, width-4) {
				fmt.Fprintf(&b, "    %s\n", l)
			}
		}
		if res.Hint != "" {
			for i, l := range wrap(res.Hint, width-10) {
				if i == 0 {
					fmt.Fprintf(&b, "    hint: %s\n", l)
				} else {
					fmt.Fprintf(&b, "          %s\n", l)
				}
			}
		}
	}
	b.WriteString("\n")
	failed, warned := r.Count(Fail), r.Count(Warn)
	switch {
	case failed > 0:
		fmt.Fprintf(&b, "Status check results are ✘: %s failed, %s\n", plural(failed, "check"), plural(warned, "warning"))
	case warned > 0:
		fmt.Fprintf(&b, "Status check results are ✔ with %s\n", plural(warned, "warning"))
	default:
		b.WriteString("Status check results are ✔\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// width is where detail and hint lines wrap: reports are read in terminals
// and CI logs.
const width = 100

// wrap breaks s at spaces into lines of at most w characters; a word longer
// than w (a URL, a query) keeps its own line.
func wrap(s string, w int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) <= w:
			line += " " + word
		default:
			lines, line = append(lines, line), word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// list joins names for a title, eliding after a few.
func list(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
}
