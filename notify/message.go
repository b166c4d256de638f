package notify

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/canaryd/canaryd/rollout"
)

// kindOf maps the reasons of canaryd's events (package rollout) to what
// people are told; every other event is not news.
func kindOf(e rollout.Event) (Kind, bool) {
	switch e.Reason {
	case "RolloutStarted":
		return KindStarted, true
	case "StepAdvanced":
		return KindStepAdvanced, true
	case "AnalysisInconclusive", "AnalysisError", "ProgressDeadlineExceeded":
		return KindHeld, true
	case "Promoted":
		return KindPromoted, true
	case "RolledBack":
		return KindRolledBack, true
	}
	return "", false
}

// Message is one notification, before it is shaped for a receiver.
type Message struct {
	Kind       Kind           `json:"kind"`
	Namespace  string         `json:"namespace"`
	Deployment string         `json:"deployment"`
	Reason     string         `json:"reason"`
	Warning    bool           `json:"warning"`
	Text       string         `json:"message"`
	Time       time.Time      `json:"time"`
	Status     rollout.Status `json:"status"`
}

// title is the one line that says it all.
func (m Message) title() string {
	id := m.Namespace + "/" + m.Deployment
	st := m.Status
	switch m.Kind {
	case KindStarted:
		return fmt.Sprintf("%s: rollout of revision %s started", id, st.Revision)
	case KindStepAdvanced:
		return fmt.Sprintf("%s: step %d, canary at %s", id, st.Step, percent(st.Weight))
	case KindHeld:
		return fmt.Sprintf("%s: rollout held at step %d (canary %s)", id, st.Step, percent(st.Weight))
	case KindPromoted:
		return fmt.Sprintf("%s: revision %s promoted", id, st.Revision)
	case KindRolledBack:
		return fmt.Sprintf("%s: revision %s rolled back", id, st.Revision)
	}
	return id + ": " + m.Reason
}

// facts are the numbers behind the decision, as label/value pairs.
func (m Message) facts() [][2]string {
	st := m.Status
	rev := st.Revision
	if st.StableRevision != "" && st.StableRevision != st.Revision {
		rev += " (stable " + st.StableRevision + ")"
	}
	f := [][2]string{{"Phase", string(st.Phase)}, {"Revision", rev},
		{"Step · canary weight", fmt.Sprintf("%d · %s", st.Step, percent(st.Weight))},
		{"Failed checks", strconv.Itoa(st.Failures)}}
	if c := st.LastCheck; c != nil {
		f = append(f, [2]string{"Last check", fmt.Sprintf("%s at %s", c.Verdict, c.Time.UTC().Format("15:04:05Z"))})
		var nums []string
		if c.Requests != nil {
			nums = append(nums, fmt.Sprintf("%s requests", num(*c.Requests)))
		}
		if c.SuccessRate != nil {
			nums = append(nums, fmt.Sprintf("success rate %s%%", num(*c.SuccessRate)))
		}
		if c.P99Ms != nil {
			nums = append(nums, fmt.Sprintf("p99 %sms", num(*c.P99Ms)))
		}
		if len(nums) > 0 {
			f = append(f, [2]string{"Canary", strings.Join(nums, ", ")})
		}
	}
	return f
}

func num(f float64) string {
	s := strconv.FormatFloat(f, 'f', 2, 64)
	return strings.TrimRight(strings.TrimRight(s, "0"), ".")
}

func percent(milli int) string {
	return num(float64(milli)/10) + "%"
}

// webhookBody is the generic JSON: the message with canaryd's whole status.
func webhookBody(m Message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding webhook payload: %w", err)
	}
	return b, nil
}

// Slack's Block Kit limits (api.slack.com/reference/block-kit/blocks):
// header text 150 characters, section text 3000, each field 2000, at most 10
// fields per section and 10 context elements.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
	slackFieldsMax  = 10
)

type slackText struct {
	Type  string `json:"type"` // plain_text or mrkdwn
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackPayload struct {
	Text   string       `json:"text"` // the notification and fallback text
	Blocks []slackBlock `json:"blocks"`
}

var slackIcons = map[Kind]string{KindStarted: ":rocket:", KindStepAdvanced: ":arrow_up:", KindHeld: ":double_vertical_bar:",
	KindPromoted: ":white_check_mark:", KindRolledBack: ":rewind:"}

// slackBody is an incoming-webhook payload: `text` for notifications and
// clients without blocks, `blocks` for the layout.
func slackBody(m Message) ([]byte, error) {
	title := m.title()
	p := slackPayload{
		Text: slackEscape(title + "\n" + m.Text),
		Blocks: []slackBlock{
			{Type: "header", Text: &slackText{Type: "plain_text", Text: clip(slackIcons[m.Kind]+" "+title, slackHeaderMax), Emoji: true}},
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: clip(slackEscape(m.Text), slackSectionMax)}},
		},
	}
	var fields []slackText
	for _, f := range m.facts() {
		if len(fields) == slackFieldsMax {
			break
		}
		fields = append(fields, slackText{Type: "mrkdwn", Text: clip("*"+f[0]+"*\n"+slackEscape(f[1]), slackFieldMax)})
	}
	p.Blocks = append(p.Blocks, slackBlock{Type: "section", Fields: fields})
	if c := m.Status.LastCheck; c != nil && c.Reason != "" {
		p.Blocks = append(p.Blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn",
			Text: clip("*Why:* "+slackEscape(c.Reason), slackSectionMax)}})
	}
	p.Blocks = append(p.Blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn",
		Text: slackEscape(fmt.Sprintf("canaryd · %s · %s", m.Reason, m.Time.UTC().Format(time.RFC3339)))}}})
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding Slack payload: %w", err)
	}
	return b, nil
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to:
// "success rate 95% < 99%" must not open a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// clip cuts s to at most n characters, marking the cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
