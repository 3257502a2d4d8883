package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
)

// auth guards the /v1/ routes when an API token is configured. /healthz
// and /metrics stay open: they carry no data about images, nodes or pools
// beyond counts, and probes and scrapers rarely carry tokens.
func (s *Server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	if s.opts.APIToken == "" {
		return next
	}
	want := sha256.Sum256([]byte(s.opts.APIToken))
	return func(c echo.Context) error {
		header := c.Request().Header.Get(echo.HeaderAuthorization)
		if header == "" {
			return apiErr(fault.Unauthorized, "this API needs a token: send the header Authorization: Bearer TOKEN (the --api-token the API was started with)")
		}
		scheme, token, ok := strings.Cut(header, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return apiErr(fault.Unauthorized, "the Authorization header must be \"Bearer TOKEN\"")
		}
		// Comparing digests keeps the comparison constant-time whatever
		// the length of what was sent.
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return apiErr(fault.Unauthorized, "the token is wrong: use the --api-token (CLOUDIMAGES_API_TOKEN) the API was started with")
		}
		return next(c)
	}
}
