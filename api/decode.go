package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
)

// decode reads the request body as one JSON object into v. Unknown fields,
// a second value, a body that is not JSON and a body whose Content-Type is
// missing or says it is something else are refused with a message that
// says what to fix.
//
// The Content-Type is required, not only checked when given: a web page
// on another site can make a browser POST text/plain (or no type) without
// asking the API first, but not application/json.
func decode(c echo.Context, v any) error {
	req := c.Request()
	if hasBody(req) {
		ct := req.Header.Get(echo.HeaderContentType)
		if ct == "" {
			return apiErr(fault.UnsupportedMediaType, "the request has a body but no Content-Type: send the body as JSON with Content-Type: application/json")
		}
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return apiErr(fault.UnsupportedMediaType, "Content-Type %q: send the body as JSON with Content-Type: application/json", ct)
		}
	}
	dec := json.NewDecoder(req.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he
		}
		return apiErr(fault.InvalidRequest, "the body must hold exactly one JSON object")
	}
	return nil
}

// hasBody says whether the request carries a body: a Content-Length other
// than 0, or a chunked one (whose length is unknown).
func hasBody(req *http.Request) bool {
	return req.ContentLength != 0 || slices.Contains(req.TransferEncoding, "chunked")
}

func decodeError(err error) error {
	var he *echo.HTTPError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &he):
		return he // the body limit
	case errors.Is(err, io.EOF):
		return apiErr(fault.InvalidRequest, "the body is empty: send a JSON object")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return apiErr(fault.InvalidRequest, "the body is not valid JSON: %v", err)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return apiErr(fault.InvalidRequest, "the body must be a JSON object, not %s", typ.Value)
		}
		return apiErr(fault.InvalidRequest, "field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return apiErr(fault.InvalidRequest, "unknown field %s: see GET /v1/openapi.json for the fields this route takes", field)
	}
	return apiErr(fault.InvalidRequest, "the body is not valid JSON: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	}
	return fmt.Sprintf("a %s", goKind)
}
