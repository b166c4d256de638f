package bench

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func (r Report) writeScale(b *strings.Builder, dir string) error {
	if len(r.Scale) == 0 {
		return nil
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	c := r.ScaleCfg
	p("## Scale: one canaryd process (GOMAXPROCS=2)")
	p("")
	p("N opted-in Deployments of **1 replica each** (to keep kwok light), 100 per namespace, each with its apex Service; canaryd watches all namespaces.")
	p("Every tenth Deployment rolls: in each wave all of them get a new image at once and walk `100m,200m,500m` at a **%s interval**, then promote.", c.Interval)
	p("Only the rolling ones are meshed and take traffic (%.0f requests/s each, so the canary's window holds ≥ 5 requests, canaryd's `--default-min-requests 5`); the others never take a request, so simulating their proxies would only load Prometheus.", c.RPS)
	p("canaryd is restarted after each N is adopted, so idle memory is that of a process managing N, not the history of growing to N. Idle CPU is measured over %s with no scrape in between; each N runs %d waves.", c.IdleWindow, c.Waves)
	p("Step lag: for every step due by the clock (steps 2 and 3 and the promotion's shift), the TrafficSplit watch event with the new weight minus (`stepStartedAt` + interval) from the status annotation. It includes the due check's Prometheus queries. A step whose check held (too few requests, or the judge still collecting evidence before promoting) is counted in \"held steps\" and not timed: its delay is the analysis's, not the controller's.")
	p("\"Writes per step advance\" (the target's measure) counts, on the objects, the status updates and the split update of each plain step (1 → 2, 2 → 3). \"Writes per weight change\" divides every write of the wave (canaryd's client-go metrics, `canaryd_api_request_duration_seconds` by verb and resource, Events left out) by the weight changes written (5 per rollout: 100m, 200m, 500m, 1000m, 0): it also counts the canary's creation and scaling and the promotion's stages.")
	p("")
	p("| N | rolling | adopted in | RSS idle MB | heap in use idle MB | live heap MB | RSS rolling max MB | CPU idle %% | CPU rolling %% | step lag p50 s | p99 s | held steps | writes per step advance | writes per weight change (whole rollout) | reads per weight change | queries/check | queue max | mean write s | converged | machine busy %% | targets broken |")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	var xs, rss, heap, live, rssRoll, cpuIdle, cpuRoll, lag50, lag99, wps, adv, rps []float64
	for _, s := range r.Scale {
		m := s.Median
		conv, roll, held := 0, 0, 0
		for _, w := range s.Waves {
			conv, roll, held = conv+w.Converged, roll+w.Rolling, held+w.Held
		}
		brk := strings.Join(broken(s), ", ")
		if brk == "" {
			brk = "none"
		}
		i := s.Idle
		p("| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %d/%d | %s | %s |", s.N, s.Rolling, s.Adopt.Round(1e9),
			f2(i.RSSMB), f2(i.HeapInUseMB), f2(i.HeapLiveMB), f2(m(func(w WaveResult) float64 { return w.RSSMaxMB })), f2(i.CPUPct),
			f2(m(func(w WaveResult) float64 { return w.CPUPct })),
			f2(m(func(w WaveResult) float64 { return w.LagP50 })), f2(m(func(w WaveResult) float64 { return w.LagP99 })), held,
			f2(m(func(w WaveResult) float64 { return Median(w.AdvanceWrites) })), f2(m(func(w WaveResult) float64 { return w.WritesPerStep })),
			f2(m(func(w WaveResult) float64 { return w.ReadsPerStep })),
			f2(m(func(w WaveResult) float64 { return w.QueriesPerCheck })), f0(m(func(w WaveResult) float64 { return w.QueueMax })),
			f2(m(func(w WaveResult) float64 { return w.WriteLatency })), conv, roll,
			f0(m(func(w WaveResult) float64 { return w.MachineBusy })), brk)
		xs = append(xs, float64(s.N))
		rss, heap, live, cpuIdle = append(rss, i.RSSMB), append(heap, i.HeapInUseMB), append(live, i.HeapLiveMB), append(cpuIdle, i.CPUPct)
		rssRoll = append(rssRoll, m(func(w WaveResult) float64 { return w.RSSMaxMB }))
		cpuRoll = append(cpuRoll, m(func(w WaveResult) float64 { return w.CPUPct }))
		lag50 = append(lag50, m(func(w WaveResult) float64 { return w.LagP50 }))
		lag99 = append(lag99, m(func(w WaveResult) float64 { return w.LagP99 }))
		wps = append(wps, m(func(w WaveResult) float64 { return w.WritesPerStep }))
		adv = append(adv, m(func(w WaveResult) float64 { return Median(w.AdvanceWrites) }))
		rps = append(rps, m(func(w WaveResult) float64 { return w.ReadsPerStep }))
	}
	p("")
	p("Where the memory is (after the forced collection): the runtime holds `sys` from the OS, of which `released` heap went back; the next collection starts at `next GC`.")
	p("")
	p("| N | live heap MB | next GC MB | sys MB | released MB | RSS MB |")
	p("|---|---|---|---|---|---|")
	for _, s := range r.Scale {
		i := s.Idle
		p("| %d | %s | %s | %s | %s | %s |", s.N, f2(i.HeapLiveMB), f2(i.NextGCMB), f2(i.SysMB), f2(i.ReleasedMB), f2(i.RSSMB))
	}
	p("")
	p("Where a step's lag goes. The step lag starts at `stepStartedAt` + interval; the **overrun** of the same steps starts at the previous weight's own watch event + interval: how much longer than the interval traffic saw a weight, including any wait to stamp a step applied (the canary's first step is written intent first and stamped by a later sync). The waits are means over every sync of the wave: a key waiting in the workqueue for a worker (`canaryd_workqueue_wait_seconds`), a check (all its queries), a write.")
	p("")
	p("| N | timed steps | step lag p50 s | p99 s | overrun p50 s | p99 s | mean queue wait s | mean check s | mean write s |")
	p("|---|---|---|---|---|---|---|---|---|")
	for _, s := range r.Scale {
		m := s.Median
		timed := 0
		for _, w := range s.Waves {
			timed += len(w.Lags)
		}
		p("| %d | %d | %s | %s | %s | %s | %s | %s | %s |", s.N, timed,
			f2(m(func(w WaveResult) float64 { return w.LagP50 })), f2(m(func(w WaveResult) float64 { return w.LagP99 })),
			f2(m(func(w WaveResult) float64 { return w.OverrunP50 })), f2(m(func(w WaveResult) float64 { return w.OverrunP99 })),
			f3(m(func(w WaveResult) float64 { return w.QueueWaitMeanS })), f2(m(func(w WaveResult) float64 { return w.CheckMeanS })),
			f2(m(func(w WaveResult) float64 { return w.WriteLatency })))
	}
	p("")
	p("Events: what `kubectl describe` shows of a rollout. canaryd's Events about the rolling Deployments that were in the API 3 s after the wave's last rollout converged, per rollout, and how long after canaryd raised each one it was written (its creation minus its first timestamp, both to the second).")
	p("")
	p("| N | Events per rollout | written after, p50 s | p99 s |")
	p("|---|---|---|---|")
	for _, s := range r.Scale {
		m := s.Median
		p("| %d | %s | %s | %s |", s.N, f2(m(func(w WaveResult) float64 { return w.EventsPerRollout })),
			f2(m(func(w WaveResult) float64 { return w.EventDelayP50 })), f2(m(func(w WaveResult) float64 { return w.EventDelayP99 })))
	}
	p("")
	p("Targets at N = 2,000: RSS ≤ %.0f MB, idle CPU ≤ %.0f %% of a core, step lag p99 ≤ %.0f s, ≤ %.0f API writes per step.", Targets.RSSMB, Targets.IdleCPUPct, Targets.LagP99, Targets.WritesPerStep)
	p("")
	rf, lf := LinearFit(xs, rss), LinearFit(xs, live)
	if len(xs) >= 2 {
		p("**Memory slope**: the live heap (after a forced collection: what the caches hold) grows by **%.1f KB per managed Deployment** (least squares over N, R² = %.3f, intercept %.1f MB); RSS by %.1f KB per Deployment (R² = %.3f, intercept %.1f MB).",
			lf.Slope*1000, lf.R2, lf.Intercept, rf.Slope*1000, rf.R2, rf.Intercept)
		p("RSS is two to three times the live heap: Go's collector lets the heap grow to 1.5 times the live data before collecting (canaryd's default GOGC=50), the runtime keeps what it took from the OS for the next growth (`sys` minus `released` above), and a wave's own garbage sets the rolling peak. Start-up's full LISTs are handed back to the OS once canaryd's first pass is over (commit 7bbe59e).")
		p("")
	}
	r.writeStaggered(b)
	r.writeAlt(b)
	r.writeAPI(b)
	r.writeComponents(b)
	fit := Series{Label: "RSS fit", Color: Gray}
	for _, x := range xs {
		fit.X, fit.Y = append(fit.X, x), append(fit.Y, rf.Intercept+rf.Slope*x)
	}
	charts := []struct {
		file string
		c    Chart
	}{
		{"scale-memory.png", Chart{Title: "canaryd memory by managed Deployments", XLabel: "managed Deployments (N)", YLabel: "MB", YFromZero: true,
			Series: []Series{fit, {Label: "RSS idle", X: xs, Y: rss, Color: Blue, Points: true}, {Label: "heap in use idle", X: xs, Y: heap, Color: Green, Points: true},
				{Label: "live heap", X: xs, Y: live, Color: Purple, Points: true},
				{Label: "RSS max rolling", X: xs, Y: rssRoll, Color: Orange, Points: true}},
			Refs: []Ref{{Label: "TARGET 150 MB", Value: Targets.RSSMB, Color: Red}}}},
		{"scale-cpu.png", Chart{Title: "canaryd CPU by managed Deployments", XLabel: "managed Deployments (N)", YLabel: "% of one core", YFromZero: true,
			Series: []Series{{Label: "idle", X: xs, Y: cpuIdle, Color: Blue, Points: true}, {Label: "10% rolling", X: xs, Y: cpuRoll, Color: Orange, Points: true}},
			Refs:   []Ref{{Label: "IDLE TARGET 2%", Value: Targets.IdleCPUPct, Color: Red}}}},
		{"scale-lag.png", Chart{Title: "Step lag: weight written minus step due", XLabel: "managed Deployments (N)", YLabel: "seconds", YFromZero: true,
			Series: []Series{{Label: "p50", X: xs, Y: lag50, Color: Blue, Points: true}, {Label: "p99", X: xs, Y: lag99, Color: Orange, Points: true}},
			Refs:   []Ref{{Label: "P99 TARGET 1 S", Value: Targets.LagP99, Color: Red}}}},
		{"scale-api.png", Chart{Title: "API requests per step", XLabel: "managed Deployments (N)", YLabel: "requests", YFromZero: true,
			Series: []Series{{Label: "writes per step advance", X: xs, Y: adv, Color: Orange, Points: true},
				{Label: "writes per weight change", X: xs, Y: wps, Color: Blue, Points: true}, {Label: "reads per weight change", X: xs, Y: rps, Color: Green, Points: true}},
			Refs: []Ref{{Label: "WRITES TARGET 3", Value: Targets.WritesPerStep, Color: Red}}}},
	}
	for _, ch := range charts {
		if err := ch.c.WritePNG(filepath.Join(dir, ch.file)); err != nil {
			return err
		}
		p("![%s](%s)", ch.c.Title, ch.file)
		p("")
	}
	r.writeLagCDF(b, dir)
	r.writeBend(b)
	return nil
}

// writeAPI breaks the API requests of one rollout down by verb and resource.
func (r Report) writeAPI(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("API requests per rollout (medians over waves; a rollout is 5 weight changes, checks and a promotion). \"Writes per step advance\" is counted on the objects: the status updates and the split update of each step 1 → 2 and 2 → 3.")
	p("")
	p("| N | get | list | create | update | patch | delete | watch (re)starts | writes by resource | canaryd_api_writes_total | 409 conflicts | status updates seen | writes per step advance | checks/rollout |")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range r.Scale {
		per := func(f func(WaveResult) float64) string {
			return f2(s.Median(func(w WaveResult) float64 {
				if w.Rolling == 0 {
					return 0
				}
				return f(w) / float64(w.Rolling)
			}))
		}
		verb := func(v string) string { return per(func(w WaveResult) float64 { return w.Verbs[v] }) }
		res := map[string]float64{}
		for _, w := range s.Waves {
			for k, v := range w.WritesByResource {
				res[k] += v / float64(max(1, w.Rolling)) / float64(len(s.Waves))
			}
		}
		var parts []string
		for _, k := range sortedKeys(res) {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, res[k]))
		}
		p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", s.N, verb("get"), verb("list"), verb("create"), verb("update"), verb("patch"), verb("delete"),
			per(func(w WaveResult) float64 { return w.Watches }), strings.Join(parts, ", "), per(func(w WaveResult) float64 { return w.ControllerWrites }),
			per(func(w WaveResult) float64 { return w.Conflicts }), per(func(w WaveResult) float64 { return float64(w.StatusUpdates) }),
			f2(s.Median(func(w WaveResult) float64 { return Median(w.AdvanceWrites) })), per(func(w WaveResult) float64 { return w.Checks }))
	}
	p("")
}

