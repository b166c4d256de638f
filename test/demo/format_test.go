package main

import (
	"bytes"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
	"github.com/canaryd/canaryd/test/meshsim"
)

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// checkWidth fails for a line wider than the terminal once colour codes
// are taken out, and for any colour code when colour is off.
func checkWidth(t *testing.T, colour bool, lines ...string) {
	t.Helper()
	for _, l := range lines {
		plain := ansi.ReplaceAllString(l, "")
		if n := utf8.RuneCountInString(plain); n > width {
			t.Errorf("%d columns, more than %d: %q", n, width, plain)
		}
		if !colour && plain != l {
			t.Errorf("colour codes with colour off: %q", l)
		}
	}
}

func nums(req, sr, p99 float64) analysis.Numbers {
	return analysis.Numbers{Requests: req, SuccessRate: sr, LatencyP99Ms: p99}
}

func TestRows(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		r    row
		want string // plain text, exactly
	}{
		{
			name: "a step with numbers for both",
			r: row{Elapsed: 12200 * time.Millisecond, Phase: rollout.PhaseProgressing, Step: 3, Steps: 3, Weight: 500,
				Canary: nums(19.4, 100, 28.2), Stable: nums(79, 99.9, 27), Note: "Pass"},
			want: "  +12.2s  Progressing  3/3    50.0%   100.00%   28ms   19    99.90%   27ms   79  Pass",
		},
		{
			name: "no split and no data show as dashes",
			r:    row{Elapsed: 0, Phase: rollout.PhaseIdle, Weight: -1, Canary: nums(nan, nan, nan), Stable: nums(nan, nan, nan)},
			want: "   +0.0s  Idle         -          -         -      -    -         -      -    -",
		},
		{
			name: "a long note is cut at the width",
			r: row{Elapsed: 1234567 * time.Millisecond, Phase: rollout.PhaseWaitingPromotion, Step: 10, Steps: 10,
				Weight: 1000, Canary: nums(12345, 9.5, 123456), Stable: nums(1, 100, 1),
				Note: strings.Repeat("very long note ", 10)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, colour := range []bool{false, true} {
				p := &printer{colour: colour}
				got := p.formatRow(tt.r)
				checkWidth(t, colour, got, p.header())
				if plain := ansi.ReplaceAllString(got, ""); tt.want != "" && plain != tt.want {
					t.Errorf("colour %v:\n got %q\nwant %q", colour, plain, tt.want)
				}
			}
		})
	}
}

func TestTheHeaderNamesTheRowsColumns(t *testing.T) {
	p := &printer{}
	h := p.header()
	r := p.formatRow(row{Elapsed: time.Second, Phase: rollout.PhaseHeld, Step: 1, Steps: 3, Weight: 100,
		Canary: nums(3, 100, 10), Stable: nums(86, 100, 43)})
	// Each title ends where its column ends (numbers are right-aligned).
	for _, title := range []string{"time", "weight", "req"} {
		end := strings.Index(h, title) + len(title)
		if end > len(r) || r[end-1] == ' ' {
			t.Errorf("column %q ends at %d, but the row has a blank there:\n%s\n%s", title, end, h, r)
		}
	}
}

func TestEventsWrapWithinTheWidth(t *testing.T) {
	msg := "rolling back revision df0243b53e: 2 of 2 allowed failed checks: success rate 93.33% < 99% over 5s " +
		"(19 requests); " + strings.Repeat("x", 150)
	for _, colour := range []bool{false, true} {
		p := &printer{colour: colour}
		lines := p.event(10200*time.Millisecond, true, "RollingBack", msg)
		checkWidth(t, colour, lines...)
		if len(lines) < 3 {
			t.Fatalf("a 260-character message in %d lines: %q", len(lines), lines)
		}
		var text []string
		for _, l := range lines {
			text = append(text, strings.TrimSpace(ansi.ReplaceAllString(l, "")))
		}
		joined := strings.Join(text, " ")
		if !strings.HasPrefix(joined, "+10.2s  event RollingBack: rolling back revision df0243b53e: 2 of 2") {
			t.Errorf("first line: %q", text[0])
		}
		// Nothing lost: the words are all there, the long one cut but whole.
		if got := strings.ReplaceAll(joined, " ", ""); !strings.Contains(got, strings.ReplaceAll(msg, " ", "")) {
			t.Errorf("message altered by wrapping:\n%q", joined)
		}
	}
}

