package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestRegisterSessionRemembers checks that a registration session keeps the first request's
// parameters for requests that carry auth alone, and answers a repeat of the completed
// request with the same account.
func TestRegisterSessionRemembers(t *testing.T) {
	s := Start(t)
	url := s.URL + "/_matrix/client/v3/register"
	session := uiaSession(t, s.Client(t), "POST", url, map[string]any{"username": "remy", "password": "pw", "inhibit_login": true})
	finish := `{"auth":{"type":"m.login.dummy","session":"` + session + `"}}`
	status, _, body := do(t, "POST", url, []byte(finish))
	if status != 200 || !strings.Contains(string(body), `"user_id":"@remy:localhost"`) || strings.Contains(string(body), "access_token") {
		t.Fatalf("auth-only request: %d %s", status, body)
	}
	// The same request again: the same account, still without a login.
	status, _, body = do(t, "POST", url, []byte(finish))
	if status != 200 || !strings.Contains(string(body), `"user_id":"@remy:localhost"`) || strings.Contains(string(body), "access_token") {
		t.Fatalf("repeated request: %d %s", status, body)
	}
	if _, err := login(t, s, "remy", "pw"); err != nil {
		t.Fatalf("login with the remembered password: %v", err)
	}

	// A repeat of a registration with a login logs in again as the same user.
	session = uiaSession(t, s.Client(t), "POST", url, map[string]any{"password": "pw"})
	finish = `{"password":"pw","auth":{"type":"m.login.dummy","session":"` + session + `"}}`
	var first, again mautrix.RespRegister
	_, _, body = do(t, "POST", url, []byte(finish))
	json.Unmarshal(body, &first)
	_, _, body = do(t, "POST", url, []byte(finish))
	json.Unmarshal(body, &again)
	if first.UserID == "" || again.UserID != first.UserID || again.AccessToken == "" {
		t.Fatalf("repeat: %+v then %+v", first, again)
	}
}

// TestUIASessionBoundToRequest checks that a session begun for one request does not
// authorise another, and that another user's password is refused outright.
func TestUIASessionBoundToRequest(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	register(t, s, "eve", "evepw")
	for _, dev := range []string{"ONE", "TWO"} {
		if status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/login", []byte(`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"pw","device_id":"`+dev+`"}`)); status != 200 {
			t.Fatalf("login as %s: %d %s", dev, status, body)
		}
	}
	hdr := []string{"Authorization", "Bearer " + alice.AccessToken}
	session := uiaSession(t, alice, "DELETE", s.URL+"/_matrix/client/v3/devices/ONE", map[string]any{})
	auth := func(user, password string) []byte {
		b, _ := json.Marshal(map[string]any{"auth": passwordAuth(id.UserID("@"+user+":localhost"), password, session)})
		return b
	}
	status, _, body := do(t, "DELETE", s.URL+"/_matrix/client/v3/devices/TWO", auth("alice", "pw"), hdr...)
	wantError(t, status, body, 403, "M_FORBIDDEN")
	status, _, body = do(t, "DELETE", s.URL+"/_matrix/client/v3/devices/ONE", auth("eve", "evepw"), hdr...)
	wantError(t, status, body, 403, "M_FORBIDDEN")
	for _, dev := range []string{"ONE", "TWO"} {
		if status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/devices/"+dev, nil, hdr...); status != 200 {
			t.Fatalf("device %s gone: %d %s", dev, status, body)
		}
	}
	if status, _, body := do(t, "DELETE", s.URL+"/_matrix/client/v3/devices/ONE", auth("alice", "pw"), hdr...); status != 200 {
		t.Fatalf("delete with the right session and user: %d %s", status, body)
	}
}

// TestWhois checks GET /admin/whois: a user sees their own devices and where they were last
// seen; another user who is no admin is refused.
func TestWhois(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	bob := register(t, s, "bob", "pw")
	if _, err := alice.Whoami(ctx(t)); err != nil { // a request that marks the device seen
		t.Fatal(err)
	}
	var resp struct {
		UserID  id.UserID `json:"user_id"`
		Devices map[id.DeviceID]struct {
			Sessions []struct {
				Connections []struct {
					IP        string `json:"ip"`
					LastSeen  int64  `json:"last_seen"`
					UserAgent string `json:"user_agent"`
				} `json:"connections"`
			} `json:"sessions"`
		} `json:"devices"`
	}
	url := s.URL + "/_matrix/client/v3/admin/whois/" + string(alice.UserID)
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, body := do(t, "GET", url, nil, "Authorization", "Bearer "+alice.AccessToken)
		if err := json.Unmarshal(body, &resp); status != 200 || err != nil || resp.UserID != alice.UserID {
			t.Fatalf("whois: %d %s", status, body)
		}
		d, ok := resp.Devices[alice.DeviceID]
		if !ok || len(d.Sessions) != 1 {
			t.Fatalf("whois devices: %+v", resp.Devices)
		}
		if c := d.Sessions[0].Connections; len(c) == 1 && c[0].IP != "" && c[0].LastSeen > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection seen: %+v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	status, _, body := do(t, "GET", url, nil, "Authorization", "Bearer "+bob.AccessToken)
	wantError(t, status, body, 403, "M_FORBIDDEN")
}

// TestGuestUpgrade checks that a guest becomes a full user through the ordinary registration
// with their guest_access_token and own localpart, and cannot upgrade another guest.
func TestGuestUpgrade(t *testing.T) {
	s := Start(t)
	g1, g2 := newGuest(t, s, "g1"), newGuest(t, s, "g2")
	local1, _, _ := g1.UserID.Parse()
	url := s.URL + "/_matrix/client/v3/register"
	body := func(localpart, token string) []byte {
		b, _ := json.Marshal(map[string]any{"username": localpart, "password": "pw", "guest_access_token": token, "auth": map[string]string{"type": "m.login.dummy"}})
		return b
	}
	status, _, resp := do(t, "POST", url, body(local1, g2.AccessToken))
	wantError(t, status, resp, 403, "M_FORBIDDEN")
	status, _, resp = do(t, "POST", url, body(local1, g1.AccessToken))
	var reg mautrix.RespRegister
	if err := json.Unmarshal(resp, &reg); status != 200 || err != nil || reg.UserID != g1.UserID || reg.AccessToken == "" {
		t.Fatalf("upgrade: %d %s", status, resp)
	}
	cli := s.Client(t)
	cli.UserID, cli.AccessToken = reg.UserID, reg.AccessToken
	if w, err := whoami(t, cli); err != nil || w.IsGuest || w.UserID != g1.UserID {
		t.Fatalf("whoami after upgrade: %+v %v", w, err)
	}
	if _, err := login(t, s, local1, "pw"); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
}