// writeComponents shows where the machine's CPU went while rolling.
func (r Report) writeComponents(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	names := map[string]bool{}
	for _, s := range r.Scale {
		for _, w := range s.Waves {
			for k := range w.Components {
				names[k] = true
			}
		}
	}
	var cols []string
	for k := range names {
		cols = append(cols, k)
	}
	sort.Strings(cols)
	p("CPU while rolling, by process, in %% of one core (medians over waves), and the machine's busy share of its %d cores:", cores())
	p("")
	p("\"others\" is what the rest of the machine used meanwhile (other engineers' test clusters share it): the machine's busy time minus every process listed.")
	p("")
	p("| N | %s | others | machine busy %% | canaryd client rate-limit wait (mean s) | mean check s |", strings.Join(cols, " | "))
	p("|---|%s---|---|---|---|", strings.Repeat("---|", len(cols)))
	for _, s := range r.Scale {
		var vals []string
		for _, c := range cols {
			vals = append(vals, f0(s.Median(func(w WaveResult) float64 { return w.Components[c] })))
		}
		others := s.Median(othersCPU)
		p("| %d | %s | %s | %s | %s | %s |", s.N, strings.Join(vals, " | "), f0(others), f0(s.Median(func(w WaveResult) float64 { return w.MachineBusy })),
			f2(s.Median(func(w WaveResult) float64 { return w.RateLimitWaitMean })), f2(s.Median(func(w WaveResult) float64 { return w.CheckMeanS })))
	}
	p("")
}