func TestWrap(t *testing.T) {
	tests := []struct {
		name        string
		s           string
		first, rest int
		want        []string
	}{
		{"fits", "a b c", 10, 10, []string{"a b c"}},
		{"breaks at spaces", "aaa bbb ccc", 7, 7, []string{"aaa bbb", "ccc"}},
		{"narrower continuation", "aaa bbb ccc ddd", 7, 3, []string{"aaa bbb", "ccc", "ddd"}},
		{"cuts a word longer than a line", "abcdefghij k", 4, 4, []string{"abcd", "efgh", "ij k"}},
		{"empty", "", 5, 5, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := wrap(tt.s, tt.first, tt.rest)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("wrap(%q, %d, %d) = %q, want %q", tt.s, tt.first, tt.rest, got, tt.want)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	outs := []outcome{
		{Name: "1.0 -> 2.0 (good)", Good: true, Phase: rollout.PhaseSucceeded, OK: true, Took: 17700 * time.Millisecond,
			CanaryRequests: 103, Reason: "success rate 100%, p99 19.78ms over 5s (48 requests)"},
		{Name: "2.0 -> 3.0 (bad)", Good: false, Phase: "", Took: 3 * time.Minute, CanaryRequests: 27, CanaryFailures: 2,
			AllFailures: 2, Reason: strings.Repeat("no promotion or rollback within 3m0s; phase Held ", 4)},
	}
	for _, colour := range []bool{false, true} {
		p := &printer{colour: colour}
		lines := p.summary(outs)
		checkWidth(t, colour, lines...)
		plain := ansi.ReplaceAllString(strings.Join(lines, "\n"), "")
		for _, want := range []string{
			"  1.0 -> 2.0 (good)  promoted    promoted      17.7s              103               0          0",
			"  2.0 -> 3.0 (bad)   rolled back timed out    180.0s               27               2          2",
			"    why: success rate 100%, p99 19.78ms over 5s (48 requests)",
			"      phase Held",
		} {
			if !strings.Contains(plain, want) {
				t.Errorf("colour %v: summary lacks %q:\n%s", colour, want, plain)
			}
		}
	}
}

func TestColourOnlyOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	p := &printer{w: &buf}
	p.heading("title")
	if strings.Contains(buf.String(), "\x1b") {
		t.Errorf("colour with colour off: %q", buf.String())
	}
	file, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	// /dev/null stands in for a terminal: both are character devices.
	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	tests := []struct {
		name, noColour, term string
		out                  *os.File
		want                 bool
	}{
		{"a regular file", "", "xterm", file, false},
		{"a character device", "", "xterm", dev, true},
		{"NO_COLOR set", "1", "xterm", dev, false},
		{"a dumb terminal", "", "dumb", dev, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", tt.noColour)
			t.Setenv("TERM", tt.term)
			if got := wantColour(tt.out); got != tt.want {
				t.Errorf("wantColour = %v, want %v", got, tt.want)
			}
		})
	}
}

func deployment(image string, updated int32) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: container, Image: image}}
	d.Status.UpdatedReplicas = updated
	return d
}

func TestVerify(t *testing.T) {
	promoted := rollout.Status{Phase: rollout.PhaseSucceeded, Revision: "b", StableRevision: "b"}
	rolledBack := rollout.Status{Phase: rollout.PhaseFailed, Revision: "c", StableRevision: "b", FailedRevision: "c"}
	tests := []struct {
		name string
		s    snapshot
		v    version
		want string // a fragment of the complaint; "" for none
	}{
		{"promoted and running", snapshot{d: deployment(goodVersion.image(), 3), st: promoted}, goodVersion, ""},
		{"promoted in status only", snapshot{d: deployment(goodVersion.image(), 3), st: rollout.Status{Revision: "b", StableRevision: "a"}},
			goodVersion, `stable revision "a" is not the promoted "b"`},
		{"traffic left on the canary", snapshot{d: deployment(goodVersion.image(), 3), st: promoted, weight: 1000},
			goodVersion, "canary weight is 1000m, not 0"},
		{"rolled back, pending and paused", snapshot{d: deployment(badVersion.image(), 0), st: rolledBack}, badVersion, ""},
		{"rolled back but its pods run", snapshot{d: deployment(badVersion.image(), 1), st: rolledBack}, badVersion,
			"1 pods of the rolled back revision run"},
		{"not remembered as failed", snapshot{d: deployment(badVersion.image(), 0), st: rollout.Status{Revision: "c"}}, badVersion,
			`failed revision "" is not the rolled back "c"`},
		{"another image", snapshot{d: deployment(initial.image(), 0), st: rolledBack}, badVersion,
			"image is example.com/podinfo:1.0, not example.com/podinfo:3.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := verify(tt.s, tt.v)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("verify = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTrafficCountsOnlyPodinfo(t *testing.T) {
	stats := map[meshsim.Route]meshsim.Counts{
		{Namespace: namespace, Service: app, Backend: app + "-stable"}: {Requests: 100, Failures: 1},
		{Namespace: namespace, Service: app, Backend: canary}:          {Requests: 30, Failures: 2, NoEndpoint: 1},
		{Namespace: namespace, Service: app, Backend: ""}:              {Requests: 4, NoEndpoint: 4},
		{Namespace: "other", Service: app, Backend: canary}:            {Requests: 99, Failures: 99},
	}
	req, fail, all := traffic(stats)
	if req != 30 || fail != 3 || all != 8 {
		t.Errorf("traffic = %d canary requests, %d canary failures, %d failures; want 30, 3, 8", req, fail, all)
	}
}
