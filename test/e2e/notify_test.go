package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

// A Slack-shaped receiver on loopback gets one message per rollout event, from
// the real daemon configured with --notify-config, and the secret URL never
// shows in canaryd's log.
func TestNotificationsReachSlackAndNeverLogTheURL(t *testing.T) {
	var mu sync.Mutex
	var texts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msg struct {
			Text   string            `json:"text"`
			Blocks []json.RawMessage `json:"blocks"`
		}
		if err := json.Unmarshal(b, &msg); err != nil || msg.Text == "" || len(msg.Blocks) == 0 {
			http.Error(w, "not a Slack incoming-webhook payload", http.StatusBadRequest)
			return
		}
		mu.Lock()
		texts = append(texts, msg.Text)
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	secretURL := srv.URL + "/services/T000/B000/very-secret-token"

	dir := t.TempDir()
	urlFile := filepath.Join(dir, "slack-url")
	cfgFile := filepath.Join(dir, "notify.yaml")
	if err := os.WriteFile(urlFile, []byte(secretURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "receivers:\n  - name: team\n    type: slack\n    urlFile: " + urlFile + "\n    events: [started, step-advanced, promoted, rolled-back]\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	f := given(t, "e2e-notify").app(nil, healthy).audit().canaryd("--notify-config", cfgFile).adopted()
	f.deploy("example.com/web:2.0", healthy)
	f.waitPhase(rollout.PhaseSucceeded, 2*time.Minute)
	f.waitFor("promoted message", 30*time.Second, func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(texts) > 0 && strings.Contains(strings.ToLower(texts[len(texts)-1]), "promot"), nil
	})
	mu.Lock()
	got := append([]string(nil), texts...)
	mu.Unlock()
	if len(got) < 3 {
		t.Errorf("messages %q: want started, steps and promoted", got)
	}
	log, _ := os.ReadFile(f.log)
	if strings.Contains(string(log), "very-secret-token") {
		t.Error("canaryd logged the webhook URL")
	}
	t.Logf("messages: %q", got)
}
