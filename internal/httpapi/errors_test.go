package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestConstructors(t *testing.T) {
	tests := []struct {
		err    *Error
		status int
		code   string
	}{
		{BadJSON("x"), 400, "M_BAD_JSON"},
		{NotJSON("x"), 400, "M_NOT_JSON"},
		{MissingParam("x"), 400, "M_MISSING_PARAM"},
		{InvalidParam("x"), 400, "M_INVALID_PARAM"},
		{Forbidden("x"), 403, "M_FORBIDDEN"},
		{NotFound("x"), 404, "M_NOT_FOUND"},
		{Unrecognized("x"), 404, "M_UNRECOGNIZED"},
		{MethodNotAllowed("x"), 405, "M_UNRECOGNIZED"},
		{MissingToken("x"), 401, "M_MISSING_TOKEN"},
		{UnknownToken(true, "x"), 401, "M_UNKNOWN_TOKEN"},
		{LimitExceeded(time.Second, "x"), 429, "M_LIMIT_EXCEEDED"},
		{TooLarge("x"), 413, "M_TOO_LARGE"},
		{Unknown("x"), 500, "M_UNKNOWN"},
		{NewError(400, "M_USER_IN_USE", "x"), 400, "M_USER_IN_USE"},
	}
	for _, tt := range tests {
		if tt.err.Status != tt.status || tt.err.Code != tt.code || tt.err.Message != "x" {
			t.Errorf("%s: got %d %s %q, want %d %s", tt.code, tt.err.Status, tt.err.Code, tt.err.Message, tt.status, tt.code)
		}
	}
}

func TestErrorFormatsMessage(t *testing.T) {
	e := Forbidden("user %s may not join %s", "@a:x", "!r:x")
	if e.Message != "user @a:x may not join !r:x" {
		t.Errorf("Message = %q", e.Message)
	}
	if e.Error() != "M_FORBIDDEN: user @a:x may not join !r:x" {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestMarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"plain", NotFound("no such room"), `{"errcode":"M_NOT_FOUND","error":"no such room"}`},
		{"soft logout", UnknownToken(true, "expired"), `{"errcode":"M_UNKNOWN_TOKEN","error":"expired","soft_logout":true}`},
		{"hard logout", UnknownToken(false, "gone"), `{"errcode":"M_UNKNOWN_TOKEN","error":"gone","soft_logout":false}`},
		{"retry", LimitExceeded(1500*time.Millisecond, "slow down"), `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":1500}`},
		{"retry rounds up", LimitExceeded(time.Microsecond, "slow down"), `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":1}`},
		{"no retry", LimitExceeded(0, "slow down"), `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down"}`},
		{"extra cannot replace errcode", &Error{Status: 400, Code: "M_X", Message: "m",
			Extra: map[string]any{"errcode": "M_Y", "error": "other", "room_version": "1"}},
			`{"errcode":"M_X","error":"m","room_version":"1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.err)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLimitExceededRetryAfter(t *testing.T) {
	tests := []struct {
		after time.Duration
		want  string
	}{
		{1500 * time.Millisecond, "2"},
		{2 * time.Second, "2"},
		{time.Millisecond, "1"},
		{0, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.after), func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/login", nil)
			WriteError(w, r, LimitExceeded(tt.after, "slow down"))
			if w.Code != http.StatusTooManyRequests {
				t.Errorf("status %d, want 429", w.Code)
			}
			if got := w.Header().Get("Retry-After"); got != tt.want {
				t.Errorf("Retry-After = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLimitExceededOverHTTP(t *testing.T) {
	r := NewRouter()
	r.Handle("/login", HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return fmt.Errorf("rate limiter: %w", LimitExceeded(3*time.Second, "Too many logins"))
	}))
	srv := newTestServer(t, r, nil)
	a := do(t, http.MethodPost, srv.URL+"/login", nil)
	a.wantError(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	a.wantCORS(t)
	if got := a.header.Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After = %q, want 3", got)
	}
	if got := a.body["retry_after_ms"]; got != float64(3000) {
		t.Errorf("retry_after_ms = %v, want 3000", got)
	}
}
