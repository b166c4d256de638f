package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/canaryd/canaryd/rollout"
)

// hookCaller POSTs lifecycle webhook payloads. Gates (pre-rollout,
// confirm-promotion) are asked once per call and asked again on the next
// period by rollout.PlanHook; the post-rollout notice is sent once, so it
// gets a few attempts with backoff here.
type hookCaller struct {
	client  *http.Client
	retries int
	backoff time.Duration
}

func newHookCaller(timeout time.Duration) *hookCaller {
	return &hookCaller{client: &http.Client{Timeout: timeout}, retries: 3, backoff: 500 * time.Millisecond}
}

func (h *hookCaller) call(ctx context.Context, c rollout.HookCall) rollout.HookResult {
	attempts := 1
	if c.Hook == rollout.HookPostRollout {
		attempts = h.retries
	}
	var msg string
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return rollout.HookResult{Hook: c.Hook, Message: ctx.Err().Error()}
			case <-time.After(h.backoff << (i - 1)):
			}
		}
		ok, m := h.post(ctx, c)
		if ok {
			return rollout.HookResult{Hook: c.Hook, OK: true}
		}
		msg = m
	}
	return rollout.HookResult{Hook: c.Hook, Message: msg}
}

// post sends one request; any 2xx is a yes. The reason for a no names the
// status and the start of the body, which is what a gate's author writes
// for the person reading the event.
func (h *hookCaller) post(ctx context.Context, c rollout.HookCall) (bool, string) {
	body, err := json.Marshal(c.Payload)
	if err != nil {
		return false, err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "canaryd")
	resp, err := h.client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode/100 == 2 {
		return true, ""
	}
	text := strings.TrimSpace(string(excerpt))
	if text == "" {
		return false, fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return false, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, text)
}
