package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
)

// ErrorBody is the contract's error envelope: {"error": {"code", "message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is an error as the contract shows it, in an ErrorBody and in
// a FAILED image.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// apiErr is a shorthand for a *fault.Error returned by a handler.
func apiErr(code, format string, args ...any) error { return fault.New(code, format, args...) }

// toFault turns any error a handler or middleware returns into the code,
// message and status the client sees. This is the one place where store
// errors, Echo's own errors and fault codes meet HTTP.
func toFault(err error) (*fault.Error, int) {
	if fe, ok := fault.As(err); ok {
		return fe, fault.HTTPStatus(fe.Code)
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return fromEcho(he)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fault.New(fault.NotFound, "%v", err), http.StatusNotFound
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrInUse),
		errors.Is(err, store.ErrFileNameTaken), errors.Is(err, store.ErrTransition):
		return fault.New(fault.Conflict, "%v", err), http.StatusConflict
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return fault.New(fault.Cancelled, "the request was cancelled"), 499
	}
	return nil, http.StatusInternalServerError
}

func fromEcho(he *echo.HTTPError) (*fault.Error, int) {
	msg := fmt.Sprint(he.Message)
	switch he.Code {
	case http.StatusNotFound:
		return fault.New(fault.NotFound, "no such route: see GET /v1/openapi.json for the API's routes"), he.Code
	case http.StatusMethodNotAllowed:
		return fault.New(fault.MethodNotAllowed, "this route does not take that method: see the Allow header or GET /v1/openapi.json"), he.Code
	case http.StatusRequestEntityTooLarge:
		return fault.New(fault.PayloadTooLarge, "the request body is larger than %s: send less", bodyLimitText), he.Code
	case http.StatusUnsupportedMediaType:
		return fault.New(fault.UnsupportedMediaType, "send the body as JSON with Content-Type: application/json"), he.Code
	case http.StatusUnauthorized:
		return fault.New(fault.Unauthorized, "%s", msg), he.Code
	case http.StatusBadRequest:
		return fault.New(fault.InvalidRequest, "%s", msg), he.Code
	case http.StatusServiceUnavailable:
		return fault.New(fault.TemporalUnavailable, "%s", msg), he.Code
	}
	if he.Code >= 500 {
		return nil, he.Code
	}
	return fault.New(strings.ReplaceAll(strings.ToLower(http.StatusText(he.Code)), " ", "_"), "%s", msg), he.Code
}

// handleError is Echo's HTTPErrorHandler: every error leaves as the
// contract's JSON, and one the client cannot act on is logged with the
// request id and answered as a bland 500 internal.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	fe, status := toFault(err)
	if fe == nil {
		rid := c.Response().Header().Get(echo.HeaderXRequestID)
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path,
			"request_id", rid, "error", err)
		fe = fault.New(fault.Internal, "something went wrong inside the API (request id %s); the API's log has the details, and trying again may help", rid)
		status = http.StatusInternalServerError
	}
	if status == http.StatusUnauthorized {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="cloudimages"`)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, ErrorBody{Error: ErrorDetail{Code: fe.Code, Message: fe.Message}})
}
