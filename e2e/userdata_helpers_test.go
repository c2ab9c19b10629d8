package e2e

import (
	"encoding/json"
	"net/url"
	"reflect"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/userapi"
)

// clientURL is the URL of a client API path under v3, its parts percent-encoded one by one.
func clientURL(s *Server, parts ...string) string {
	u := s.URL + "/_matrix/client/v3"
	for _, p := range parts {
		u += "/" + url.PathEscape(p)
	}
	return u
}

// bearer is the header pair that authenticates a raw request as c.
func bearer(c *mautrix.Client) []string {
	return []string{"Authorization", "Bearer " + c.AccessToken}
}

// newGuest creates a guest account directly through the user component and returns a client
// logged in as it.
func newGuest(t *testing.T, s *Server, localpart string) *mautrix.Client {
	t.Helper()
	return s.NewAccount(t, userapi.NewAccount{Localpart: localpart, Guest: true})
}

// wantJSON checks that body is JSON equal to want (itself JSON).
func wantJSON(t *testing.T, body []byte, want string) {
	t.Helper()
	var got, exp any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("got %s, want %s", body, want)
	}
}

// wantOK checks a 200 answer whose body is JSON equal to want.
func wantOK(t *testing.T, status int, body []byte, want string) {
	t.Helper()
	if status != 200 {
		t.Fatalf("got %d %s, want 200 %s", status, body, want)
	}
	wantJSON(t, body, want)
}

// remoteUser is a user ID of a server that is not the test server.
const remoteUser = id.UserID("@bob:remote.example.org")
