package e2e

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/config"
)

// register creates an account through POST /register with the dummy stage, as Element does on
// a server with open registration.
func register(t *testing.T, s *Server, username, password string) *mautrix.Client {
	t.Helper()
	cli := s.Client(t)
	resp, err := cli.RegisterDummy(ctx(t), &mautrix.ReqRegister[any]{Username: username, Password: password, InitialDeviceDisplayName: "first"})
	if err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
	cli.UserID, cli.AccessToken = resp.UserID, resp.AccessToken
	cli.DeviceID = resp.DeviceID
	return cli
}

func login(t *testing.T, s *Server, user, password string) (*mautrix.Client, error) {
	t.Helper()
	cli := s.Client(t)
	_, err := cli.Login(ctx(t), &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
		Password:   password, StoreCredentials: true,
	})
	return cli, err
}

type whoamiResp struct {
	UserID   id.UserID   `json:"user_id"`
	DeviceID id.DeviceID `json:"device_id"`
	IsGuest  bool        `json:"is_guest"`
}

// whoami calls GET /account/whoami, with the is_guest field mautrix leaves out.
func whoami(t *testing.T, cli *mautrix.Client) (*whoamiResp, error) {
	t.Helper()
	var w whoamiResp
	_, err := cli.MakeRequest(ctx(t), "GET", cli.BuildClientURL("v3", "account", "whoami"), nil, &w)
	return &w, err
}

func passwordAuth(user id.UserID, password, session string) map[string]any {
	return map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": string(user)}, "password": password, "session": session}
}

// uiaSession starts a UIA session by sending a request without auth and returns its session ID.
func uiaSession(t *testing.T, cli *mautrix.Client, method, url string, body map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	hdr := []string{}
	if cli.AccessToken != "" {
		hdr = append(hdr, "Authorization", "Bearer "+cli.AccessToken)
	}
	status, _, resp := do(t, method, url, b, hdr...)
	var uia mautrix.RespUserInteractive
	if err := json.Unmarshal(resp, &uia); status != 401 || err != nil || uia.Session == "" || len(uia.Flows) == 0 {
		t.Fatalf("want a 401 UIA answer, got %d %s", status, resp)
	}
	return uia.Session
}

func wantErrCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || !httpErr.IsStatus(status) || httpErr.RespError == nil || httpErr.RespError.ErrCode != code {
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
}

// TestAccountLifecycle is the scenario: register with the dummy stage, log in on a second
// device, see both, delete one with user-interactive auth, and the deleted token stops at once.
func TestAccountLifecycle(t *testing.T) {
	s := Start(t)
	status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/register", []byte(`{}`))
	var uia struct {
		Flows []struct {
			Stages []string `json:"stages"`
		} `json:"flows"`
		Session string `json:"session"`
	}
	if err := json.Unmarshal(body, &uia); status != 401 || err != nil || len(uia.Flows) != 1 || len(uia.Flows[0].Stages) != 1 || uia.Flows[0].Stages[0] != "m.login.dummy" || uia.Session == "" {
		t.Fatalf("POST /register {}: %d %s", status, body)
	}

	alice := register(t, s, "alice", "secret-1")
	who, err := whoami(t, alice)
	if err != nil || who.UserID != "@alice:localhost" || who.DeviceID != alice.DeviceID || who.IsGuest {
		t.Fatalf("whoami: %+v %v", who, err)
	}
	second, err := login(t, s, "alice", "secret-1")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if second.DeviceID == alice.DeviceID {
		t.Fatal("second login reused the device")
	}
	devs, err := alice.GetDevicesInfo(ctx(t))
	if err != nil || len(devs.Devices) != 2 {
		t.Fatalf("devices: %+v %v", devs, err)
	}

	url := alice.BuildClientURL("v3", "devices", second.DeviceID)
	session := uiaSession(t, alice, "DELETE", url, map[string]any{})
	// A wrong password fails the stage and keeps the session going.
	_, err = alice.MakeRequest(ctx(t), "DELETE", url, map[string]any{"auth": passwordAuth(alice.UserID, "wrong", session)}, nil)
	wantErrCode(t, err, 401, "M_FORBIDDEN")
	if err := alice.DeleteDevice(ctx(t), second.DeviceID, &mautrix.ReqDeleteDevice[any]{Auth: passwordAuth(alice.UserID, "secret-1", session)}); err != nil {
		t.Fatalf("delete device: %v", err)
	}
	_, err = second.Whoami(ctx(t))
	wantErrCode(t, err, 401, "M_UNKNOWN_TOKEN")
	if devs, err := alice.GetDevicesInfo(ctx(t)); err != nil || len(devs.Devices) != 1 || devs.Devices[0].DeviceID != alice.DeviceID {
		t.Fatalf("devices after delete: %+v %v", devs, err)
	}
}

