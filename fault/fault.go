// Package fault is the one error type that the node agent, the activities,
// the workflow and the REST API share. Its codes are the contract's error
// codes, so a failure keeps its meaning from the node all the way to the UI.
package fault

import (
	"errors"
	"fmt"
	"net/http"
)

// The contract's error codes.
const (
	InvalidRequest       = "invalid_request"
	Unauthorized         = "unauthorized"
	NotFound             = "not_found"
	Conflict             = "conflict"
	PoolNotFound         = "pool_not_found"
	CatalogEntryNotFound = "catalog_entry_not_found"
	NoNodeAvailable      = "no_node_available"
	NodeUnreachable      = "node_unreachable"
	URLForbidden         = "url_forbidden"
	UpstreamNotFound     = "upstream_not_found"
	UpstreamError        = "upstream_error"
	ChecksumMismatch     = "checksum_mismatch"
	ChecksumUnavailable  = "checksum_unavailable"
	NotADiskImage        = "not_a_disk_image"
	DiskFull             = "disk_full"
	Cancelled            = "cancelled"
	Internal             = "internal"
	TemporalUnavailable  = "temporal_unavailable"
	PayloadTooLarge      = "payload_too_large"
	MethodNotAllowed     = "method_not_allowed"
	UnsupportedMediaType = "unsupported_media_type"
	UnprocessableRequest = "unprocessable"
	Forbidden            = "forbidden"

	// Added with the second batch: formats, signatures, caps.
	UnsafeImage      = "unsafe_image"
	FormatMismatch   = "format_mismatch"
	SignatureInvalid = "signature_invalid"
	ConversionFailed = "conversion_failed"
	TooLarge         = "too_large"
	// UploadExpired: an upload received no bytes for --upload-ttl; its
	// partial data was removed.
	UploadExpired = "upload_expired"
)

var known = map[string]bool{
	InvalidRequest: true, Unauthorized: true, NotFound: true, Conflict: true, PoolNotFound: true,
	CatalogEntryNotFound: true, NoNodeAvailable: true, NodeUnreachable: true, URLForbidden: true,
	UpstreamNotFound: true, UpstreamError: true, ChecksumMismatch: true, ChecksumUnavailable: true,
	NotADiskImage: true, DiskFull: true, Cancelled: true, Internal: true, TemporalUnavailable: true,
	PayloadTooLarge: true, MethodNotAllowed: true, UnsupportedMediaType: true, UnprocessableRequest: true,
	Forbidden: true, UnsafeImage: true, FormatMismatch: true, SignatureInvalid: true, ConversionFailed: true,
	TooLarge: true, UploadExpired: true,
}

// Known reports whether code is one of the codes above. A Temporal error's
// type that is not (a Go type name from a plain error, say) must not reach
// users as if it were a code.
func Known(code string) bool { return known[code] }

// Error is a failure with a contract code, a message that tells a person
// what happened and what to do, and whether trying again (possibly on
// another node) can help.
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// New returns a non-retryable error.
func New(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Retryable returns an error that another attempt may get past.
func Retryable(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Retryable: true}
}

// As returns the *Error inside err, if there is one.
func As(err error) (*Error, bool) {
	var fe *Error
	if errors.As(err, &fe) {
		return fe, true
	}
	return nil, false
}

// CodeOf returns the code of err, or Internal when err carries none.
func CodeOf(err error) string {
	if fe, ok := As(err); ok {
		return fe.Code
	}
	return Internal
}

// From turns any error into an *Error, keeping one that already is.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	if fe, ok := As(err); ok {
		return fe
	}
	return &Error{Code: Internal, Message: err.Error()}
}

// HTTPStatus is the status that goes with a code, in one place for both APIs.
func HTTPStatus(code string) int {
	switch code {
	case InvalidRequest:
		return http.StatusBadRequest
	case Unauthorized:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case NotFound, PoolNotFound, CatalogEntryNotFound:
		return http.StatusNotFound
	case Conflict:
		return http.StatusConflict
	case MethodNotAllowed:
		return http.StatusMethodNotAllowed
	case PayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case UnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case URLForbidden, NoNodeAvailable, DiskFull, ChecksumUnavailable, UnprocessableRequest, TooLarge:
		return http.StatusUnprocessableEntity
	case NodeUnreachable, TemporalUnavailable:
		return http.StatusServiceUnavailable
	case UpstreamNotFound, UpstreamError, ChecksumMismatch, NotADiskImage, UnsafeImage, FormatMismatch,
		SignatureInvalid, ConversionFailed:
		return http.StatusBadGateway
	case Cancelled:
		return http.StatusConflict
	case UploadExpired:
		return http.StatusGone
	default:
		return http.StatusInternalServerError
	}
}

// Body is the JSON error envelope of both APIs: {"error": {...}}.
type Body struct {
	Error *Error `json:"error"`
}
