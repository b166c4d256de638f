package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/rollout"
)

// sink is a local webhook receiver: it records every request and answers
// with the status codes it is told, in order, then 200.
type sink struct {
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
	paths   []string
	answers []int
	srv     *httptest.Server
}

func newSink(t *testing.T, answers ...int) *sink {
	s := &sink{answers: answers}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies, s.headers, s.paths = append(s.bodies, b), append(s.headers, r.Header.Clone()), append(s.paths, r.URL.Path)
		code := 200
		if len(s.answers) > 0 {
			code, s.answers = s.answers[0], s.answers[1:]
		}
		s.mu.Unlock()
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(code)
		_, _ = fmt.Fprint(w, http.StatusText(code))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

func (s *sink) body(i int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bodies[i]
}

// secret writes a secret file and returns its path.
func secret(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// start builds and runs a Notifier until the test ends.
func start(t *testing.T, cfg Config, log *zap.Logger) *Notifier {
	t.Helper()
	if cfg.RetryInitial == 0 {
		cfg.RetryInitial, cfg.RetryMax = Duration(5*time.Millisecond), Duration(20*time.Millisecond)
	}
	n, err := New(cfg, Options{Log: log, Clock: func() time.Time { return time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// eventually polls cond for up to 10 s: a bound on waiting, not a speed test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 10s", what)
}

func f64(f float64) *float64 { return &f }

// rolledBack is the event and status canaryd raises when a bad canary goes.
func rolledBack() (rollout.Event, rollout.Status) {
	at := time.Date(2026, 3, 14, 15, 9, 20, 0, time.UTC)
	return rollout.Event{Warning: true, Reason: "RolledBack",
			Message: "revision 64d71c82bc rolled back: 2 of 2 allowed failed checks: success rate 95% < 99% over 1m (120 requests)"},
		rollout.Status{Phase: rollout.PhaseFailed, Revision: "64d71c82bc", StableRevision: "61e019a9e8", FailedRevision: "64d71c82bc",
			Step: 1, Weight: 0, Failures: 2, LastCheck: &rollout.Check{Time: at, Verdict: analysis.Fail, Requests: f64(120),
				SuccessRate: f64(95), P99Ms: f64(38.5), Reason: "success rate 95% < 99% over 1m (120 requests) & p99 <fine>"}}
}

func TestSlackPayloadMatchesTheIncomingWebhookFormat(t *testing.T) {
	s := newSink(t)
	n := start(t, Config{Receivers: []Receiver{{Name: "chat", Type: TypeSlack, URLFile: secret(t, s.srv.URL+"/services/T0/B0/x")}}}, nil)
	e, st := rolledBack()
	n.Notify("shop", "web", e, st)
	eventually(t, "the Slack message", func() bool { return s.count() == 1 })

	raw := s.body(0)
	validateSlack(t, raw)
	var p struct {
		Text   string
		Blocks []json.RawMessage
	}
	_ = json.Unmarshal(raw, &p)
	all := strings.Join(texts(t, raw), "\n")
	for _, want := range []string{"shop/web: revision 64d71c82bc rolled back", "120 requests", "success rate 95%", "p99 38.5ms",
		"Failed checks", "95% &lt; 99%", "&amp; p99 &lt;fine&gt;", "canaryd · RolledBack · 2026-03-14T15:09:26Z"} {
		if !strings.Contains(all, want) {
			t.Errorf("the Slack payload lacks %q:\n%s", want, raw)
		}
	}
	if !strings.HasPrefix(p.Text, "shop/web: revision 64d71c82bc rolled back\nrevision 64d71c82bc rolled back: 2 of 2") {
		t.Errorf("text (the notification line) = %q", p.Text)
	}
	if ct := s.headers[0].Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

// texts returns every string in a JSON document, decoded.
func texts(t *testing.T, raw []byte) []string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// validateSlack holds a payload to what Slack's incoming webhooks accept:
// a top-level `text` and `blocks` only; blocks of known types with their
// required fields and Block Kit's length limits; mrkdwn with <, > and &
// escaped.
func validateSlack(t *testing.T, raw []byte) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	for k := range top {
		if k != "text" && k != "blocks" {
			t.Errorf("unexpected top-level field %q", k)
		}
	}
	var p struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string      `json:"type"`
			Text     *slackText  `json:"text"`
			Fields   []slackText `json:"fields"`
			Elements []slackText `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if p.Text == "" || len(p.Blocks) == 0 || len(p.Blocks) > 50 {
		t.Fatalf("want text and 1-50 blocks: %s", raw)
	}
	checkText := func(where string, x slackText, max int) {
		if x.Type != "plain_text" && x.Type != "mrkdwn" {
			t.Errorf("%s: text type %q", where, x.Type)
		}
		if x.Text == "" || len([]rune(x.Text)) > max {
			t.Errorf("%s: text of %d characters (1-%d)", where, len([]rune(x.Text)), max)
		}
		if x.Type == "mrkdwn" && (strings.ContainsAny(strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(x.Text,
			"&amp;", ""), "&lt;", ""), "&gt;", ""), "<>&")) {
			t.Errorf("%s: unescaped <, > or & in mrkdwn: %q", where, x.Text)
		}
	}
	for i, b := range p.Blocks {
		where := fmt.Sprintf("blocks[%d] (%s)", i, b.Type)
		switch b.Type {
		case "header":
			if b.Text == nil || b.Text.Type != "plain_text" {
				t.Errorf("%s: needs plain_text", where)
			} else {
				checkText(where, *b.Text, slackHeaderMax)
			}
		case "section":
			if b.Text == nil && len(b.Fields) == 0 {
				t.Errorf("%s: needs text or fields", where)
			}
			if b.Text != nil {
				checkText(where, *b.Text, slackSectionMax)
			}
			if len(b.Fields) > slackFieldsMax {
				t.Errorf("%s: %d fields (max 10)", where, len(b.Fields))
			}
			for j, f := range b.Fields {
				checkText(fmt.Sprintf("%s.fields[%d]", where, j), f, slackFieldMax)
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				t.Errorf("%s: %d elements (1-10)", where, len(b.Elements))
			}
			for j, e := range b.Elements {
				checkText(fmt.Sprintf("%s.elements[%d]", where, j), e, slackSectionMax)
			}
		default:
			t.Errorf("%s: a block type this payload should not use", where)
		}
	}
}

func TestSlackPayloadsOfEveryKindAreValid(t *testing.T) {
	long := strings.Repeat("a very long reason < with markup > & more ", 200)
	for _, e := range []rollout.Event{
		{Reason: "RolloutStarted", Message: "new revision r2: canary web-canary starting"},
		{Reason: "StepAdvanced", Message: "step 2/3: canary weight 200m (" + long + ")"},
		{Reason: "AnalysisInconclusive", Message: "holding at step 1: 3 canary requests"},
		{Warning: true, Reason: "AnalysisError", Message: "holding at step 1: prometheus down"},
		{Reason: "Promoted", Message: "revision r2 is stable; canary scaled to 0"},
	} {
		kind, _ := kindOf(e)
		m := Message{Kind: kind, Namespace: strings.Repeat("n", 63), Deployment: strings.Repeat("d", 63), Reason: e.Reason, Text: e.Message,
			Status: rollout.Status{Phase: rollout.PhaseProgressing, Revision: "r2", Step: 2, Weight: 200,
				LastCheck: &rollout.Check{Verdict: analysis.Pass, Reason: long}}}
		b, err := slackBody(m)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(e.Reason, func(t *testing.T) { validateSlack(t, b) })
	}
}

func TestWebhookPayloadCarriesTheEventAndStatus(t *testing.T) {
	s := newSink(t)
	n := start(t, Config{Receivers: []Receiver{{Name: "audit", Type: TypeWebhook, URLFile: secret(t, s.srv.URL+"/hook"),
		TokenFile: secret(t, "tok-123"), Events: []Kind{KindRolledBack, KindStepAdvanced}}}}, nil)
	e, st := rolledBack()
	n.Notify("shop", "web", rollout.Event{Reason: "Adopted", Message: "not news"}, st)
	n.Notify("shop", "web", rollout.Event{Reason: "Promoted", Message: "not asked for"}, st)
	n.Notify("shop", "web", e, st)
	eventually(t, "the webhook", func() bool { return s.count() == 1 })

	var got Message
	if err := json.Unmarshal(s.body(0), &got); err != nil {
		t.Fatal(err)
	}
	if got.Kind != KindRolledBack || got.Namespace != "shop" || got.Deployment != "web" || !got.Warning || got.Reason != "RolledBack" ||
		got.Status.FailedRevision != "64d71c82bc" || *got.Status.LastCheck.SuccessRate != 95 || *got.Status.LastCheck.Requests != 120 {
		t.Errorf("payload %s", s.body(0))
	}
	if a := s.headers[0].Get("Authorization"); a != "Bearer tok-123" {
		t.Errorf("Authorization %q", a)
	}
	n.Notify("shop", "web", rollout.Event{Reason: "StepAdvanced", Message: "step 2/3"}, st)
	eventually(t, "the step message asked for", func() bool { return s.count() == 2 })
}

func TestNamespacesFilter(t *testing.T) {
	s := newSink(t)
	n := start(t, Config{Receivers: []Receiver{{Name: "shop-only", Type: TypeWebhook, URLFile: secret(t, s.srv.URL), Namespaces: []string{"shop"}}}}, nil)
	e, st := rolledBack()
	n.Notify("billing", "web", e, st)
	n.Notify("shop", "web", e, st)
	eventually(t, "one message", func() bool { return n.Stats("shop-only").Sent == 1 })
	if s.count() != 1 || !strings.Contains(string(s.body(0)), `"namespace":"shop"`) {
		t.Errorf("got %d messages; first %s", s.count(), s.body(0))
	}
}

func TestDeliveryIsRetriedWithBackoffOnlyWhenItCanHelp(t *testing.T) {
	cases := []struct {
		name           string
		answers        []int
		requests       int
		sent, failed   int
		retries        int
		maxAttemptsCfg int
	}{
		{"5xx twice, then delivered", []int{503, 500}, 3, 1, 0, 2, 5},
		{"429 honours Retry-After, then delivered", []int{429}, 2, 1, 0, 1, 5},
		{"down for longer than the attempts", []int{502, 502, 502, 502}, 3, 0, 1, 2, 3},
		{"400 is not retried: the payload will not get better", []int{400}, 1, 0, 1, 0, 5},
		{"404 (a deleted Slack webhook) is not retried", []int{404}, 1, 0, 1, 0, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSink(t, c.answers...)
			n := start(t, Config{MaxAttempts: c.maxAttemptsCfg,
				Receivers: []Receiver{{Name: "r", Type: TypeSlack, URLFile: secret(t, s.srv.URL)}}}, nil)
			e, st := rolledBack()
			n.Notify("shop", "web", e, st)
			eventually(t, "an outcome", func() bool { st := n.Stats("r"); return st.Sent+st.Failed == 1 })
			got := n.Stats("r")
			if s.count() != c.requests || got.Sent != c.sent || got.Failed != c.failed || got.Retries != c.retries {
				t.Errorf("requests %d, stats %+v; want %d requests, sent %d, failed %d, retries %d",
					s.count(), got, c.requests, c.sent, c.failed, c.retries)
			}
			for i := 1; i < s.count(); i++ {
				if string(s.body(i)) != string(s.body(0)) {
					t.Errorf("retry %d sent a different payload", i)
				}
			}
		})
	}
}

// A receiver that never answers must not hold up the controller (Notify
// returns at once) nor another receiver; its queue keeps the newest
// QueueSize messages and counts what it dropped.
func TestADeadReceiverNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var hung sync.WaitGroup
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		defer hung.Done()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); dead.Close() })
	alive := newSink(t)
	const queue, total = 5, 40
	n := start(t, Config{QueueSize: queue, Timeout: Duration(5 * time.Minute), Receivers: []Receiver{
		{Name: "dead", Type: TypeSlack, URLFile: secret(t, dead.URL)},
		{Name: "alive", Type: TypeWebhook, URLFile: secret(t, alive.srv.URL)},
	}}, nil)
	e, st := rolledBack()
	for i := 0; i < total; i++ {
		st.Step = i
		n.Notify("shop", "web", e, st)
		// The healthy receiver keeps up message by message: its queue never fills.
		eventually(t, fmt.Sprintf("message %d at the live receiver", i), func() bool { return n.Stats("alive").Sent == i+1 })
	}
	if got := n.Stats("alive"); got.Sent != total || got.Dropped != 0 {
		t.Errorf("the live receiver: %+v, want all %d sent", got, total)
	}
	// The dead one holds its first message in flight and the newest five queued.
	if got := n.Stats("dead"); got.Sent != 0 || got.Dropped != total-1-queue {
		t.Errorf("the dead receiver: %+v, want %d dropped", got, total-1-queue)
	}
	var last Message
	_ = json.Unmarshal(alive.body(total-1), &last)
	if last.Status.Step != total-1 {
		t.Errorf("the live receiver's last message is step %d", last.Status.Step)
	}
}

// A webhook URL is a credential: no log line and no error may show it,
// whatever goes wrong.
func TestTheWebhookURLIsNeverLogged(t *testing.T) {
	const secretPath = "/services/T0SECRET/B0SECRET/xoxSECRETTOKEN"
	s := newSink(t, 500, 500, 500)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now: connection refused
	core, logs := observer.New(zap.DebugLevel)
	n := start(t, Config{MaxAttempts: 3, Receivers: []Receiver{
		{Name: "erroring", Type: TypeSlack, URLFile: secret(t, s.srv.URL+secretPath)},
		{Name: "refused", Type: TypeSlack, URLFile: secret(t, "http://"+deadAddr+secretPath)},
	}}, zap.New(core))
	e, st := rolledBack()
	n.Notify("shop", "web", e, st)
	eventually(t, "both given up", func() bool { return n.Stats("erroring").Failed == 1 && n.Stats("refused").Failed == 1 })
	if logs.Len() == 0 {
		t.Fatal("failures should be logged")
	}
	for _, entry := range logs.All() {
		line := entry.Message
		for k, v := range entry.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		if strings.Contains(line, "SECRET") {
			t.Errorf("a log line shows the webhook URL: %s", line)
		}
	}
	// A URL file holding something else must not be quoted either.
	cfg := Config{Receivers: []Receiver{{Name: "x", Type: TypeSlack, URLFile: secret(t, "xoxb-SECRET-not-a-url")}}}
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "receivers[0].urlFile") {
		t.Errorf("config error %v: want it to name the field and not quote the file", err)
	}
}

// A rotated Secret is picked up at the next delivery, without a restart.
func TestARotatedURLIsPickedUp(t *testing.T) {
	old, rotated := newSink(t), newSink(t)
	file := secret(t, old.srv.URL)
	n := start(t, Config{Receivers: []Receiver{{Name: "r", Type: TypeWebhook, URLFile: file}}}, nil)
	e, st := rolledBack()
	n.Notify("shop", "web", e, st)
	eventually(t, "first", func() bool { return old.count() == 1 })
	if err := os.WriteFile(file, []byte(rotated.srv.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	n.Notify("shop", "web", e, st)
	eventually(t, "second at the new URL", func() bool { return rotated.count() == 1 })
	if old.count() != 1 {
		t.Errorf("the old URL got %d messages", old.count())
	}
}
