package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"
)

// Wrap puts the shared middleware around a listener's router, outermost first: panic recovery (logs the stack,
// answers 500 M_UNKNOWN if nothing was written yet; re-panics http.ErrAbortHandler), CORS, request logging,
// metrics (nil metrics → none). A nil logger means slog.Default().
//
// The layers share one status-recording ResponseWriter and run as one handler,
// so the log line and metrics see the final status even of a recovered panic.
// An OPTIONS request on any path is answered 200 {} with the CORS headers and
// never reaches h (Client-Server API, "Web Browser Clients": the server MUST
// NOT perform any endpoint logic for OPTIONS); it is logged at Debug.
func Wrap(h http.Handler, logger *slog.Logger, m *Metrics) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	return &wrapped{next: h, logger: logger, metrics: m}
}

type wrapped struct {
	next    http.Handler
	logger  *slog.Logger
	metrics *Metrics
}

func (s *wrapped) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	st := &requestState{logger: s.logger, route: unmatchedRoute, rec: rec}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	defer func() {
		s.finish(rec, r, st, start, recover())
	}()

	setCORS(rec.Header())
	if r.Method == http.MethodOptions {
		WriteJSON(rec, http.StatusOK, struct{}{})
		return
	}
	if !cleanText(r) {
		WriteError(rec, r, InvalidParam("The path and query must be UTF-8 without NUL characters"))
		return
	}
	s.next.ServeHTTP(rec, r)
}

// cleanText reports whether the decoded path and query values are valid UTF-8 without NUL.
// Identifiers from them end up in database text, which refuses both; no Matrix identifier
// needs either, so they are refused once here rather than in every handler.
func cleanText(r *http.Request) bool {
	ok := func(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
	if !ok(r.URL.Path) {
		return false
	}
	if r.URL.RawQuery == "" {
		return true
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return false
	}
	for k, vs := range q {
		if !ok(k) {
			return false
		}
		for _, v := range vs {
			if !ok(v) {
				return false
			}
		}
	}
	return true
}

// finish recovers a panic of the handler, then logs and counts the request.
func (s *wrapped) finish(rec *recorder, r *http.Request, st *requestState, start time.Time, p any) {
	var abort bool
	if p != nil {
		if p == http.ErrAbortHandler {
			// The handler chose to cut the connection (a failed stream, say);
			// net/http expects the panic and stays quiet about it.
			abort = true
		} else {
			s.logger.ErrorContext(r.Context(), "panic serving request",
				"method", r.Method, "route", st.route, "panic", p, "stack", string(debug.Stack()))
			if rec.status == 0 {
				// Drop whatever the handler set (a Content-Length, a media
				// type) before it died, but keep CORS so browsers can read the error.
				clear(rec.Header())
				setCORS(rec.Header())
				WriteJSON(rec, http.StatusInternalServerError, Unknown("Internal server error"))
			} else {
				// Part of an answer is out. Ending it normally would pass a
				// truncated body off as complete; aborting makes net/http reset
				// the connection so the client sees the failure.
				abort = true
			}
		}
	}

	status := rec.status
	if status == 0 {
		switch {
		case !abort:
			status = http.StatusOK // net/http sends 200 for a handler that wrote nothing
		case r.Context().Err() != nil:
			status = statusClientClosedRequest
		default:
			status = http.StatusInternalServerError
		}
	}
	elapsed := time.Since(start)

	level := slog.LevelInfo
	switch {
	case r.Method == http.MethodOptions:
		level = slog.LevelDebug // browsers send one before many requests; noise at Info
	case status >= 500:
		level = slog.LevelError
	}
	// EscapedPath, never RequestURI or URL.String(): access tokens may ride in
	// the query string.
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.String("route", st.route),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", elapsed),
	}
	if abort {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	s.logger.LogAttrs(r.Context(), level, "request", attrs...)
	s.metrics.observe(r.Method, st.route, status, elapsed)

	if abort {
		panic(http.ErrAbortHandler)
	}
}

// setCORS sets the headers the spec recommends on every answer (Client-Server
// API, "Web Browser Clients"): any origin may call, since authentication is by
// access token, never by cookie.
func setCORS(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
}

// recorder notes the status and body size a handler writes.
//
// Unwrap lets http.ResponseController reach the connection's own Flush,
// deadlines and Hijack; Flush and ReadFrom are also implemented directly
// because much code still type-asserts http.Flusher, and io.Copy of media
// should keep using sendfile.
type recorder struct {
	http.ResponseWriter
	status int // 0 until the header is sent
	bytes  int64
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		// 1xx answers other than 101 are interim; the final status is still to come.
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(p)
	rw.bytes += int64(n)
	return n, err
}

// ReadFrom copies src to the client, through the connection's own ReadFrom when it has one.
func (rw *recorder) ReadFrom(src io.Reader) (int64, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := io.Copy(rw.ResponseWriter, src)
	rw.bytes += n
	return n, err
}

// FlushError sends buffered data to the client; http.ResponseController prefers it to Flush.
func (rw *recorder) FlushError() error {
	if rw.status == 0 {
		rw.status = http.StatusOK // flushing sends the header
	}
	return http.NewResponseController(rw.ResponseWriter).Flush()
}

// Flush sends buffered data to the client.
func (rw *recorder) Flush() {
	_ = rw.FlushError() // http.Flusher has no way to report failure
}

// Unwrap returns the wrapped ResponseWriter, for http.ResponseController.
func (rw *recorder) Unwrap() http.ResponseWriter {
	return rw.ResponseWriter
}
