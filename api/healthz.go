package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// healthzTimeout bounds each dependency check of /healthz.
const healthzTimeout = 2 * time.Second

type healthzView struct {
	Status   string    `json:"status"` // "ok" or "degraded"
	Version  string    `json:"version"`
	Database checkView `json:"database"`
	Temporal checkView `json:"temporal"`
}

type checkView struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// healthz reports the database and Temporal. It is 200 while the database
// answers, since the API then still lists and shows everything (Temporal
// down only stops starting and cancelling downloads, and says so in the
// body); it is 503 when the database does not answer.
func (s *Server) healthz(c echo.Context) error {
	ctx := c.Request().Context()
	v := healthzView{Status: "ok", Version: s.opts.Version}
	v.Database = check(ctx, s.store.Ping)
	v.Temporal = check(ctx, func(ctx context.Context) error {
		_, err := s.temporal.CheckHealth(ctx, nil)
		return err
	})
	status := http.StatusOK
	if !v.Database.OK {
		status = http.StatusServiceUnavailable
	}
	if !v.Database.OK || !v.Temporal.OK {
		v.Status = "degraded"
	}
	return c.JSON(status, v)
}

func check(ctx context.Context, f func(context.Context) error) checkView {
	ctx, cancel := context.WithTimeout(ctx, healthzTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		return checkView{Error: shortError(err)}
	}
	return checkView{OK: true}
}

type settingsView struct {
	Version           string `json:"version"`
	TemporalWebURL    string `json:"temporal_web_url"`
	TemporalNamespace string `json:"temporal_namespace"`
	AuthRequired      bool   `json:"auth_required"`
}

// settings tells the UI what it links to.
func (s *Server) settings(c echo.Context) error {
	return c.JSON(http.StatusOK, settingsView{Version: s.opts.Version, TemporalWebURL: s.opts.TemporalWebURL,
		TemporalNamespace: s.opts.TemporalNamespace, AuthRequired: s.opts.APIToken != ""})
}
