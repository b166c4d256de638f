package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Kind is what happened to a rollout, as far as people are told.
type Kind string

const (
	KindStarted      Kind = "started"
	KindStepAdvanced Kind = "step-advanced"
	KindHeld         Kind = "held"
	KindPromoted     Kind = "promoted"
	KindRolledBack   Kind = "rolled-back"
)

// allKinds in the order a rollout meets them.
var allKinds = []Kind{KindStarted, KindStepAdvanced, KindHeld, KindPromoted, KindRolledBack}

// defaultKinds leave out step-advanced: three to five messages per rollout
// are news, one per step is noise in a busy channel.
var defaultKinds = []Kind{KindStarted, KindHeld, KindPromoted, KindRolledBack}

// Receiver types.
const (
	TypeSlack   = "slack"
	TypeWebhook = "webhook"
)

// Config is the notification config file (canaryd --notify-config):
//
//	receivers:
//	  - name: team-chat
//	    type: slack                      # or webhook: JSON POST of the event and status
//	    urlFile: /etc/canaryd/notify/slack-url   # a mounted Secret key
//	    events: [started, held, promoted, rolled-back]   # the default; add step-advanced
//	    namespaces: [shop]               # default: all
//	  - name: audit
//	    type: webhook
//	    urlFile: /etc/canaryd/notify/audit-url
//	    tokenFile: /etc/canaryd/notify/audit-token       # optional: Authorization: Bearer
//	queueSize: 100        # per receiver; when full the oldest message is dropped
//	timeout: 10s          # per delivery attempt
//	maxAttempts: 5
//	retryInitial: 1s      # backoff doubles up to retryMax
//	retryMax: 1m
type Config struct {
	Receivers    []Receiver `json:"receivers"`
	QueueSize    int        `json:"queueSize,omitempty"`
	Timeout      Duration   `json:"timeout,omitempty"`
	MaxAttempts  int        `json:"maxAttempts,omitempty"`
	RetryInitial Duration   `json:"retryInitial,omitempty"`
	RetryMax     Duration   `json:"retryMax,omitempty"`
}

// Receiver is one destination.
type Receiver struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// URLFile holds the webhook URL; it is a secret and is never logged.
	URLFile string `json:"urlFile"`
	// TokenFile, for webhooks, holds a bearer token sent as Authorization.
	TokenFile  string   `json:"tokenFile,omitempty"`
	Events     []Kind   `json:"events,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// Duration reads "10s"-style durations from YAML.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration string such as "10s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 10s: %w", err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// LoadConfig reads and validates a config file. Errors name the field and
// what it accepts, never the content of a secret file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("notification config: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return Config{}, fmt.Errorf("notification config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("notification config %s: %w", path, err)
	}
	return c, nil
}

var receiverName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Validate fills in defaults and reports every invalid field at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if len(c.Receivers) == 0 {
		bad("receivers", "at least one receiver is needed (or drop --notify-config)")
	}
	intIn(&c.QueueSize, 100, 1, 100000, "queueSize", bad)
	intIn(&c.MaxAttempts, 5, 1, 100, "maxAttempts", bad)
	durIn(&c.Timeout, 10*time.Second, time.Millisecond, 5*time.Minute, "timeout", bad)
	durIn(&c.RetryInitial, time.Second, time.Millisecond, time.Hour, "retryInitial", bad)
	durIn(&c.RetryMax, time.Minute, time.Millisecond, 24*time.Hour, "retryMax", bad)
	if c.RetryMax < c.RetryInitial {
		bad("retryMax", "%s is less than retryInitial %s", time.Duration(c.RetryMax), time.Duration(c.RetryInitial))
	}
	seen := map[string]bool{}
	for i := range c.Receivers {
		r := &c.Receivers[i]
		f := fmt.Sprintf("receivers[%d]", i)
		if !receiverName.MatchString(r.Name) {
			bad(f+".name", "%q: want lowercase letters, digits and '-', at most 63", r.Name)
		} else if seen[r.Name] {
			bad(f+".name", "%q is used twice", r.Name)
		}
		seen[r.Name] = true
		if r.Type != TypeSlack && r.Type != TypeWebhook {
			bad(f+".type", "%q: want %q or %q", r.Type, TypeSlack, TypeWebhook)
		}
		if r.URLFile == "" {
			bad(f+".urlFile", "required: a file holding the webhook URL (mount it from a Secret)")
		} else if _, err := readURL(r.URLFile); err != nil {
			bad(f+".urlFile", "%v", err)
		}
		if r.TokenFile != "" {
			if r.Type != TypeWebhook {
				bad(f+".tokenFile", "only for type %q (a Slack webhook URL is its own credential)", TypeWebhook)
			} else if _, err := readSecret(r.TokenFile); err != nil {
				bad(f+".tokenFile", "%v", err)
			}
		}
		if len(r.Events) == 0 {
			r.Events = append([]Kind(nil), defaultKinds...)
		}
		for _, k := range r.Events {
			if !knownKind(k) {
				bad(f+".events", "%q: want some of %s", k, kindList())
			}
		}
	}
	return errors.Join(errs...)
}

func intIn(v *int, def, lo, hi int, field string, bad func(string, string, ...any)) {
	if *v == 0 {
		*v = def
	}
	if *v < lo || *v > hi {
		bad(field, "%d: want %d to %d", *v, lo, hi)
	}
}

func durIn(v *Duration, def, lo, hi time.Duration, field string, bad func(string, string, ...any)) {
	if *v == 0 {
		*v = Duration(def)
	}
	if d := time.Duration(*v); d < lo || d > hi {
		bad(field, "%s: want %s to %s", d, lo, hi)
	}
}

func knownKind(k Kind) bool {
	for _, x := range allKinds {
		if x == k {
			return true
		}
	}
	return false
}

func kindList() string {
	s := make([]string, len(allKinds))
	for i, k := range allKinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// readSecret reads a secret file, trimmed. Its errors name the file only.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("reading %s: %w", path, pe.Err)
		}
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// readURL reads a webhook URL from its file and checks its shape; errors
// say what is wrong without quoting it.
func readURL(path string) (*url.URL, error) {
	s, err := readSecret(path)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%s does not hold an http(s) URL (content not shown: it is a secret)", path)
	}
	return u, nil
}
