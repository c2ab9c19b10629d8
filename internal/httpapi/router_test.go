package httpapi

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestUnknownPathIs404Unrecognized(t *testing.T) {
	r := NewRouter()
	r.Handle("/known", HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	})).Methods(http.MethodGet)
	srv := newTestServer(t, r, nil)

	a := do(t, http.MethodGet, srv.URL+"/_matrix/client/v3/nope", nil)
	a.wantError(t, http.StatusNotFound, "M_UNRECOGNIZED")
	a.wantCORS(t)
}

func TestWrongMethodIs405Unrecognized(t *testing.T) {
	r := NewRouter()
	r.Handle("/known", HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })).Methods(http.MethodGet)
	sub := r.PathPrefix("/sub").Subrouter()
	sub.Handle("/thing", HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })).Methods(http.MethodPut)
	srv := newTestServer(t, r, nil)

	for _, path := range []string{"/known", "/sub/thing"} {
		a := do(t, http.MethodPatch, srv.URL+path, nil)
		a.wantError(t, http.StatusMethodNotAllowed, "M_UNRECOGNIZED")
		a.wantCORS(t)
	}
}

func TestOptionsNeverReachesEndpoint(t *testing.T) {
	var called atomic.Bool
	r := NewRouter()
	r.Handle("/_matrix/client/v3/rooms/{roomId}/send/{type}/{txn}", HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		called.Store(true)
		return nil
	})).Methods(http.MethodPut)
	srv := newTestServer(t, r, nil)

	for _, path := range []string{
		"/_matrix/client/v3/rooms/!r:x/send/m.room.message/1", // known, but only for PUT
		"/_matrix/client/v3/unknown",
		"/",
	} {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+path, nil)
		req.Header.Set("Origin", "https://app.element.io")
		req.Header.Set("Access-Control-Request-Method", "PUT")
		a := doReq(t, req)
		if a.status != http.StatusOK || strings.TrimSpace(a.raw) != "{}" {
			t.Errorf("OPTIONS %s: got %d %q, want 200 {}", path, a.status, a.raw)
		}
		a.wantCORS(t)
	}
	if called.Load() {
		t.Error("an OPTIONS request ran the endpoint")
	}
}

func TestVarsDecodesEncodedPath(t *testing.T) {
	got := make(chan map[string]string, 1)
	r := NewRouter()
	r.Handle("/rooms/{roomId}/event/{eventId}", HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got <- Vars(r)
		WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}))
	srv := newTestServer(t, r, nil)

	tests := []struct {
		path          string
		room, eventID string
	}{
		// A room v3+ event ID may hold '/', which clients percent-encode.
		{"/rooms/%21r%3Aexample.org/event/$abc%2Fdef%2Bg", "!r:example.org", "$abc/def+g"},
		{"/rooms/!r:example.org/event/$plain", "!r:example.org", "$plain"},
		// Decoded once only: an encoded '%' stays a literal '%2F'.
		{"/rooms/!r:x/event/$a%252Fb", "!r:x", "$a%2Fb"},
	}
	for _, tt := range tests {
		do(t, http.MethodGet, srv.URL+tt.path, nil).wantStatus(t, 200)
		vars := <-got
		if vars["roomId"] != tt.room || vars["eventId"] != tt.eventID {
			t.Errorf("%s: got %v, want roomId=%q eventId=%q", tt.path, vars, tt.room, tt.eventID)
		}
	}
	// An unencoded '/' is a path separator, so it does not match the route.
	do(t, http.MethodGet, srv.URL+"/rooms/!r:x/event/$a/b", nil).wantError(t, 404, "M_UNRECOGNIZED")
}

// TestNoPathCleaningRedirect: a state key of ".." must reach the handler
// rather than be redirected to another path.
func TestNoPathCleaningRedirect(t *testing.T) {
	got := make(chan string, 1)
	r := NewRouter()
	r.Handle("/rooms/{roomId}/state/{type}/{stateKey}", HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got <- Vars(r)["stateKey"]
		WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	})).Methods(http.MethodPut)
	srv := newTestServer(t, r, nil)

	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/rooms/!r:x/state/m.room.x/%2E%2E", strings.NewReader("{}"))
	doReq(t, req).wantStatus(t, 200)
	if key := <-got; key != ".." {
		t.Errorf("state key %q, want ..", key)
	}
}
