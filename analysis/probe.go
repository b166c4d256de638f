package analysis

import (
	"context"
	"time"

	"github.com/prometheus/common/model"
)

// Query runs one instant query at Prometheus's now through the analyzer's
// client (address, credentials, TLS, headers, timeout), so that diagnostics
// such as `canaryd check` reach Prometheus exactly as the analysis does.
// It is not for verdicts: Analyze is.
func (p *Prom) Query(ctx context.Context, name, q string) (model.Value, error) {
	return p.client.query(ctx, name, q, time.Time{})
}
