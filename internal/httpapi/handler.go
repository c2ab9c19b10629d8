package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
)

// statusClientClosedRequest is the status recorded (nginx's convention) when
// the client went away before we answered: it is neither a success nor a
// server fault, and must not page anyone as a 5xx would.
const statusClientClosedRequest = 499

// HandlerFunc is a handler that may fail with an error; *Error values are answered as Matrix errors,
// anything else is logged (with the request's method and route, never the query string: access tokens
// may be in it) and answered 500 M_UNKNOWN without leaking internals.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP calls f and answers the error it returns, if any.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		WriteError(w, r, err)
	}
}

// WriteJSON answers v encoded as JSON with the given status and Content-Type: application/json.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a programming error gets here (a channel or NaN in the answer).
		// There is no request to take a logger from, so use the process default.
		slog.Default().Error("encode JSON answer", "error", err)
		status = http.StatusInternalServerError
		body = []byte(`{"errcode":"M_UNKNOWN","error":"Internal server error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client is gone; nothing left to tell it
}

// WriteError answers err: an *Error (also when wrapped) as itself, anything else as a logged 500 M_UNKNOWN.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	logger := slog.Default()
	if st != nil {
		logger = st.logger
	}
	route := routeOf(r)

	var (
		merr   *Error
		maxErr *http.MaxBytesError
	)
	switch {
	case errors.As(err, &merr):
		if merr.Status >= 500 || merr.Status < 400 {
			// A deliberate 5xx still means something broke on our side; keep the
			// message (the client sees it too) in the log.
			logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "route", route, "error", err)
		}
	case errors.As(err, &maxErr):
		// Handlers that stream a body through http.MaxBytesReader (media uploads)
		// can return its error as is.
		merr = TooLarge("Request body is larger than %d bytes", maxErr.Limit)
	case errors.Is(r.Context().Err(), context.Canceled):
		// The client hung up (often mid long-poll) and the handler's database or
		// network call failed because of it: not a server fault.
		logger.DebugContext(r.Context(), "client went away", "method", r.Method, "route", route, "error", err)
		merr = NewError(statusClientClosedRequest, "M_UNKNOWN", "Request cancelled")
	default:
		logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "route", route, "error", err)
		merr = Unknown("Internal server error")
	}

	if st != nil && st.rec != nil && st.rec.status != 0 {
		// The handler already started its answer; a second one would be glued
		// onto the first.
		logger.ErrorContext(r.Context(), "error after the answer started", "method", r.Method, "route", route, "error", err)
		return
	}
	merr.write(w)
}
