package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readHeaderTimeout guards the metrics server against slow clients.
const readHeaderTimeout = 5 * time.Second

// NewMetricsServer returns a server (not yet listening) on addr that serves Registry() at /metrics.
func NewMetricsServer(addr string) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(registry,
		promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry})))
	return &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
}