func (r Report) writeLagCDF(b *strings.Builder, dir string) {
	var series []Series
	palette := []Series{{Color: Blue}, {Color: Green}, {Color: Orange}, {Color: Red}, {Color: Purple}, {Color: Gray}}
	for i, s := range r.Scale {
		var lags []float64
		for _, w := range s.Waves {
			lags = append(lags, w.Lags...)
		}
		if len(lags) == 0 {
			continue
		}
		series = append(series, ECDF(fmt.Sprintf("N = %d", s.N), lags, palette[i%len(palette)].Color))
	}
	if len(series) == 0 {
		return
	}
	ch := Chart{Title: "Step lag distribution (all waves)", XLabel: "seconds after the step was due", YLabel: "% of steps", Series: series,
		Refs: []Ref{{Label: "1 S", Value: 1, Vertical: true, Color: Red}}}
	if err := ch.WritePNG(filepath.Join(dir, "scale-lag-cdf.png")); err == nil {
		fmt.Fprintf(b, "![step lag distribution](scale-lag-cdf.png)\n\n")
	}
}

// writeBend says where each target first broke and what ran short there.
func (r Report) writeBend(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("### Where it bends")
	p("")
	first := func(results []ScaleResult) map[string]int {
		out := map[string]int{}
		for _, s := range results {
			for _, t := range broken(s) {
				if _, seen := out[t]; !seen {
					out[t] = s.N
				}
			}
		}
		return out
	}
	var alts []ScaleResult
	for _, s := range r.Scale {
		if len(s.AltWaves) > 0 {
			alts = append(alts, ScaleResult{N: s.N, Idle: s.Alt, Waves: s.AltWaves})
		}
	}
	def, alt := first(r.Scale), first(alts)
	last := r.Scale[len(r.Scale)-1].N
	altHead := "first N broken, " + altName(r.ScaleCfg.Alt)
	if len(alts) > 0 && len(alts) < len(r.Scale) {
		var ns []string
		for _, a := range alts {
			ns = append(ns, strconv.Itoa(a.N))
		}
		altHead += " (measured at N = " + strings.Join(ns, ", ") + " only)"
	}
	p("| target | first N broken, defaults | %s |", altHead)
	p("|---|---|---|")
	for _, t := range []string{"RSS", "idle CPU", "step lag p99", "writes per step", "convergence"} {
		p("| %s | %s | %s |", t, firstN(def, t, last), firstN(alt, t, lastN(alts)))
	}
	p("")
	if len(broken(r.Scale[len(r.Scale)-1])) > 0 {
		p("N was not pushed beyond %d: targets had broken at or before it.", last)
		p("")
	}
	n, ok := def["step lag p99"]
	if !ok {
		p("The step lag held up to N = %d, the largest N this run reached.", last)
		p("")
		return
	}
	for _, s := range r.Scale {
		if s.N != n {
			continue
		}
		m := s.Median
		top, topV := "", 0.0
		for k, v := range s.Waves[0].Components {
			if v > topV {
				top, topV = k, v
			}
		}
		p("At N = %d, where the step lag first broke: canaryd used %s %% of a core and its client waited %s s on average for its own QPS limit, so neither canaryd's CPU nor its client limit ran short. "+
			"Its queue peaked at %s keys behind %s workers while each check took %s s and each write %s s on average. The machine was %s %% busy (of %d cores; %s was the busiest process of the benchmark at %s %% of a core, and processes outside it — other test clusters on this shared machine — used %s %% of a core): "+
			"the CPU shared by the API server, Prometheus, the traffic simulator and canaryd is what ran out first, and the queue of due steps waiting on their I/O is how canaryd felt it.",
			n, f0(m(func(w WaveResult) float64 { return w.CPUPct })), f2(m(func(w WaveResult) float64 { return w.RateLimitWaitMean })),
			f0(m(func(w WaveResult) float64 { return w.QueueMax })), workersName(r.ScaleCfg.Workers), f2(m(func(w WaveResult) float64 { return w.CheckMeanS })),
			f2(m(func(w WaveResult) float64 { return w.WriteLatency })), f0(m(func(w WaveResult) float64 { return w.MachineBusy })), cores(), top, f0(topV),
			f0(m(othersCPU)))
		p("")
	}
}

