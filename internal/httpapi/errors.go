// Package httpapi is the HTTP core shared by every component's routes: Matrix
// error answers, JSON bodies, the router and the middleware around each listener.
package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error is a Matrix error answer: {"errcode": ..., "error": ...} plus optional extra fields, with its HTTP status.
//
// Client-Server API, "Standard error response".
type Error struct {
	Status  int
	Code    string
	Message string
	Extra   map[string]any

	// retryAfter drives the Retry-After header of 429 answers; it is not a
	// body field, so it lives outside Extra.
	retryAfter time.Duration
}

// Error returns the error code and message, for logs and wrapped errors.
func (e *Error) Error() string {
	return e.Code + ": " + e.Message
}

// MarshalJSON encodes errcode and error together with the Extra fields.
func (e *Error) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		m[k] = v
	}
	// Set last: the spec says errcode and error MUST always be present, so an
	// Extra entry may not replace them.
	m["errcode"] = e.Code
	m["error"] = e.Message
	return json.Marshal(m)
}

// write answers e on w, with the headers its code calls for.
func (e *Error) write(w http.ResponseWriter) {
	if e.retryAfter > 0 {
		// Retry-After takes whole seconds; round up so a client never retries early.
		secs := int64((e.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	status := e.Status
	if status < 400 || status > 599 {
		// An Error with no (or a nonsense) status is a programming slip; 500 is
		// the only honest answer.
		status = http.StatusInternalServerError
	}
	WriteJSON(w, status, e)
}

// NewError returns an Error with any status and error code.
func NewError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadJSON returns 400 M_BAD_JSON: valid JSON with missing keys or invalid values.
func BadJSON(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, "M_BAD_JSON", format, args...)
}

// NotJSON returns 400 M_NOT_JSON: the body is not valid JSON.
func NotJSON(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, "M_NOT_JSON", format, args...)
}

// MissingParam returns 400 M_MISSING_PARAM: a required parameter is absent.
func MissingParam(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, "M_MISSING_PARAM", format, args...)
}

// InvalidParam returns 400 M_INVALID_PARAM: a parameter has the wrong value.
func InvalidParam(format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, "M_INVALID_PARAM", format, args...)
}

// Forbidden returns 403 M_FORBIDDEN.
func Forbidden(format string, args ...any) *Error {
	return NewError(http.StatusForbidden, "M_FORBIDDEN", format, args...)
}

// NotFound returns 404 M_NOT_FOUND: the resource does not exist.
func NotFound(format string, args ...any) *Error {
	return NewError(http.StatusNotFound, "M_NOT_FOUND", format, args...)
}

// Unrecognized returns 404 M_UNRECOGNIZED: the endpoint is not implemented.
func Unrecognized(format string, args ...any) *Error {
	return NewError(http.StatusNotFound, "M_UNRECOGNIZED", format, args...)
}

// MethodNotAllowed returns 405 M_UNRECOGNIZED: the endpoint exists but not with this method.
func MethodNotAllowed(format string, args ...any) *Error {
	return NewError(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", format, args...)
}

// MissingToken returns 401 M_MISSING_TOKEN: the request carries no access token.
func MissingToken(format string, args ...any) *Error {
	return NewError(http.StatusUnauthorized, "M_MISSING_TOKEN", format, args...)
}

// UnknownToken returns 401 M_UNKNOWN_TOKEN with soft_logout, which tells the client whether to keep its data.
func UnknownToken(softLogout bool, format string, args ...any) *Error {
	e := NewError(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", format, args...)
	e.Extra = map[string]any{"soft_logout": softLogout}
	return e
}

// LimitExceeded returns 429 M_LIMIT_EXCEEDED with retry_after_ms and a Retry-After header when retryAfter > 0.
func LimitExceeded(retryAfter time.Duration, format string, args ...any) *Error {
	e := NewError(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", format, args...)
	if retryAfter > 0 {
		e.retryAfter = retryAfter
		// retry_after_ms is deprecated since v1.10 in favour of Retry-After, but
		// older clients still read only it. Round up, like the header.
		e.Extra = map[string]any{"retry_after_ms": int64((retryAfter + time.Millisecond - 1) / time.Millisecond)}
	}
	return e
}

// TooLarge returns 413 M_TOO_LARGE: the request or entity is too large.
func TooLarge(format string, args ...any) *Error {
	return NewError(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", format, args...)
}

// Unknown returns 500 M_UNKNOWN; its message reaches the client, so keep internals out of it.
func Unknown(format string, args ...any) *Error {
	return NewError(http.StatusInternalServerError, "M_UNKNOWN", format, args...)
}
