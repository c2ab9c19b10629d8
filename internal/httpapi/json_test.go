package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type testBody struct {
	Name    string `json:"name"`
	Count   int8   `json:"count"`
	Flag    bool   `json:"flag"`
	Content struct {
		Body string `json:"body"`
	} `json:"content"`
	Tags  []string                   `json:"tags"`
	Extra map[string]json.RawMessage `json:"extra"`
}

const testLimit = 64

// jsonServer answers 200 {} when the body decodes into a testBody and the error otherwise.
func jsonServer(t *testing.T) *testServer {
	r := NewRouter()
	r.Handle("/small", HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var b testBody
		if err := ReadJSONLimit(r, &b, testLimit); err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, b)
		return nil
	})).Methods(http.MethodPost)
	r.Handle("/default", HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var b map[string]any
		if err := ReadJSON(r, &b); err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	})).Methods(http.MethodPost)
	return newTestServer(t, r, nil)
}

// chunked hides the length of a body so the client sends it chunked.
func chunked(s string) io.Reader { return struct{ io.Reader }{strings.NewReader(s)} }

func TestReadJSON(t *testing.T) {
	srv := jsonServer(t)
	tests := []struct {
		name     string
		body     io.Reader
		status   int
		code     string
		mentions string // a word the error message must contain
	}{
		{"valid", strings.NewReader(`{"name":"a","count":3,"content":{"body":"hi"}}`), 200, "", ""},
		{"valid chunked", chunked(`{"name":"a"}`), 200, "", ""},
		{"exactly the limit", strings.NewReader(`{"name":"` + strings.Repeat("a", testLimit-11) + `"}`), 200, "", ""},
		{"unknown fields ignored", strings.NewReader(`{"other":[1,2]}`), 200, "", ""},
		{"empty", nil, 400, "M_NOT_JSON", "empty"},
		{"whitespace", strings.NewReader(" \n\t"), 400, "M_NOT_JSON", "empty"},
		{"syntax", strings.NewReader(`{"name":`), 400, "M_NOT_JSON", "JSON"},
		{"single quotes", strings.NewReader(`{'name':'a'}`), 400, "M_NOT_JSON", "JSON"},
		{"trailing value", strings.NewReader(`{} {}`), 400, "M_NOT_JSON", "after top-level value"},
		{"trailing garbage", strings.NewReader(`{"name":"a"}x`), 400, "M_NOT_JSON", "after top-level value"},
		{"invalid UTF-8", strings.NewReader("{\"name\":\"\xff\"}"), 400, "M_NOT_JSON", "UTF-8"},
		{"wrong type", strings.NewReader(`{"name":1}`), 400, "M_BAD_JSON", `"name"`},
		{"wrong nested type", strings.NewReader(`{"content":{"body":true}}`), 400, "M_BAD_JSON", `"content.body"`},
		{"wrong element type", strings.NewReader(`{"tags":["a",2]}`), 400, "M_BAD_JSON", `"tags"`},
		{"number out of range", strings.NewReader(`{"count":300}`), 400, "M_BAD_JSON", `"count"`},
		{"NUL escape", strings.NewReader(`{"name":"a\u0000b"}`), 400, "M_BAD_JSON", "NUL"},
		{"NUL escape in an ignored field", strings.NewReader(`{"other":{"x":"\u0000"}}`), 400, "M_BAD_JSON", "NUL"},
		{"escaped backslash before u0000", strings.NewReader(`{"name":"a\\u0000"}`), 200, "", ""},
		{"other escapes", strings.NewReader(`{"name":"\u0001\n\"\\"}`), 200, "", ""},
		{"array", strings.NewReader(`[]`), 400, "M_BAD_JSON", "object"},
		{"string", strings.NewReader(`"hello"`), 400, "M_BAD_JSON", "object"},
		{"null", strings.NewReader(`null`), 400, "M_BAD_JSON", "object"},
		{"too large", strings.NewReader(`{"name":"` + strings.Repeat("a", testLimit) + `"}`), 413, "M_TOO_LARGE", "64"},
		{"too large chunked", chunked(`{"name":"` + strings.Repeat("a", 10*testLimit) + `"}`), 413, "M_TOO_LARGE", "64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, http.MethodPost, srv.URL+"/small", tt.body)
			if tt.status == 200 {
				if a.status != 200 {
					t.Fatalf("got %d %s, want 200", a.status, a.raw)
				}
				return
			}
			a.wantError(t, tt.status, tt.code)
			if msg := a.body["error"].(string); !strings.Contains(msg, tt.mentions) {
				t.Errorf("message %q does not mention %q", msg, tt.mentions)
			}
		})
	}
}

