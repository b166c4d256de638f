package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/canaryd/canaryd/rollout"
)

// Notifier delivers messages to the configured receivers.
type Notifier struct {
	cfg   Config
	log   *zap.Logger
	clock func() time.Time
	http  *http.Client
	recv  []*receiver

	sent, failed, dropped *prometheus.CounterVec
	retries               *prometheus.CounterVec
	queued                *prometheus.GaugeVec
}

// receiver is one destination with its bounded queue.
type receiver struct {
	Receiver
	kinds map[Kind]bool
	ns    map[string]bool // empty: all

	mu    sync.Mutex
	queue []Message // oldest first, at most cfg.QueueSize
	wake  chan struct{}
	stats Stats
}

// Stats count one receiver's messages.
type Stats struct {
	Sent, Failed, Dropped, Retries int
}

// Options are what tests and wiring may change beyond the config file.
type Options struct {
	Log   *zap.Logger
	Clock func() time.Time
	// HTTP is the client for deliveries; its per-attempt timeout is
	// Config.Timeout. Default: a client with the environment's proxy.
	HTTP *http.Client
}

// New builds a Notifier from a validated config (LoadConfig validates).
func New(cfg Config, o Options) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2,
			IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second}}
	}
	label := []string{"receiver"}
	n := &Notifier{cfg: cfg, log: o.Log, clock: o.Clock, http: o.HTTP,
		sent:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_notifications_sent_total", Help: "Notifications delivered."}, label),
		failed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_notifications_failed_total", Help: "Notifications given up after retries or refused by the receiver."}, label),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_notifications_dropped_total", Help: "Notifications dropped because the receiver's queue was full."}, label),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_notification_retries_total", Help: "Delivery attempts after a first failure."}, label),
		queued:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "canaryd_notifications_queued", Help: "Notifications waiting per receiver."}, label),
	}
	for _, r := range cfg.Receivers {
		rc := &receiver{Receiver: r, kinds: map[Kind]bool{}, ns: map[string]bool{}, wake: make(chan struct{}, 1)}
		for _, k := range r.Events {
			rc.kinds[k] = true
		}
		for _, ns := range r.Namespaces {
			rc.ns[ns] = true
		}
		n.recv = append(n.recv, rc)
	}
	return n, nil
}

// Load reads a config file and builds its Notifier: canaryd's
// --notify-config.
func Load(path string, o Options) (*Notifier, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return New(cfg, o)
}

// Register adds the notification metrics to reg.
func (n *Notifier) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{n.sent, n.failed, n.dropped, n.retries, n.queued} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering notification metrics: %w", err)
		}
	}
	return nil
}

// Stats returns a receiver's counters.
func (n *Notifier) Stats(name string) Stats {
	for _, r := range n.recv {
		if r.Name == name {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.stats
		}
	}
	return Stats{}
}

// Notify is kube.Config's Notify hook: it turns an event into a message for
// every receiver that wants it and returns at once. It never blocks: a full
// queue drops its oldest message.
func (n *Notifier) Notify(namespace, name string, e rollout.Event, st rollout.Status) {
	kind, ok := kindOf(e)
	if !ok {
		return
	}
	m := Message{Kind: kind, Namespace: namespace, Deployment: name, Reason: e.Reason, Warning: e.Warning,
		Text: e.Message, Time: n.clock().UTC(), Status: st}
	for _, r := range n.recv {
		if !r.kinds[kind] || (len(r.ns) > 0 && !r.ns[namespace]) {
			continue
		}
		r.mu.Lock()
		if len(r.queue) >= n.cfg.QueueSize {
			// The oldest goes: the newest says where the rollout is now.
			r.queue = r.queue[1:]
			r.stats.Dropped++
			n.dropped.WithLabelValues(r.Name).Inc()
		}
		r.queue = append(r.queue, m)
		n.queued.WithLabelValues(r.Name).Set(float64(len(r.queue)))
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default: // already woken
		}
	}
}

