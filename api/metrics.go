package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quantix/cloudimages/signature"
)

// metrics are the API's Prometheus metrics, in a registry of its own (so
// two servers in one test binary do not clash).
type metrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	imageRequests *prometheus.CounterVec
	streams       prometheus.Gauge
	uploadBytes   prometheus.Counter
	uploadsActive prometheus.Gauge
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudimages_api_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cloudimages_api_request_duration_seconds", Help: "HTTP request latency by method and route (events streams last as long as they stream).",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		imageRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudimages_api_image_requests_total",
			Help: "POST /v1/images by outcome: created (a download started), existing (the live or READY image answered), rejected, temporal_unavailable.",
		}, []string{"outcome"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudimages_api_event_streams", Help: "Open image events streams.",
		}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudimages_api_upload_bytes_total", Help: "Bytes of upload bodies (PATCH /v1/uploads/{id}) the API streamed to node agents.",
		}),
		uploadsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudimages_api_upload_streams", Help: "Upload bodies being streamed to node agents now.",
		}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.imageRequests, m.streams, m.uploadBytes, m.uploadsActive,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&storeCollector{s: s})
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

func (m *metrics) observe(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

func (m *metrics) imageRequest(outcome string) { m.imageRequests.WithLabelValues(outcome).Inc() }

// storeCollector reports images and nodes by status, counted in the
// database at scrape time.
type storeCollector struct{ s *Server }

var (
	imagesDesc = prometheus.NewDesc("cloudimages_images", "Images by status.", []string{"status"}, nil)
	nodesDesc  = prometheus.NewDesc("cloudimages_nodes", "Nodes by status (online, offline, unknown).", []string{"status"}, nil)
	signedDesc = prometheus.NewDesc("cloudimages_ready_images_by_signature",
		"READY images by what the signature of their vendor's checksum file said (verified, unsigned, not_checked).", []string{"signature"}, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- imagesDesc
	ch <- nodesDesc
	ch <- signedDesc
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if counts, err := c.s.store.ImageCounts(ctx); err == nil {
		for _, st := range statuses {
			ch <- prometheus.MustNewConstMetric(imagesDesc, prometheus.GaugeValue, float64(counts[st]), st)
		}
	} else {
		c.s.log.Warn("metrics: count images", "error", err)
	}
	if counts, err := c.s.store.NodeCounts(ctx); err == nil {
		for _, st := range []string{"online", "offline", "unknown"} {
			ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(counts[st]), st)
		}
	} else {
		c.s.log.Warn("metrics: count nodes", "error", err)
	}
	if counts, err := c.s.store.ReadySignatureCounts(ctx); err == nil {
		counts[signature.NotChecked] += counts[""] // recorded before signatures were checked
		for _, sig := range []string{signature.Verified, signature.Unsigned, signature.NotChecked} {
			ch <- prometheus.MustNewConstMetric(signedDesc, prometheus.GaugeValue, float64(counts[sig]), sig)
		}
	} else {
		c.s.log.Warn("metrics: count images by signature", "error", err)
	}
}