func TestReadJSONDefaultLimit(t *testing.T) {
	srv := jsonServer(t)
	pad := func(n int) string { // a JSON object of exactly n bytes
		return `{"a":"` + strings.Repeat("x", n-8) + `"}`
	}
	do(t, http.MethodPost, srv.URL+"/default", strings.NewReader(pad(DefaultBodyLimit))).wantStatus(t, 200)
	do(t, http.MethodPost, srv.URL+"/default", strings.NewReader(pad(DefaultBodyLimit+1))).wantError(t, 413, "M_TOO_LARGE")
	do(t, http.MethodPost, srv.URL+"/default", chunked(pad(DefaultBodyLimit+1))).wantError(t, 413, "M_TOO_LARGE")
}

func (a answer) wantStatus(t *testing.T, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("got %d %s, want %d", a.status, a.raw, status)
	}
}

// TestReadJSONAnnouncedTooLarge sends only the headers of a huge body: the
// answer must come without the server waiting for (or reading) the body.
func TestReadJSONAnnouncedTooLarge(t *testing.T) {
	srv := jsonServer(t)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = io.WriteString(conn, "POST /small HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000000\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

// explodingBody fails the test if anything reads it.
type explodingBody struct{ t *testing.T }

func (b explodingBody) Read([]byte) (int, error) {
	b.t.Error("body was read although Content-Length is over the limit")
	return 0, io.EOF
}
func (explodingBody) Close() error { return nil }

func TestReadJSONContentLengthNotRead(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Body = explodingBody{t}
	r.ContentLength = testLimit + 1
	var dst testBody
	err := ReadJSONLimit(r, &dst, testLimit)
	var e *Error
	if !errors.As(err, &e) || e.Code != "M_TOO_LARGE" || e.Status != 413 {
		t.Fatalf("got %v, want 413 M_TOO_LARGE", err)
	}
}

func TestReadJSONMaxBytesReader(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", chunked(`{"name":"`+strings.Repeat("a", 100)+`"}`))
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 10)
	var dst testBody
	err := ReadJSON(r, &dst)
	var e *Error
	if !errors.As(err, &e) || e.Code != "M_TOO_LARGE" {
		t.Fatalf("got %v, want M_TOO_LARGE", err)
	}
}

type pickyID string

func (p *pickyID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if !strings.HasPrefix(s, "@") {
		return errors.New("user ID must start with @")
	}
	*p = pickyID(s)
	return nil
}

func TestReadJSONCustomUnmarshaler(t *testing.T) {
	var dst struct {
		User pickyID `json:"user_id"`
	}
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"user_id":"alice"}`))
	err := ReadJSON(r, &dst)
	var e *Error
	if !errors.As(err, &e) || e.Code != "M_BAD_JSON" || !strings.Contains(e.Message, "must start with @") {
		t.Fatalf("got %v, want M_BAD_JSON from the field's UnmarshalJSON", err)
	}
}

func TestReadJSONNonPointerIsServerError(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`))
	var dst testBody
	err := ReadJSON(r, dst) // the mistake under test: not a pointer
	var e *Error
	if err == nil || errors.As(err, &e) {
		t.Fatalf("got %v, want a plain error (answered 500)", err)
	}
}

func TestReadJSONRawMessageAcceptsAnyValue(t *testing.T) {
	for _, body := range []string{`null`, `[1]`, `"s"`, `{"a":1}`} {
		var raw json.RawMessage
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		if err := ReadJSON(r, &raw); err != nil || string(raw) != body {
			t.Errorf("%s: got %q, %v", body, raw, err)
		}
	}
}

func FuzzReadJSON(f *testing.F) {
	for _, seed := range []string{
		``, ` `, `{}`, `[]`, `null`, `"x"`, `1e999`, `{"name":"a","count":1}`,
		`{"count":300}`, `{"count":1.5}`, `{"content":{"body":[]}}`, `{"tags":[1]}`,
		`{"extra":{"a":{"b":[null]}}}`, `{} {}`, `{"name":"\ud800"}`, "{\"name\":\"\xff\"}",
		`{"name":"` + strings.Repeat("a", testLimit) + `"}`, `[[[[[[[[[[`,
	} {
		f.Add([]byte(seed), true)
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, announce bool) {
		r := &http.Request{Method: http.MethodPost, Body: io.NopCloser(bytes.NewReader(data)), ContentLength: -1}
		if announce {
			r.ContentLength = int64(len(data))
		}
		var dst testBody
		err := ReadJSONLimit(r, &dst, testLimit)
		if err == nil {
			if len(data) > testLimit {
				t.Fatalf("accepted %d bytes over a limit of %d", len(data), testLimit)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("got %T %v, want *Error", err, err)
		}
		if e.Status != 400 && e.Status != 413 {
			t.Fatalf("status %d for %q", e.Status, data)
		}
		if (e.Status == 413) != (len(data) > testLimit) {
			t.Fatalf("status %d for %d bytes", e.Status, len(data))
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatalf("error does not encode: %v", err)
		}
	})
}
