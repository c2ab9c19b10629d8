package httpapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const secret = "syt_c2VjcmV0_token" // stands for an access token in a query string

func TestHandlerFuncMatrixError(t *testing.T) {
	r := NewRouter()
	r.Handle("/forbidden", HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return fmt.Errorf("check power levels: %w", Forbidden("You may not do that"))
	}))
	srv := newTestServer(t, r, nil)
	a := do(t, http.MethodGet, srv.URL+"/forbidden", nil)
	a.wantError(t, http.StatusForbidden, "M_FORBIDDEN")
	a.wantCORS(t)
	if a.body["error"] != "You may not do that" {
		t.Errorf("message %v", a.body["error"])
	}
}

func TestNULAndBadUTF8InPathOrQueryRefused(t *testing.T) {
	r := NewRouter()
	reached := false
	r.Handle("/users/{userId}", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		reached = true
		WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}))
	srv := newTestServer(t, r, nil)
	for _, p := range []string{"/users/a%00b", "/users/a%FFb", "/users/ok?name=a%00b", "/users/ok?a%00=b", "/users/ok?name=%FF", "/users/ok?bad=%zz"} {
		a := do(t, http.MethodGet, srv.URL+p, nil)
		a.wantError(t, http.StatusBadRequest, "M_INVALID_PARAM")
		a.wantCORS(t)
	}
	if reached {
		t.Error("a refused request reached the handler")
	}
	if a := do(t, http.MethodGet, srv.URL+"/users/%C3%A9?name=%C3%A9", nil); a.status != 200 {
		t.Errorf("UTF-8 path refused: %d %s", a.status, a.raw)
	}
}

func TestHandlerFuncPlainErrorIsHidden(t *testing.T) {
	r := NewRouter()
	r.Handle("/rooms/{roomId}/boom", HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return errors.New("pq: relation \"events_internal\" does not exist")
	}))
	srv := newTestServer(t, r, nil)

	a := do(t, http.MethodGet, srv.URL+"/rooms/!r:x/boom?access_token="+secret, nil)
	a.wantError(t, http.StatusInternalServerError, "M_UNKNOWN")
	a.wantCORS(t)
	if strings.Contains(a.raw, "events_internal") || strings.Contains(a.raw, "pq:") {
		t.Errorf("answer leaks the internal error: %s", a.raw)
	}

	line := srv.findRequestLog(t, http.MethodGet, "/rooms/!r:x/boom")
	if line["level"] != "ERROR" || line["status"] != float64(500) || line["route"] != "/rooms/{roomId}/boom" {
		t.Errorf("request log %v", line)
	}
	var logged bool
	for _, l := range srv.logs.logLines(t) {
		if l["msg"] == "request failed" {
			logged = true
			if !strings.Contains(fmt.Sprint(l["error"]), "events_internal") || l["route"] != "/rooms/{roomId}/boom" || l["method"] != "GET" {
				t.Errorf("error log %v", l)
			}
		}
	}
	if !logged {
		t.Error("internal error was not logged")
	}
	if strings.Contains(srv.logs.String(), secret) {
		t.Errorf("logs contain the query string:\n%s", srv.logs.String())
	}
}

func TestHandlerFuncMaxBytesError(t *testing.T) {
	r := NewRouter()
	r.Handle("/upload", HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4))
		return err
	}))
	srv := newTestServer(t, r, nil)
	do(t, http.MethodPost, srv.URL+"/upload", strings.NewReader("0123456789")).wantError(t, 413, "M_TOO_LARGE")
}

func TestErrorAfterAnswerStartedKeepsAnswer(t *testing.T) {
	r := NewRouter()
	r.Handle("/half", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
		return errors.New("late failure")
	}))
	srv := newTestServer(t, r, nil)
	a := do(t, http.MethodGet, srv.URL+"/half", nil)
	if a.status != 200 || a.raw != `{"ok":"yes"}` {
		t.Errorf("got %d %q, want the handler's own answer untouched", a.status, a.raw)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	r := NewRouter()
	r.Handle("/panic", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", "12345")
		panic("nil map somewhere")
	}))
	r.Handle("/ok", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}))
	srv := newTestServer(t, r, nil)

	for range 3 { // the server keeps serving after each panic
		a := do(t, http.MethodGet, srv.URL+"/panic?access_token="+secret, nil)
		a.wantError(t, http.StatusInternalServerError, "M_UNKNOWN")
		a.wantCORS(t)
		do(t, http.MethodGet, srv.URL+"/ok", nil).wantStatus(t, 200)
	}

	var stack string
	waitFor(t, "panic log", func() bool {
		for _, l := range srv.logs.logLines(t) {
			if l["msg"] == "panic serving request" {
				stack, _ = l["stack"].(string)
				return true
			}
		}
		return false
	})
	if !strings.Contains(stack, "TestPanicIsRecovered") {
		t.Errorf("stack does not show the panicking handler:\n%s", stack)
	}
	line := srv.findRequestLog(t, http.MethodGet, "/panic")
	if line["status"] != float64(500) || line["level"] != "ERROR" {
		t.Errorf("request log %v", line)
	}
	if strings.Contains(srv.logs.String(), secret) {
		t.Error("logs contain the query string")
	}
}

