package analysis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultQueryTimeout bounds one Prometheus query when ClientConfig.Timeout is zero.
const DefaultQueryTimeout = 10 * time.Second

// ClientConfig says how to reach Prometheus. cmd/canaryd maps its flags onto it.
type ClientConfig struct {
	// Address is the base URL, e.g. http://prometheus.linkerd-viz.svc:9090.
	Address string
	// Timeout bounds each query, both client-side and as Prometheus's own
	// `timeout` parameter. Zero means DefaultQueryTimeout.
	Timeout time.Duration

	// BearerToken, or BearerTokenFile (read at every request, so that a
	// rotated projected token is picked up), sets "Authorization: Bearer …".
	BearerToken     string
	BearerTokenFile string
	// Username and Password (or PasswordFile) set basic auth.
	Username     string
	Password     string
	PasswordFile string

	// CAFile verifies the server; CertFile/KeyFile present a client certificate.
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool

	// Headers are added to every request (e.g. X-Scope-OrgID for a
	// multi-tenant Prometheus-compatible backend).
	Headers map[string]string
}

// queryError says which query failed and why. Its message is meant to be
// read by an operator in an Event, so it carries the HTTP status, the
// Prometheus error type and the start of the response body when there is one.
type queryError struct {
	Name   string // what the query is for, e.g. "canary and stable counts over 1m"
	Query  string
	Status int    // HTTP status, 0 if no response
	Type   string // Prometheus errorType, if any
	Body   string // excerpt of the response body
	Err    error
}

func (e *queryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "query %q failed", e.Name)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Body != "" {
		fmt.Fprintf(&b, " (body: %s)", e.Body)
	}
	return b.String()
}

func (e *queryError) Unwrap() error { return e.Err }

// exchange records the last HTTP response seen for one query; it travels in
// the query's context because the v1 API reports errors without the status
// code or (for 4xx) the body.
type exchange struct {
	status int
	body   []byte
}

type exchangeKey struct{}

// recordingClient is an api.Client that fills the exchange found in the context.
type recordingClient struct{ api.Client }

func (r recordingClient) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	resp, body, err := r.Client.Do(ctx, req)
	if ex, ok := ctx.Value(exchangeKey{}).(*exchange); ok && resp != nil {
		ex.status, ex.body = resp.StatusCode, body
	}
	return resp, body, err
}

// promClient runs instant queries with a timeout each.
type promClient struct {
	api     v1.API
	timeout time.Duration
}

func newPromClient(cfg ClientConfig) (*promClient, error) {
	if cfg.Address == "" {
		return nil, errors.New("prometheus address is empty")
	}
	rt, err := newRoundTripper(cfg)
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(api.Config{Address: cfg.Address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus address %q: %w", cfg.Address, err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	return &promClient{api: v1.NewAPI(recordingClient{c}), timeout: timeout}, nil
}

// query runs q as an instant query at `at` (zero: Prometheus's now). Warnings
// are ignored: they concern partial data from remote storage, and a verdict
// on partial data is still better judged by the numbers themselves.
func (c *promClient) query(ctx context.Context, name, q string, at time.Time) (model.Value, error) {
	ex := &exchange{}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, exchangeKey{}, ex), c.timeout)
	defer cancel()
	v, _, _, err := c.api.Query(ctx, q, at, v1.WithTimeout(c.timeout))
	if err == nil {
		return v, nil
	}
	qe := &queryError{Name: name, Query: q, Status: ex.status, Body: excerpt(ex.body), Err: err}
	var apiErr *v1.Error
	if errors.As(err, &apiErr) {
		qe.Type = string(apiErr.Type)
		if ex.status == 400 || ex.status == 422 {
			qe.Body = "" // Prometheus's own error, already in apiErr
		}
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		qe.Err = fmt.Errorf("timed out after %s: %w", c.timeout, err)
	}
	return nil, qe
}

// excerpt keeps the first 200 bytes of a body on one line.
func excerpt(body []byte) string {
	const max = 200
	s := strings.TrimSpace(string(body))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.Join(strings.Fields(s), " ")
}

// authTransport adds credentials and headers to each request.
type authTransport struct {
	next http.RoundTripper
	cfg  ClientConfig
}

func (t authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range t.cfg.Headers {
		req.Header.Set(k, v)
	}
	token := t.cfg.BearerToken
	if t.cfg.BearerTokenFile != "" {
		b, err := os.ReadFile(t.cfg.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading bearer token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if t.cfg.Username != "" {
		password := t.cfg.Password
		if t.cfg.PasswordFile != "" {
			b, err := os.ReadFile(t.cfg.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("reading basic auth password: %w", err)
			}
			password = strings.TrimSpace(string(b))
		}
		req.SetBasicAuth(t.cfg.Username, password)
	}
	return t.next.RoundTrip(req)
}

func newRoundTripper(cfg ClientConfig) (http.RoundTripper, error) {
	if cfg.BearerToken != "" && cfg.BearerTokenFile != "" {
		return nil, errors.New("set only one of bearer token and bearer token file")
	}
	if (cfg.BearerToken != "" || cfg.BearerTokenFile != "") && cfg.Username != "" {
		return nil, errors.New("set only one of bearer token and basic auth")
	}
	tlsCfg, err := newTLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	base := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		TLSClientConfig:     tlsCfg,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	return authTransport{next: base, cfg: cfg}, nil
}

func newTLSConfig(cfg ClientConfig) (*tls.Config, error) {
	t := &tls.Config{
		ServerName:         cfg.ServerName,
		InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // an explicit operator choice
		MinVersion:         tls.VersionTLS12,
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading prometheus CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("prometheus CA %s: no PEM certificate found", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("prometheus client certificate needs both cert and key files")
	}
	if cfg.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading prometheus client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}