// othersCPU is the CPU (% of one core) that processes outside the benchmark
// used during a wave: the machine's busy time minus every process measured.
func othersCPU(w WaveResult) float64 {
	v := w.MachineBusy * float64(cores())
	for _, c := range w.Components {
		v -= c
	}
	return v
}

func firstN(m map[string]int, target string, last int) string {
	if n, ok := m[target]; ok {
		return fmt.Sprint(n)
	}
	if last == 0 {
		return "–"
	}
	return fmt.Sprintf("held to %d", last)
}

func lastN(rs []ScaleResult) int {
	if len(rs) == 0 {
		return 0
	}
	return rs[len(rs)-1].N
}

func altName(a *AltConfig) string {
	if a == nil {
		return "no second measurement"
	}
	return a.String()
}

func workersName(w int) string {
	if w == 0 {
		return "the default 16"
	}
	return fmt.Sprint(w)
}

// writeAlt compares the second measurement of every N, with other settings.
func (r Report) writeAlt(b *strings.Builder) {
	alt := r.ScaleCfg.Alt
	if alt == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("Every N measured again with canaryd restarted with **%s** (GOMAXPROCS=2 still; the table above uses canaryd's defaults):", alt)
	p("")
	p("| N | RSS idle MB | live heap MB | CPU idle %% | step lag p50 s | p99 s | queue max | CPU rolling %% | RSS rolling max MB | mean check s | mean write s | converged | targets broken |")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range r.Scale {
		if len(s.AltWaves) == 0 {
			continue
		}
		conv, roll := 0, 0
		for _, w := range s.AltWaves {
			conv, roll = conv+w.Converged, roll+w.Rolling
		}
		m := s.AltMedian
		alt := ScaleResult{N: s.N, Idle: s.Alt, Waves: s.AltWaves}
		brk := strings.Join(broken(alt), ", ")
		if brk == "" {
			brk = "none"
		}
		p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %s |", s.N, f2(s.Alt.RSSMB), f2(s.Alt.HeapLiveMB), f2(s.Alt.CPUPct),
			f2(m(func(w WaveResult) float64 { return w.LagP50 })), f2(m(func(w WaveResult) float64 { return w.LagP99 })),
			f0(m(func(w WaveResult) float64 { return w.QueueMax })), f2(m(func(w WaveResult) float64 { return w.CPUPct })),
			f2(m(func(w WaveResult) float64 { return w.RSSMaxMB })), f2(m(func(w WaveResult) float64 { return w.CheckMeanS })),
			f2(m(func(w WaveResult) float64 { return w.WriteLatency })), conv, roll, brk)
	}
	p("")
}

