package e2e

import (
	"strings"
	"testing"

	"github.com/latticehq/lattice/internal/config"
)

// TestHostileInputNeverFails500 sends strings that databases dislike (NUL bytes, which
// PostgreSQL refuses in text; very long values) to every account endpoint: each must answer a
// client error, never a server error.
func TestHostileInputNeverFails500(t *testing.T) {
	s := Start(t, func(c *config.Config) { c.Registration.Guests = true })
	alice := register(t, s, "alice", "pw")
	root, status, body := sharedSecretRegister(t, s, "root", "pw", true)
	if status != 200 {
		t.Fatalf("admin: %d %s", status, body)
	}
	nul := `a\u0000b`
	long := strings.Repeat("x", 5000)
	requests := []struct{ method, path, body string }{
		{"POST", "/register", `{"username":"` + nul + `","password":"pw"}`},
		{"POST", "/register", `{"username":"bob","password":"pw","device_id":"` + nul + `","auth":{"type":"m.login.dummy"}}`},
		{"POST", "/register", `{"username":"bob2","password":"pw","initial_device_display_name":"` + nul + `","auth":{"type":"m.login.dummy"}}`},
		{"POST", "/register", `{"username":"bob3","password":"pw","device_id":"` + long + `","auth":{"type":"m.login.dummy"}}`},
		{"POST", "/register", `{"auth":{"type":"m.login.dummy","session":"` + nul + `"}}`},
		{"POST", "/register", `{"auth":{"type":"m.login.registration_token","token":"` + nul + `"}}`},
		{"POST", "/register?kind=guest", `{"initial_device_display_name":"` + nul + `"}`},
		{"GET", "/register/available?username=a%00b", ""},
		{"POST", "/login", `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"` + nul + `"},"password":"pw"}`},
		{"POST", "/login", `{"type":"m.login.password","user":"` + long + `","password":"pw"}`},
		{"POST", "/login", `{"type":"m.login.password","user":"alice","password":"pw","device_id":"` + nul + `"}`},
		{"POST", "/login", `{"type":"m.login.password","user":"alice","password":"pw","initial_device_display_name":"` + nul + `"}`},
		{"POST", "/login", `{"type":"m.login.token","token":"` + nul + `"}`},
		{"POST", "/refresh", `{"refresh_token":"` + nul + `"}`},
		{"GET", "/devices/a%00b", ""},
		{"PUT", "/devices/a%00b", `{"display_name":"x"}`},
		{"PUT", "/devices/" + string(alice.DeviceID), `{"display_name":"` + nul + `"}`},
		{"PUT", "/devices/" + string(alice.DeviceID), `{"display_name":"` + long + `"}`},
		{"POST", "/delete_devices", `{"devices":["` + nul + `"],"auth":{"type":"m.login.password","user":"alice","password":"pw"}}`},
		{"POST", "/account/password", `{"new_password":"x","auth":{"type":"m.login.password","user":"` + nul + `","password":"pw"}}`},
		{"GET", "/profile/@a%00b:localhost", ""},
		{"PUT", "/profile/@alice:localhost/displayname", `{"displayname":"` + nul + `"}`},
		{"PUT", "/user/@alice:localhost/account_data/a%00b", `{}`},
		{"PUT", "/user/@alice:localhost/account_data/m.x", `{"k":"` + nul + `"}`},
		{"POST", "/user/@alice:localhost/filter", `{"event_fields":["` + nul + `"]}`},
		{"GET", "/user/@alice:localhost/filter/a%00b", ""},
		{"PUT", "/user/@alice:localhost/rooms/!r:localhost/tags/a%00b", `{}`},
	}
	for _, rq := range requests {
		status, _, body := do(t, rq.method, s.URL+"/_matrix/client/v3"+rq.path, []byte(rq.body), "Authorization", "Bearer "+alice.AccessToken)
		if status >= 500 {
			t.Errorf("%s %s %s: %d %s", rq.method, rq.path, rq.body, status, body)
		}
	}
	admin := []struct{ method, path, body string }{
		{"GET", "/_synapse/admin/v2/users/@a%00b:localhost", ""},
		{"PUT", "/_synapse/admin/v2/users/@a%00b:localhost", `{"password":"x"}`},
		{"PUT", "/_synapse/admin/v2/users/@alice:localhost", `{"displayname":"` + nul + `"}`},
		{"GET", "/_synapse/admin/v2/users?name=a%00b", ""},
		{"GET", "/_synapse/admin/v1/registration_tokens/a%00b", ""},
		{"PUT", "/_synapse/admin/v1/registration_tokens/a%00b", `{"uses_allowed":1}`},
		{"DELETE", "/_synapse/admin/v1/registration_tokens/a%00b", ""},
		{"POST", "/_synapse/admin/v1/register", `{"nonce":"` + nul + `","username":"x","password":"y","mac":"0"}`},
	}
	for _, rq := range admin {
		status, _, body := do(t, rq.method, s.URL+rq.path, []byte(rq.body), "Authorization", "Bearer "+root.AccessToken)
		if status >= 500 {
			t.Errorf("%s %s %s: %d %s", rq.method, rq.path, rq.body, status, body)
		}
	}
}
