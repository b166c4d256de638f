package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	url := filepath.Join(dir, "url")
	if err := os.WriteFile(url, []byte("https://hooks.slack.com/services/T/B/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(body string) string {
		p := filepath.Join(dir, "notify.yaml")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "URL", url)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	cfg, err := LoadConfig(write("receivers:\n- name: chat\n  type: slack\n  urlFile: URL\ntimeout: 3s\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Receivers[0]
	if len(r.Events) != 4 || r.Events[0] != KindStarted || cfg.QueueSize != 100 || cfg.MaxAttempts != 5 ||
		time.Duration(cfg.Timeout) != 3*time.Second || time.Duration(cfg.RetryMax) != time.Minute {
		t.Errorf("defaults not applied: %+v", cfg)
	}

	bad := map[string]struct{ yaml, want string }{
		"no receivers":        {"queueSize: 3\n", "receivers: at least one"},
		"unknown type":        {"receivers:\n- name: a\n  type: teams\n  urlFile: URL\n", `receivers[0].type: "teams": want "slack" or "webhook"`},
		"unknown event":       {"receivers:\n- name: a\n  type: slack\n  urlFile: URL\n  events: [promoted, aborted]\n", `receivers[0].events: "aborted": want some of started, step-advanced`},
		"missing url file":    {"receivers:\n- name: a\n  type: slack\n  urlFile: /nonexistent/url\n", "receivers[0].urlFile: reading /nonexistent/url"},
		"no url file":         {"receivers:\n- name: a\n  type: slack\n", "receivers[0].urlFile: required"},
		"duplicate names":     {"receivers:\n- {name: a, type: slack, urlFile: URL}\n- {name: a, type: webhook, urlFile: URL}\n", `receivers[1].name: "a" is used twice`},
		"bad name":            {"receivers:\n- {name: Team Chat, type: slack, urlFile: URL}\n", `receivers[0].name: "Team Chat"`},
		"token on slack":      {"receivers:\n- {name: a, type: slack, urlFile: URL, tokenFile: URL}\n", "receivers[0].tokenFile: only for type"},
		"bad duration":        {"receivers:\n- {name: a, type: slack, urlFile: URL}\ntimeout: soon\n", "want a duration"},
		"queue too big":       {"receivers:\n- {name: a, type: slack, urlFile: URL}\nqueueSize: 1000000\n", "queueSize: 1000000: want 1 to 100000"},
		"retry max too low":   {"receivers:\n- {name: a, type: slack, urlFile: URL}\nretryInitial: 10s\nretryMax: 1s\n", "retryMax: 1s is less than retryInitial 10s"},
		"unknown field":       {"receivers:\n- {name: a, type: slack, url: https://x}\n", `unknown field "url"`},
		"every error at once": {"receivers:\n- {name: a, type: teams}\nmaxAttempts: -1\n", "maxAttempts: -1"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(write(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestKindsOfCanarydsEvents(t *testing.T) {
	cases := map[string]Kind{
		"RolloutStarted": KindStarted, "StepAdvanced": KindStepAdvanced, "AnalysisInconclusive": KindHeld,
		"AnalysisError": KindHeld, "ProgressDeadlineExceeded": KindHeld, "Promoted": KindPromoted, "RolledBack": KindRolledBack,
	}
	for reason, want := range cases {
		if got, ok := kindOf(rollout.Event{Reason: reason}); !ok || got != want {
			t.Errorf("%s → %q, %v; want %q", reason, got, ok, want)
		}
	}
	for _, reason := range []string{"Adopted", "Command", "AnalysisFailed", "Promoting", "RollingBack", "Unpaused"} {
		if k, ok := kindOf(rollout.Event{Reason: reason}); ok {
			t.Errorf("%s should not notify (got %q)", reason, k)
		}
	}
}