// Run delivers until ctx is done; one sender per receiver.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range n.recv {
		wg.Go(func() { n.send(ctx, r) })
	}
	wg.Wait()
	return nil
}

func (n *Notifier) send(ctx context.Context, r *receiver) {
	for {
		r.mu.Lock()
		var m *Message
		if len(r.queue) > 0 {
			next := r.queue[0]
			m = &next
			r.queue = r.queue[1:]
			n.queued.WithLabelValues(r.Name).Set(float64(len(r.queue)))
		}
		r.mu.Unlock()
		if m == nil {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		err := n.deliver(ctx, r, *m)
		r.mu.Lock()
		if err == nil {
			r.stats.Sent++
		} else {
			r.stats.Failed++
		}
		r.mu.Unlock()
		if err == nil {
			n.sent.WithLabelValues(r.Name).Inc()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		n.failed.WithLabelValues(r.Name).Inc()
		n.log.Warn("notification not delivered", zap.String("receiver", r.Name), zap.String("kind", string(m.Kind)),
			zap.String("deployment", m.Namespace+"/"+m.Deployment), zap.Error(err))
	}
}

// deliver sends one message, retrying with exponential backoff and jitter.
func (n *Notifier) deliver(ctx context.Context, r *receiver, m Message) error {
	var body []byte
	var err error
	if r.Type == TypeSlack {
		body, err = slackBody(m)
	} else {
		body, err = webhookBody(m)
	}
	if err != nil {
		return err
	}
	wait := time.Duration(n.cfg.RetryInitial)
	for attempt := 1; ; attempt++ {
		retryAfter, err := n.post(ctx, r, body)
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) || attempt >= n.cfg.MaxAttempts {
			return fmt.Errorf("attempt %d of %d: %w", attempt, n.cfg.MaxAttempts, err)
		}
		d := wait/2 + rand.N(wait/2+1) // jitter: receivers recovering from an outage are not hit in step
		if retryAfter > d {
			d = retryAfter
		}
		d = min(d, time.Duration(n.cfg.RetryMax))
		r.mu.Lock()
		r.stats.Retries++
		r.mu.Unlock()
		n.retries.WithLabelValues(r.Name).Inc()
		n.log.Debug("notification delivery failed; retrying", zap.String("receiver", r.Name), zap.Int("attempt", attempt),
			zap.Duration("in", d), zap.Error(err))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, time.Duration(n.cfg.RetryMax))
	}
}

// permanent marks a failure retrying cannot fix (a 4xx other than 429).
type permanent struct{ error }

// post makes one attempt. The URL is read from its file each time (a
// rotated Secret is picked up) and kept out of every error it returns.
func (n *Notifier) post(ctx context.Context, r *receiver, body []byte) (time.Duration, error) {
	u, err := readURL(r.URLFile)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, permanent{errors.New("building the request failed")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "canaryd-notify")
	if r.TokenFile != "" {
		tok, err := readSecret(r.TokenFile)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, withoutURL(err)
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) // let the connection be reused
	if resp.StatusCode/100 == 2 {
		return 0, nil
	}
	err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.Join(strings.Fields(string(excerpt)), " "))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return retryAfter(resp.Header.Get("Retry-After")), err
	case resp.StatusCode >= 500:
		return 0, err
	}
	return 0, permanent{err}
}

// retryAfter reads a Retry-After in seconds (Slack's form); dates count as none.
func retryAfter(v string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// withoutURL drops the URL that net/http puts in its errors
// (`Post "https://hooks.slack.com/services/…": …`): it is a secret.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("%s: timed out: %w", ue.Op, scrub(ue.Err))
		}
		return fmt.Errorf("%s: %w", ue.Op, scrub(ue.Err))
	}
	return errors.New("request failed")
}

// scrub keeps an inner error only if it cannot carry the URL either.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New("request failed")
	}
	return err
}
