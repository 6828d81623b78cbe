package httpapi

import (
	"net/http"

	"github.com/tidings-io/tidings/protocol"
)

// metrics serves GET /metrics with Config.Metrics: the OpenTelemetry
// instruments of every package, the Go runtime and the process, in the
// Prometheus text format.
func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "metrics are off (OTEL_METRICS_EXPORTER=none)")
		return
	}
	a.cfg.Metrics.ServeHTTP(w, r)
}
