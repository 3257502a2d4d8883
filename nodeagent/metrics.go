package nodeagent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, in a registry of its own so
// that two agents in one process (tests, `cloudimages dev`) do not clash.
type metrics struct {
	registry  *prometheus.Registry
	bytes     prometheus.Counter
	completed prometheus.Counter
	failures  *prometheus.CounterVec
	// mirrorSwitches counts moves to the next mirror of a list.
	mirrorSwitches prometheus.Counter
	// served counts the bytes of published files sent to peers, serving
	// the reads in progress; peerBytes the bytes received from peers.
	served    prometheus.Counter
	serving   prometheus.Gauge
	peerBytes prometheus.Counter
	// requests counts the API's requests by route ("GET /v1/downloads/{id}"):
	// what watching downloads costs the agent.
	requests *prometheus.CounterVec
	// longPolls counts the GETs that waited for a change (FeatureLongPoll)
	// by what ended the wait; longPollsWaiting is those waiting now.
	longPolls        *prometheus.CounterVec
	longPollsWaiting prometheus.Gauge
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudimages_nodeagent_downloaded_bytes_total",
			Help: "Bytes written to partial files from mirrors.",
		}),
		completed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudimages_nodeagent_downloads_completed_total",
			Help: "Downloads verified and published.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudimages_nodeagent_download_failures_total",
			Help: "Downloads that failed, by error code.",
		}, []string{"code"}),
		mirrorSwitches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudimages_nodeagent_mirror_switches_total",
			Help: "Moves to the next mirror of a download's list after one failed (404, 5xx, unreachable, stalled).",
		}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudimages_nodeagent_served_bytes_total",
			Help: "Bytes of published files sent to peer agents (GET /v1/pools/{pool_id}/files/{file_name}).",
		}),
		serving: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudimages_nodeagent_file_reads_active",
			Help: "Published files being sent to peer agents now.",
		}),
		peerBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudimages_nodeagent_peer_bytes_total",
			Help: "Bytes written to partial files from peer agents (peer copies); also counted in downloaded_bytes_total.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudimages_nodeagent_http_requests_total",
			Help: "Requests to the agent's API that passed authentication, by route.",
		}, []string{"route"}),
		longPolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudimages_nodeagent_long_polls_total",
			Help: "GETs of a download that waited for it to change (?wait=&after=), by what ended the wait: changed (its state, or it was not at the version), progress (its bytes), timeout, gone (the caller or the download went away), stopping (the agent).",
		}, []string{"answer"}),
		longPollsWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudimages_nodeagent_long_polls_waiting",
			Help: "GETs of a download waiting for it to change now.",
		}),
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cloudimages_nodeagent_downloads_active",
		Help: "Downloads running (transferring or verifying).",
	}, func() float64 { _, running := s.counts(); return float64(running) })
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cloudimages_nodeagent_downloads_queued",
		Help: "Downloads waiting for a slot (--max-concurrent).",
	}, func() float64 { queued, _ := s.counts(); return float64(queued) })
	paused := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cloudimages_nodeagent_downloads_paused",
		Help: "Downloads paused (a transfer window ended), their partial data kept.",
	}, func() float64 { return float64(s.pausedCount()) })
	for _, p := range s.order {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "cloudimages_nodeagent_pool_free_bytes",
			Help:        "Free bytes in a storage pool.",
			ConstLabels: prometheus.Labels{"pool_id": p.id},
		}, func() float64 { free, _, _ := p.space(); return float64(free) }))
	}
	m.registry.MustRegister(m.bytes, m.completed, m.failures, m.mirrorSwitches, m.served, m.serving, m.peerBytes, m.requests, m.longPolls, m.longPollsWaiting, active, queued, paused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
