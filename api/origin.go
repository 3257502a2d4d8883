package api

import (
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
)

// sameOrigin refuses a request whose Origin header names another site: a
// web page an operator has open must not drive the API through the
// operator's browser (CSRF). Browsers send Origin on every POST and
// DELETE and on cross-site fetches; the web UI is served by the API
// itself, so its requests carry the API's own origin. Clients that are not
// browsers (curl, the Go client, the workers) send no Origin and pass.
//
// The API's own origin is the host the request was addressed to (the Host
// header), a scheme's default port left out. The scheme is not compared:
// behind a proxy that ends TLS the API sees http while the browser says
// https, and no other site can share a host and port with it.
func (s *Server) sameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		origin := req.Header.Get(echo.HeaderOrigin)
		if origin == "" {
			return next(c)
		}
		scheme := "http"
		if req.TLS != nil {
			scheme = "https"
		}
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
			hostPort(u.Scheme, u.Host) != hostPort(scheme, req.Host) {
			return apiErr(fault.Forbidden, "requests from the web page at %s are refused: the API answers only its own web UI (%s://%s) and clients that send no Origin header", origin, scheme, req.Host)
		}
		return next(c)
	}
}

// hostPort is host[:port] in lower case, without the scheme's default port.
func hostPort(scheme, host string) string {
	host = strings.ToLower(host)
	if scheme == "https" {
		return strings.TrimSuffix(host, ":443")
	}
	return strings.TrimSuffix(host, ":80")
}
