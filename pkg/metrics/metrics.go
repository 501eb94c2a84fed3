// Package metrics holds netplug's Prometheus metrics and serves them, together with the /healthz
// and /readyz probes.
//
// Everything is registered on a registry of its own (not the global default), so what /metrics
// exposes is exactly what this package declares plus the Go and process collectors.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/util/workqueue"
)

const namespace = "netplug"

// durationBuckets span 1 ms .. ~65 s: a CRI lookup takes milliseconds, a slow CNI ADD up to the
// Multus timeout of a minute.
var durationBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

// Reconcile results and plug operations/results, the label values callers use.
const (
	ResultSuccess = "success"
	ResultError   = "error"
	ResultRequeue = "requeue"

	OperationAdd = "add"
	OperationDel = "del"

	// The states of a pool's devices (netplug_pool_devices).
	DeviceFree      = "free"
	DeviceAllocated = "allocated"
	DeviceUnhealthy = "unhealthy"
	// DeviceHotplugged: handed by netplug to a running pod (not the kubelet's to allocate).
	DeviceHotplugged = "hotplugged"
)

var (
	// ReconcileDuration is the time of one reconcile of one pod, by result (success|error|requeue).
	ReconcileDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace,
		Name:      "reconcile_duration_seconds",
		Help:      "Time taken by one reconcile of one pod, by result (success, error, requeue).",
		Buckets:   durationBuckets,
	}, []string{"result"})

	// PlugDuration is the time of one Multus delegate call, by operation (add|del) and result (success|error).
	PlugDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace,
		Name:      "plug_duration_seconds",
		Help:      "Time taken by one Multus delegate call, by operation (add, del) and result (success, error).",
		Buckets:   durationBuckets,
	}, []string{"operation", "result"})

	// Failures counts failures by reason; callers pick reasons from a short fixed set.
	Failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "failures_total",
		Help:      "Failures by reason.",
	}, []string{"reason"})

	// Attachments is the number of interfaces netplug currently manages on this node.
	Attachments = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "attachments",
		Help:      "Interfaces netplug currently manages on this node.",
	})

	// PoolDevices is the number of devices of each pool by state (free|allocated|unhealthy|hotplugged).
	PoolDevices = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "pool_devices",
		Help:      "Devices of each device pool on this node, by state (free, allocated by the kubelet, unhealthy, hotplugged into a running pod by netplug).",
	}, []string{"pool", "state"})
)

var registry = newRegistry()

func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		ReconcileDuration, PlugDuration, Failures, Attachments, PoolDevices,
	)
	return r
}

// Registry is the registry /metrics serves; register extra collectors here.
func Registry() *prometheus.Registry {
	return registry
}

var registerWorkqueue sync.Once

// RegisterWorkqueueProvider makes client-go work queues report netplug_workqueue_* metrics,
// labelled by queue name. Call it before creating a queue: a queue created earlier has no metrics.
func RegisterWorkqueueProvider() {
	registerWorkqueue.Do(func() {
		p := newWorkqueueProvider()
		registry.MustRegister(p.collectors()...)
		workqueue.SetProvider(p)
	})
}

// workqueueProvider implements workqueue.MetricsProvider with one vector per metric.
type workqueueProvider struct {
	depth, unfinished, longest *prometheus.GaugeVec
	adds, retries              *prometheus.CounterVec
	latency, workDuration      *prometheus.HistogramVec
}

func newWorkqueueProvider() *workqueueProvider {
	const subsystem = "workqueue"
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, []string{"name"})
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, []string{"name"})
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: durationBuckets}, []string{"name"})
	}
	return &workqueueProvider{
		depth:        gauge("depth", "Current depth of the work queue."),
		adds:         counter("adds_total", "Adds handled by the work queue."),
		latency:      histogram("queue_duration_seconds", "Time an item waits in the work queue before being processed."),
		workDuration: histogram("work_duration_seconds", "Time processing an item from the work queue takes."),
		unfinished:   gauge("unfinished_work_seconds", "Seconds of work in progress not yet observed by work_duration; large values suggest stuck workers."),
		longest:      gauge("longest_running_processor_seconds", "Seconds the longest running worker has been processing its item."),
		retries:      counter("retries_total", "Retries handled by the work queue."),
	}
}

func (p *workqueueProvider) collectors() []prometheus.Collector {
	return []prometheus.Collector{p.depth, p.adds, p.latency, p.workDuration, p.unfinished, p.longest, p.retries}
}

func (p *workqueueProvider) NewDepthMetric(name string) workqueue.GaugeMetric {
	return p.depth.WithLabelValues(name)
}

func (p *workqueueProvider) NewAddsMetric(name string) workqueue.CounterMetric {
	return p.adds.WithLabelValues(name)
}

func (p *workqueueProvider) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return p.latency.WithLabelValues(name)
}

func (p *workqueueProvider) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return p.workDuration.WithLabelValues(name)
}

func (p *workqueueProvider) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return p.unfinished.WithLabelValues(name)
}

func (p *workqueueProvider) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return p.longest.WithLabelValues(name)
}

func (p *workqueueProvider) NewRetriesMetric(name string) workqueue.CounterMetric {
	return p.retries.WithLabelValues(name)
}
