package api

import (
	"log/slog"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// observe logs every request with its request id, route and outcome, and
// counts it. Errors are rendered here (c.Error), so the status is known.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		req, res := c.Request(), c.Response()
		route := c.Path()
		if route == "" || isUIRoute(route) && strings.HasPrefix(req.URL.Path, "/v1/") {
			route = "unmatched"
		}
		elapsed := time.Since(start)
		s.metrics.observe(req.Method, route, res.Status, elapsed)
		attrs := []any{"method", req.Method, "path", req.URL.Path, "route", route, "status", res.Status,
			"latency_ms", elapsed.Milliseconds(), "bytes", res.Size, "request_id", res.Header().Get(echo.HeaderXRequestID)}
		if id := c.Param("id"); id != "" {
			attrs = append(attrs, resourceAttr(route), id)
		}
		level := slog.LevelInfo
		switch {
		case res.Status >= 500:
			level = slog.LevelError
		case res.Status >= 400:
			level = slog.LevelWarn
		case req.URL.Path == "/healthz" || req.URL.Path == "/metrics":
			level = slog.LevelDebug // probes and scrapes would drown the rest
		}
		s.log.Log(req.Context(), level, "request", attrs...)
		return nil
	}
}

// resourceAttr is the log attribute of a route's :id (image_id, node_id, pool_id).
func resourceAttr(route string) string {
	switch {
	case strings.HasPrefix(route, "/v1/images"):
		return "image_id"
	case strings.HasPrefix(route, "/v1/nodes"):
		return "node_id"
	case strings.HasPrefix(route, "/v1/pools"):
		return "pool_id"
	}
	return "id"
}
