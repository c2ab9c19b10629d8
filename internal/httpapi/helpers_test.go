package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
)

// syncBuffer is a log sink the server's goroutines write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines decodes the JSON log records written so far.
func (b *syncBuffer) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// waitFor polls cond until it holds, failing the test after a deadline: the
// server logs and counts a request just after the client has its answer.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type testServer struct {
	*httptest.Server
	logs *syncBuffer
}

// newTestServer serves router through Wrap on loopback, logging JSON at Debug into a buffer.
func newTestServer(t *testing.T, router *mux.Router, m *Metrics) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(Wrap(router, logger, m))
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, logs: logs}
}

// findRequestLog returns the "request" log line for path, waiting for it to be written.
func (s *testServer) findRequestLog(t *testing.T, method, path string) map[string]any {
	t.Helper()
	var found map[string]any
	waitFor(t, "request log of "+method+" "+path, func() bool {
		for _, l := range s.logs.logLines(t) {
			if l["msg"] == "request" && l["method"] == method && l["path"] == path {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends one request and decodes the JSON answer.
func do(t *testing.T, method, url string, body io.Reader) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return doReq(t, req)
}

func doReq(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); ct == "application/json" {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("answer %q is not a JSON object: %v", raw, err)
		}
	}
	return a
}

// wantError checks a Matrix error answer.
func (a answer) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if a.status != status || a.body["errcode"] != code {
		t.Fatalf("got %d %s, want %d %s", a.status, a.raw, status, code)
	}
	if _, ok := a.body["error"].(string); !ok {
		t.Errorf("answer %s has no error message", a.raw)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

// wantCORS checks the headers of the spec's "Web Browser Clients".
func (a answer) wantCORS(t *testing.T) {
	t.Helper()
	want := map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
		"Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
	}
	for k, v := range want {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}
