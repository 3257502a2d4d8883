package api

import "github.com/labstack/echo/v4"

// AddPanicRouteForTest adds GET /v1/panic, which panics, to one server.
func (s *Server) AddPanicRouteForTest() {
	s.echo.GET("/v1/panic", func(echo.Context) error { panic("boom") }, s.auth)
}

// RoutesForTest lists the server's API routes as "METHOD /path" (Echo's
// :param syntax), without the UI's and the not-found ones.
func (s *Server) RoutesForTest() []string {
	var out []string
	for _, r := range s.echo.Routes() {
		if r.Method == echo.RouteNotFound || isUIRoute(r.Path) {
			continue
		}
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}