func TestRegisterErrors(t *testing.T) {
	s := Start(t)
	register(t, s, "bob", "pw")
	cli := s.Client(t)
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"username":"bob","password":"x"}`, 400, "M_USER_IN_USE"},
		{`{"username":"BOB","password":"x"}`, 400, "M_USER_IN_USE"}, // names are lower-cased first
		{`{"username":"has space","password":"x"}`, 400, "M_INVALID_USERNAME"},
		{`{"username":"12345","password":"x"}`, 400, "M_INVALID_USERNAME"},
		{`{"username":"` + strings.Repeat("a", 250) + `","password":"x"}`, 400, "M_INVALID_USERNAME"},
		{`{"username":5}`, 400, "M_BAD_JSON"},
		{`not json`, 400, "M_NOT_JSON"},
	} {
		status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/register", []byte(tc.body))
		wantError(t, status, body, tc.status, tc.code)
	}
	status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/register?kind=robot", []byte(`{}`))
	wantError(t, status, body, 400, "M_INVALID_PARAM")

	// A stage that no flow offers answers 401 with the flows and an error.
	status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/register", []byte(`{"username":"carol","password":"pw","auth":{"type":"m.login.password"}}`))
	if status != 401 || !strings.Contains(string(body), `"flows"`) || !strings.Contains(string(body), `"errcode"`) {
		t.Fatalf("unoffered stage: %d %s", status, body)
	}

	if resp, err := cli.RegisterAvailable(ctx(t), "carol"); err != nil || !resp.Available {
		t.Errorf("available carol: %+v %v", resp, err)
	}
	_, err := cli.RegisterAvailable(ctx(t), "bob")
	wantErrCode(t, err, 400, "M_USER_IN_USE")
	_, err = cli.RegisterAvailable(ctx(t), "B!")
	wantErrCode(t, err, 400, "M_INVALID_USERNAME")

	// A name in capitals gets its lower-case form.
	if got := register(t, s, "Frank", "pw").UserID; got != "@frank:localhost" {
		t.Errorf("register Frank: %s", got)
	}

	// inhibit_login creates the account without a device.
	resp, err := cli.RegisterDummy(ctx(t), &mautrix.ReqRegister[any]{Username: "dave", Password: "pw", InhibitLogin: true})
	if err != nil || resp.UserID != "@dave:localhost" || resp.AccessToken != "" {
		t.Fatalf("inhibit_login: %+v %v", resp, err)
	}
}

func TestLogin(t *testing.T) {
	s := Start(t)
	register(t, s, "erin", "pw")
	flows, err := s.Client(t).GetLoginFlows(ctx(t))
	if err != nil || !flows.HasFlow(mautrix.AuthTypePassword) || !flows.HasFlow(mautrix.AuthTypeToken) {
		t.Fatalf("login flows: %+v %v", flows, err)
	}
	for _, user := range []string{"erin", "@erin:localhost", "ERIN"} {
		if _, err := login(t, s, user, "pw"); err != nil {
			t.Errorf("login as %s: %v", user, err)
		}
	}
	_, err = login(t, s, "erin", "wrong")
	wantErrCode(t, err, 403, "M_FORBIDDEN")
	_, err = login(t, s, "nobody", "pw")
	wantErrCode(t, err, 403, "M_FORBIDDEN")
	_, err = login(t, s, "@erin:elsewhere", "pw")
	wantErrCode(t, err, 403, "M_FORBIDDEN")

	// The deprecated top-level "user", device ID reuse, and third-party identifiers.
	status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/login", []byte(`{"type":"m.login.password","user":"erin","password":"pw","device_id":"KEEPME"}`))
	if status != 200 || !strings.Contains(string(body), `"device_id":"KEEPME"`) {
		t.Fatalf("top-level user: %d %s", status, body)
	}
	var first struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(body, &first)
	status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/login", []byte(`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"erin"},"password":"pw","device_id":"KEEPME"}`))
	if status != 200 || !strings.Contains(string(body), `"device_id":"KEEPME"`) {
		t.Fatalf("device reuse: %d %s", status, body)
	}
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/v3/account/whoami", nil, "Authorization", "Bearer "+first.AccessToken)
	wantError(t, status, body, 401, "M_UNKNOWN_TOKEN") // reusing the device replaced its token
	for _, tc := range []struct {
		body, code string
		status     int
	}{
		{`{"type":"m.login.password","identifier":{"type":"m.id.thirdparty","medium":"email","address":"e@x"},"password":"pw"}`, "M_UNRECOGNIZED", 400},
		{`{"type":"m.login.magic"}`, "M_UNKNOWN", 400},
		{`{"password":"pw"}`, "M_MISSING_PARAM", 400},
		{`{"type":"m.login.token","token":"nope"}`, "M_FORBIDDEN", 403},
		{`{"type":"m.login.application_service","identifier":{"type":"m.id.user","user":"erin"}}`, "M_UNKNOWN_TOKEN", 401},
		{`{"type":5}`, "M_BAD_JSON", 400},
	} {
		status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/login", []byte(tc.body))
		wantError(t, status, body, tc.status, tc.code)
	}

	// Tokens: missing and unknown.
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/v3/account/whoami", nil)
	wantError(t, status, body, 401, "M_MISSING_TOKEN")
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/v3/account/whoami?access_token=bogus", nil)
	wantError(t, status, body, 401, "M_UNKNOWN_TOKEN")
}

func TestLoginToken(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	url := alice.BuildURL(mautrix.ClientURLPath{"v1", "login", "get_token"})
	session := uiaSession(t, alice, "POST", url, map[string]any{})
	var resp struct {
		LoginToken  string `json:"login_token"`
		ExpiresInMS int64  `json:"expires_in_ms"`
	}
	if _, err := alice.MakeRequest(ctx(t), "POST", url, map[string]any{"auth": passwordAuth(alice.UserID, "pw", session)}, &resp); err != nil || resp.LoginToken == "" || resp.ExpiresInMS <= 0 {
		t.Fatalf("get_token: %+v %v", resp, err)
	}
	cli := s.Client(t)
	if _, err := cli.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: resp.LoginToken, StoreCredentials: true}); err != nil || cli.UserID != alice.UserID {
		t.Fatalf("token login: %v", err)
	}
	_, err := s.Client(t).Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: resp.LoginToken})
	wantErrCode(t, err, 403, "M_FORBIDDEN") // single use
}

func TestPasswordChangeAndDeactivate(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "old")
	other, err := login(t, s, "alice", "old")
	if err != nil {
		t.Fatal(err)
	}
	url := alice.BuildClientURL("v3", "account", "password")
	_, err = alice.MakeRequest(ctx(t), "POST", url, map[string]any{}, nil)
	wantErrCode(t, err, 400, "M_MISSING_PARAM")
	session := uiaSession(t, alice, "POST", url, map[string]any{"new_password": "new"})
	if _, err := alice.MakeRequest(ctx(t), "POST", url, map[string]any{"new_password": "new", "auth": passwordAuth(alice.UserID, "old", session)}, nil); err != nil {
		t.Fatalf("change password: %v", err)
	}
	if _, err := alice.Whoami(ctx(t)); err != nil {
		t.Errorf("the changing device was logged out: %v", err)
	}
	_, err = other.Whoami(ctx(t))
	wantErrCode(t, err, 401, "M_UNKNOWN_TOKEN")
	_, err = login(t, s, "alice", "old")
	wantErrCode(t, err, 403, "M_FORBIDDEN")
	if _, err := login(t, s, "alice", "new"); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}

	url = alice.BuildClientURL("v3", "account", "deactivate")
	session = uiaSession(t, alice, "POST", url, map[string]any{})
	var resp map[string]string
	if _, err := alice.MakeRequest(ctx(t), "POST", url, map[string]any{"auth": passwordAuth(alice.UserID, "new", session)}, &resp); err != nil || resp["id_server_unbind_result"] != "no-support" {
		t.Fatalf("deactivate: %v %v", resp, err)
	}
	_, err = alice.Whoami(ctx(t))
	wantErrCode(t, err, 401, "M_UNKNOWN_TOKEN")
	_, err = login(t, s, "alice", "new")
	wantErrCode(t, err, 403, "M_USER_DEACTIVATED")
	status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/register", []byte(`{"username":"alice","password":"x"}`))
	wantError(t, status, body, 400, "M_USER_IN_USE")
}

func TestDevicesAndLogout(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	d, err := alice.GetDeviceInfo(ctx(t), alice.DeviceID)
	if err != nil || d.DisplayName != "first" {
		t.Fatalf("device: %+v %v", d, err)
	}
	if err := alice.SetDeviceInfo(ctx(t), alice.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "renamed"}); err != nil {
		t.Fatal(err)
	}
	if d, err := alice.GetDeviceInfo(ctx(t), alice.DeviceID); err != nil || d.DisplayName != "renamed" {
		t.Fatalf("renamed device: %+v %v", d, err)
	}
	_, err = alice.GetDeviceInfo(ctx(t), "NOSUCH")
	wantErrCode(t, err, 404, "M_NOT_FOUND")
	err = alice.SetDeviceInfo(ctx(t), "NOSUCH", &mautrix.ReqDeviceInfo{DisplayName: "x"})
	wantErrCode(t, err, 404, "M_NOT_FOUND")

	b, _ := login(t, s, "alice", "pw")
	c, _ := login(t, s, "alice", "pw")
	_, err = alice.MakeRequest(ctx(t), "POST", alice.BuildClientURL("v3", "delete_devices"), map[string]any{}, nil)
	wantErrCode(t, err, 400, "M_MISSING_PARAM")
	session := uiaSession(t, alice, "POST", alice.BuildClientURL("v3", "delete_devices"), map[string]any{"devices": []id.DeviceID{b.DeviceID}})
	if err := alice.DeleteDevices(ctx(t), &mautrix.ReqDeleteDevices[any]{Devices: []id.DeviceID{b.DeviceID}, Auth: passwordAuth(alice.UserID, "pw", session)}); err != nil {
		t.Fatal(err)
	}
	_, err = b.Whoami(ctx(t))
	wantErrCode(t, err, 401, "M_UNKNOWN_TOKEN")

	if _, err := c.Logout(ctx(t)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Whoami(ctx(t))
	wantErrCode(t, err, 401, "M_UNKNOWN_TOKEN")
	d2, _ := login(t, s, "alice", "pw")
	if _, err := alice.LogoutAll(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, cli := range []*mautrix.Client{alice, d2} {
		_, err = cli.Whoami(ctx(t))
		wantErrCode(t, err, 401, "M_UNKNOWN_TOKEN")
	}

	// Third-party identifiers are not supported.
	e, _ := login(t, s, "alice", "pw")
	var tp map[string][]any
	if _, err := e.MakeRequest(ctx(t), "GET", e.BuildClientURL("v3", "account", "3pid"), nil, &tp); err != nil || tp["threepids"] == nil || len(tp["threepids"]) != 0 {
		t.Fatalf("3pid: %v %v", tp, err)
	}
	_, err = e.MakeRequest(ctx(t), "POST", e.BuildClientURL("v3", "account", "3pid", "add"), map[string]any{}, nil)
	wantErrCode(t, err, 403, "M_THREEPID_DENIED")
}

func TestGuests(t *testing.T) {
	closed := Start(t)
	status, _, body := do(t, "POST", closed.URL+"/_matrix/client/v3/register?kind=guest", []byte(`{}`))
	wantError(t, status, body, 403, "M_FORBIDDEN")

	s := Start(t, func(c *config.Config) { c.Registration.Guests = true })
	cli := s.Client(t)
	resp, _, err := cli.RegisterGuest(ctx(t), &mautrix.ReqRegister[any]{Username: "ignored", InitialDeviceDisplayName: "guest device"})
	if err != nil || resp.AccessToken == "" || strings.Contains(string(resp.UserID), "ignored") {
		t.Fatalf("guest registration: %+v %v", resp, err)
	}
	cli.UserID, cli.AccessToken = resp.UserID, resp.AccessToken
	if who, err := whoami(t, cli); err != nil || !who.IsGuest {
		t.Fatalf("guest whoami: %+v %v", who, err)
	}
	_, err = cli.MakeRequest(ctx(t), "POST", cli.BuildClientURL("v3", "account", "password"), map[string]any{"new_password": "x"}, nil)
	wantErrCode(t, err, 403, "M_GUEST_ACCESS_FORBIDDEN")
}

func TestRefreshTokens(t *testing.T) {
	s := Start(t, func(c *config.Config) {
		c.Registration.AccessTokenLifetime = time.Hour
		c.Registration.RefreshTokenLifetime = 300 * time.Millisecond
	})
	register(t, s, "alice", "pw")
	status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/login", []byte(`{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"pw","refresh_token":true}`))
	var l struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresInMS  int64  `json:"expires_in_ms"`
	}
	if err := json.Unmarshal(body, &l); status != 200 || err != nil || l.RefreshToken == "" || l.ExpiresInMS != time.Hour.Milliseconds() {
		t.Fatalf("login with refresh_token: %d %s", status, body)
	}
	status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/refresh", []byte(`{"refresh_token":"`+l.RefreshToken+`"}`))
	var r struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &r); status != 200 || err != nil || r.AccessToken == "" || r.RefreshToken == "" || r.AccessToken == l.AccessToken {
		t.Fatalf("refresh: %d %s", status, body)
	}
	if status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/account/whoami", nil, "Authorization", "Bearer "+r.AccessToken); status != 200 {
		t.Fatalf("new access token: %d %s", status, body)
	}
	// Using the new access token revoked the old refresh token.
	status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/refresh", []byte(`{"refresh_token":"`+l.RefreshToken+`"}`))
	wantError(t, status, body, 401, "M_UNKNOWN_TOKEN")
	// The new refresh token expires by itself.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/refresh", []byte(`{"refresh_token":"`+r.RefreshToken+`"}`))
		if status == 401 {
			wantError(t, status, body, 401, "M_UNKNOWN_TOKEN")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refresh token never expired: %d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/refresh", []byte(`{}`))
	wantError(t, status, body, 400, "M_MISSING_PARAM")
}

// TestSoftLogout lets an access token expire: the client sees soft_logout and refreshes.
func TestSoftLogout(t *testing.T) {
	s := Start(t, func(c *config.Config) { c.Registration.AccessTokenLifetime = 2 * time.Second })
	register(t, s, "alice", "pw")
	status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/login", []byte(`{"type":"m.login.password","user":"alice","password":"pw","refresh_token":true}`))
	var l struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &l); status != 200 || err != nil || l.RefreshToken == "" {
		t.Fatalf("login: %d %s", status, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, body = do(t, "GET", s.URL+"/_matrix/client/v3/account/whoami", nil, "Authorization", "Bearer "+l.AccessToken)
		if status == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access token never expired: %d %s", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var e struct {
		ErrCode    string `json:"errcode"`
		SoftLogout bool   `json:"soft_logout"`
	}
	if json.Unmarshal(body, &e); e.ErrCode != "M_UNKNOWN_TOKEN" || !e.SoftLogout {
		t.Fatalf("expired token: %s", body)
	}
	status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/refresh", []byte(`{"refresh_token":"`+l.RefreshToken+`"}`))
	if err := json.Unmarshal(body, &l); status != 200 || err != nil {
		t.Fatalf("refresh after soft logout: %d %s", status, body)
	}
	if status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/account/whoami", nil, "Authorization", "Bearer "+l.AccessToken); status != 200 {
		t.Fatalf("refreshed token: %d %s", status, body)
	}
}

func TestRateLimit(t *testing.T) {
	s := Start(t, func(c *config.Config) {
		c.RateLimits.Enabled = true
		c.RateLimits.Login = config.Rate{PerSecond: 0.001, Burst: 2}
	})
	register(t, s, "alice", "pw")
	for range 2 {
		if _, err := login(t, s, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	status, hdr, body := do(t, "POST", s.URL+"/_matrix/client/v3/login", []byte(`{"type":"m.login.password","user":"alice","password":"pw"}`))
	wantError(t, status, body, 429, "M_LIMIT_EXCEEDED")
	var e struct {
		RetryAfterMS int64 `json:"retry_after_ms"`
	}
	if json.Unmarshal(body, &e); e.RetryAfterMS <= 0 || hdr.Get("Retry-After") == "" {
		t.Errorf("429 without retry_after_ms or Retry-After: %s", body)
	}
}

// sharedSecretRegister registers through the admin API the way admin tools do.
func sharedSecretRegister(t *testing.T, s *Server, user, password string, admin bool) (*mautrix.Client, int, []byte) {
	t.Helper()
	_, _, body := do(t, "GET", s.URL+"/_synapse/admin/v1/register", nil)
	var n struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(body, &n); err != nil || n.Nonce == "" {
		t.Fatalf("nonce: %s", body)
	}
	mac := hmac.New(sha1.New, []byte(s.Config.Registration.SharedSecret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	mac.Write([]byte(n.Nonce + "\x00" + user + "\x00" + password + "\x00" + role))
	req, _ := json.Marshal(map[string]any{"nonce": n.Nonce, "username": user, "password": password, "admin": admin, "mac": hex.EncodeToString(mac.Sum(nil))})
	status, _, body := do(t, "POST", s.URL+"/_synapse/admin/v1/register", req)
	var resp struct {
		UserID      id.UserID `json:"user_id"`
		AccessToken string    `json:"access_token"`
	}
	json.Unmarshal(body, &resp)
	cli := s.Client(t)
	cli.UserID, cli.AccessToken = resp.UserID, resp.AccessToken
	return cli, status, body
}

func TestAdminAPI(t *testing.T) {
	s := Start(t, func(c *config.Config) { c.Registration.Open = config.Off })
	root, status, body := sharedSecretRegister(t, s, "root", "pw", true)
	if status != 200 || root.UserID != "@root:localhost" {
		t.Fatalf("shared-secret registration: %d %s", status, body)
	}
	// The MAC covers the name as sent; the account gets its lower-case form.
	if cli, status, body := sharedSecretRegister(t, s, "Wendy", "pw", false); status != 200 || cli.UserID != "@wendy:localhost" {
		t.Fatalf("shared-secret registration with capitals: %d %s", status, body)
	}
	// A wrong MAC and a reused nonce are refused.
	_, _, nb := do(t, "GET", s.URL+"/_synapse/admin/v1/register", nil)
	var n struct{ Nonce string }
	json.Unmarshal(nb, &n)
	status, _, body = do(t, "POST", s.URL+"/_synapse/admin/v1/register", []byte(`{"nonce":"`+n.Nonce+`","username":"x","password":"y","mac":"00"}`))
	wantError(t, status, body, 403, "M_FORBIDDEN")
	status, _, body = do(t, "POST", s.URL+"/_synapse/admin/v1/register", []byte(`{"nonce":"`+n.Nonce+`","username":"x","password":"y","mac":"00"}`))
	wantError(t, status, body, 400, "M_UNKNOWN")

	// Closed registration offers only the registration-token flow.
	status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/register", []byte(`{"username":"tina","password":"pw"}`))
	if status != 401 || !strings.Contains(string(body), `"stages":["m.login.registration_token"]`) || strings.Contains(string(body), "m.login.dummy") {
		t.Fatalf("closed registration flows: %d %s", status, body)
	}

	var tok struct {
		Token       string `json:"token"`
		UsesAllowed *int   `json:"uses_allowed"`
	}
	if _, err := root.MakeRequest(ctx(t), "POST", s.URL+"/_synapse/admin/v1/registration_tokens/new", map[string]any{"uses_allowed": 1}, &tok); err != nil || len(tok.Token) != 16 {
		t.Fatalf("new token: %+v %v", tok, err)
	}
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/v1/register/m.login.registration_token/validity?token="+tok.Token, nil)
	if status != 200 || !strings.Contains(string(body), `"valid":true`) {
		t.Fatalf("validity: %d %s", status, body)
	}
	tina := s.Client(t)
	session := uiaSession(t, tina, "POST", tina.BuildClientURL("v3", "register"), map[string]any{"username": "tina", "password": "pw"})
	var reg mautrix.RespRegister
	if _, err := tina.MakeRequest(ctx(t), "POST", tina.BuildClientURL("v3", "register"), map[string]any{
		"username": "tina", "password": "pw", "auth": map[string]string{"type": "m.login.registration_token", "token": tok.Token, "session": session},
	}, &reg); err != nil || reg.UserID != "@tina:localhost" {
		t.Fatalf("register with token: %+v %v", reg, err)
	}
	tina.UserID, tina.AccessToken = reg.UserID, reg.AccessToken
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/v1/register/m.login.registration_token/validity?token="+tok.Token, nil)
	if !strings.Contains(string(body), `"valid":false`) {
		t.Fatalf("used-up token still valid: %d %s", status, body)
	}
	_, err := tina.MakeRequest(ctx(t), "POST", tina.BuildClientURL("v3", "register"), map[string]any{
		"username": "tom", "password": "pw", "auth": map[string]string{"type": "m.login.registration_token", "token": tok.Token},
	}, nil)
	wantErrCode(t, err, 401, "M_FORBIDDEN")

	// Token management errors, and a non-admin is refused.
	_, err = root.MakeRequest(ctx(t), "POST", s.URL+"/_synapse/admin/v1/registration_tokens/new", map[string]any{"token": "bad token!"}, nil)
	wantErrCode(t, err, 400, "M_INVALID_PARAM")
	_, err = root.MakeRequest(ctx(t), "GET", s.URL+"/_synapse/admin/v1/registration_tokens/nope", nil, nil)
	wantErrCode(t, err, 404, "M_NOT_FOUND")
	var upd struct {
		UsesAllowed *int `json:"uses_allowed"`
	}
	if _, err := root.MakeRequest(ctx(t), "PUT", s.URL+"/_synapse/admin/v1/registration_tokens/"+tok.Token, map[string]any{"uses_allowed": nil}, &upd); err != nil || upd.UsesAllowed != nil {
		t.Fatalf("update token: %+v %v", upd, err)
	}
	var list struct {
		Tokens []json.RawMessage `json:"registration_tokens"`
	}
	if _, err := root.MakeRequest(ctx(t), "GET", s.URL+"/_synapse/admin/v1/registration_tokens", nil, &list); err != nil || len(list.Tokens) != 1 {
		t.Fatalf("list tokens: %+v %v", list, err)
	}
	if _, err := root.MakeRequest(ctx(t), "DELETE", s.URL+"/_synapse/admin/v1/registration_tokens/"+tok.Token, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, err = tina.MakeRequest(ctx(t), "GET", s.URL+"/_synapse/admin/v2/users", nil, nil)
	wantErrCode(t, err, 403, "M_FORBIDDEN")

	// Users: create, read, change, list, deactivate.
	var u map[string]any
	if _, err := root.MakeRequest(ctx(t), "PUT", s.URL+"/_synapse/admin/v2/users/@uma:localhost", map[string]any{"password": "pw", "displayname": "Uma", "admin": false}, &u); err != nil || u["name"] != "@uma:localhost" || u["displayname"] != "Uma" {
		t.Fatalf("create user: %v %v", u, err)
	}
	if _, err := login(t, s, "uma", "pw"); err != nil {
		t.Fatalf("login as admin-created user: %v", err)
	}
	if _, err := root.MakeRequest(ctx(t), "PUT", s.URL+"/_synapse/admin/v2/users/@uma:localhost", map[string]any{"admin": true}, &u); err != nil || u["admin"] != true {
		t.Fatalf("make admin: %v %v", u, err)
	}
	var users struct {
		Users []map[string]any `json:"users"`
		Total int              `json:"total"`
	}
	if _, err := root.MakeRequest(ctx(t), "GET", s.URL+"/_synapse/admin/v2/users?limit=2", nil, &users); err != nil || users.Total != 4 || len(users.Users) != 2 {
		t.Fatalf("list users: %+v %v", users, err)
	}
	if _, err := root.MakeRequest(ctx(t), "PUT", s.URL+"/_synapse/admin/v2/users/@uma:localhost", map[string]any{"deactivated": true}, &u); err != nil || u["deactivated"] != true {
		t.Fatalf("deactivate: %v %v", u, err)
	}
	_, err = login(t, s, "uma", "pw")
	wantErrCode(t, err, 403, "M_USER_DEACTIVATED")
	_, err = root.MakeRequest(ctx(t), "GET", s.URL+"/_synapse/admin/v2/users/@ghost:localhost", nil, nil)
	wantErrCode(t, err, 404, "M_NOT_FOUND")
	_, err = root.MakeRequest(ctx(t), "GET", s.URL+"/_synapse/admin/v2/users/@x:elsewhere", nil, nil)
	wantErrCode(t, err, 400, "M_INVALID_PARAM")
}