// TestPanicAfterPartialAnswerAborts: once part of the body is out, the only
// honest signal left is a broken connection, not a truncated "complete" body.
func TestPanicAfterPartialAnswerAborts(t *testing.T) {
	r := NewRouter()
	r.Handle("/partial", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"chunk":`)
		http.NewResponseController(w).Flush()
		panic("died mid-stream")
	}))
	r.Handle("/abort", HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		panic(http.ErrAbortHandler)
	}))
	srv := newTestServer(t, r, nil)

	resp, err := http.Get(srv.URL + "/partial")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Error("truncated answer read as complete")
	}

	if resp, err := http.Get(srv.URL + "/abort"); err == nil {
		resp.Body.Close()
		t.Errorf("ErrAbortHandler answered %d instead of cutting the connection", resp.StatusCode)
	}
	srv.findRequestLog(t, http.MethodGet, "/abort")
}

func TestRequestLog(t *testing.T) {
	r := NewRouter()
	r.Handle("/rooms/{roomId}/messages", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		WriteJSON(w, http.StatusOK, map[string]string{"a": "b"})
		return nil
	}))
	srv := newTestServer(t, r, nil)

	do(t, http.MethodGet, srv.URL+"/rooms/%21r%3Ax/messages?access_token="+secret+"&dir=b", nil).wantStatus(t, 200)
	do(t, http.MethodGet, srv.URL+"/nope?access_token="+secret, nil).wantError(t, 404, "M_UNRECOGNIZED")
	do(t, http.MethodOptions, srv.URL+"/rooms/x/messages?access_token="+secret, nil).wantStatus(t, 200)

	ok := srv.findRequestLog(t, http.MethodGet, "/rooms/%21r%3Ax/messages")
	if ok["level"] != "INFO" || ok["status"] != float64(200) || ok["route"] != "/rooms/{roomId}/messages" ||
		ok["bytes"] != float64(len(`{"a":"b"}`)) || ok["duration"] == nil {
		t.Errorf("log of a success: %v", ok)
	}
	missing := srv.findRequestLog(t, http.MethodGet, "/nope")
	if missing["level"] != "INFO" || missing["status"] != float64(404) || missing["route"] != "unmatched" {
		t.Errorf("log of a 404: %v", missing)
	}
	pre := srv.findRequestLog(t, http.MethodOptions, "/rooms/x/messages")
	if pre["level"] != "DEBUG" {
		t.Errorf("log of a preflight: %v", pre)
	}
	if s := srv.logs.String(); strings.Contains(s, secret) || strings.Contains(s, "dir=b") {
		t.Errorf("logs contain the query string:\n%s", s)
	}
}

func TestClientGoneIsNotAServerError(t *testing.T) {
	started := make(chan struct{})
	r := NewRouter()
	r.Handle("/sync", HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		close(started)
		<-r.Context().Done() // a long-poll, until the client hangs up
		return fmt.Errorf("wait for events: %w", r.Context().Err())
	}))
	srv := newTestServer(t, r, nil)

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sync", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request was not cancelled")
	}

	line := srv.findRequestLog(t, http.MethodGet, "/sync")
	if line["status"] != float64(statusClientClosedRequest) || line["level"] != "INFO" {
		t.Errorf("request log %v", line)
	}
	for _, l := range srv.logs.logLines(t) {
		if l["level"] == "ERROR" {
			t.Errorf("client hang-up logged as an error: %v", l)
		}
	}
}

// TestFlushReachesClient: a streamed chunk must arrive while the handler is
// still running, through both http.Flusher and http.ResponseController.
func TestFlushReachesClient(t *testing.T) {
	release := make(chan struct{})
	r := NewRouter()
	r.Handle("/stream", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "first\n")
		f, ok := w.(http.Flusher)
		if !ok {
			return errors.New("ResponseWriter is not an http.Flusher")
		}
		f.Flush()
		<-release
		_, _ = io.WriteString(w, "second\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			return err
		}
		<-release
		return nil
	}))
	srv := newTestServer(t, r, nil)

	resp, err := http.Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for _, want := range []string{"first\n", "second\n"} {
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("read %q, %v; want %q before the handler returns", line, err, want)
		}
		release <- struct{}{}
	}
}

func TestWriteJSONUnencodable(t *testing.T) {
	r := NewRouter()
	r.Handle("/bad", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		WriteJSON(w, http.StatusOK, map[string]any{"c": make(chan int)})
		return nil
	}))
	srv := newTestServer(t, r, nil)
	do(t, http.MethodGet, srv.URL+"/bad", nil).wantError(t, 500, "M_UNKNOWN")
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := NewRouter()
	ok := HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	})
	r.Handle("/rooms/{roomId}/send/{type}/{txn}", ok).Methods(http.MethodPut)
	r.PathPrefix("/_matrix/client/v3").Subrouter().Handle("/profile/{userId}", ok).Methods(http.MethodGet)
	r.Handle("/panic", HandlerFunc(func(http.ResponseWriter, *http.Request) error { panic("x") }))
	srv := newTestServer(t, r, NewMetrics(reg))

	for i := range 3 {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/rooms/!r%d:x/send/m.room.message/%d", srv.URL, i, i), strings.NewReader("{}"))
		doReq(t, req).wantStatus(t, 200)
	}
	do(t, http.MethodGet, srv.URL+"/_matrix/client/v3/profile/@a:x", nil).wantStatus(t, 200)
	do(t, http.MethodGet, srv.URL+"/no/such/path", nil).wantStatus(t, 404)
	do(t, http.MethodGet, srv.URL+"/rooms/!r:x/send/m.room.message/1", nil).wantStatus(t, 405)
	do(t, http.MethodGet, srv.URL+"/panic", nil).wantStatus(t, 500)
	do(t, "BREW", srv.URL+"/no/such/path", nil).wantStatus(t, 404)

	want := []struct {
		method, route, code string
		n                   float64
	}{
		{"PUT", "/rooms/{roomId}/send/{type}/{txn}", "200", 3},
		{"GET", "/_matrix/client/v3/profile/{userId}", "200", 1},
		{"GET", "unmatched", "404", 1},
		{"GET", "unmatched", "405", 1},
		{"GET", "/panic", "500", 1},
		{"other", "unmatched", "404", 1}, // client-chosen methods must not mint new series
	}
	for _, w := range want {
		labels := map[string]string{"method": w.method, "route": w.route, "code": w.code}
		waitFor(t, fmt.Sprint("counter ", labels), func() bool {
			return metricValue(t, reg, "lattice_http_requests_total", labels) == w.n
		})
	}
	hist := map[string]string{"method": "PUT", "route": "/rooms/{roomId}/send/{type}/{txn}"}
	waitFor(t, "histogram", func() bool {
		return metricValue(t, reg, "lattice_http_request_duration_seconds", hist) == 3
	})
}

// metricValue returns the counter value, or the histogram's sample count, of
// the series with exactly these labels (0 if absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

func TestNilMetricsAndLogger(t *testing.T) {
	r := NewRouter()
	r.Handle("/x", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}))
	h := Wrap(r, nil, nil)
	rec := &recordingWriter{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/x", nil)
	h.ServeHTTP(rec, req)
	if rec.status != 200 {
		t.Errorf("status %d", rec.status)
	}
}

// recordingWriter is a bare ResponseWriter without Flush or Unwrap, as some
// wrappers in the wild are.
type recordingWriter struct {
	header http.Header
	status int
}

func (w *recordingWriter) Header() http.Header         { return w.header }
func (w *recordingWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *recordingWriter) WriteHeader(code int)        { w.status = code }

func TestFlushWithoutFlusherUnderneath(t *testing.T) {
	rec := &recorder{ResponseWriter: &recordingWriter{header: http.Header{}}}
	if err := rec.FlushError(); !errors.Is(err, http.ErrNotSupported) {
		t.Errorf("FlushError = %v, want ErrNotSupported", err)
	}
	rec.Flush() // must not panic
	if rec.status != 200 {
		t.Errorf("status %d after flush", rec.status)
	}
}

func TestReadFromCounts(t *testing.T) {
	under := &recordingWriter{header: http.Header{}}
	rec := &recorder{ResponseWriter: under}
	n, err := io.Copy(rec, strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil || n != 1000 || rec.bytes != 1000 || rec.status != 200 {
		t.Errorf("copied %d, %v; recorded %d bytes, status %d", n, err, rec.bytes, rec.status)
	}
}