// writeStaggered: the same rollouts with their starts spread over one
// interval, so their steps fall due spread out rather than in one second.
func (r Report) writeStaggered(b *strings.Builder) {
	if r.ScaleCfg.StaggeredWaves == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	p("**Staggered starts.** The waves above bump every rolling Deployment in the same second, so all their steps fall due in the same second: the worst case, a burst. Releases of independent teams start at independent times; %d more wave(s) per N, with canaryd's defaults, bump the same Deployments one after another, evenly over one interval (%s). As many roll at once; their steps fall due spread over the interval.", r.ScaleCfg.StaggeredWaves, r.ScaleCfg.Interval)
	p("")
	p("| N | rolling | step lag p50 s | p99 s | held steps | writes per step advance | queue max | CPU rolling %% | machine busy %% | converged | step lag p99 within %g s |", Targets.LagP99)
	p("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range r.Scale {
		if len(s.Staggered) == 0 {
			continue
		}
		conv, roll, held := 0, 0, 0
		for _, w := range s.Staggered {
			conv, roll, held = conv+w.Converged, roll+w.Rolling, held+w.Held
		}
		m := s.StaggeredMedian
		p99 := m(func(w WaveResult) float64 { return w.LagP99 })
		ok := "yes"
		if p99 > Targets.LagP99 {
			ok = "no"
		}
		p("| %d | %d | %s | %s | %d | %s | %s | %s | %s | %d/%d | %s |", s.N, s.Rolling,
			f2(m(func(w WaveResult) float64 { return w.LagP50 })), f2(p99), held,
			f2(m(func(w WaveResult) float64 { return Median(w.AdvanceWrites) })),
			f0(m(func(w WaveResult) float64 { return w.QueueMax })), f2(m(func(w WaveResult) float64 { return w.CPUPct })),
			f0(m(func(w WaveResult) float64 { return w.MachineBusy })), conv, roll, ok)
	}
	p("")
}
