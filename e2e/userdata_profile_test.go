package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestProfile(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	c := ctx(t)

	// A new account's display name is its localpart.
	if dn, err := alice.GetOwnDisplayName(c); err != nil || dn.DisplayName != "alice" {
		t.Fatalf("initial display name: %+v %v", dn, err)
	}

	if err := alice.SetDisplayName(c, "Alice <Liddell> & co"); err != nil {
		t.Fatalf("set display name: %v", err)
	}
	if dn, err := alice.GetOwnDisplayName(c); err != nil || dn.DisplayName != "Alice <Liddell> & co" {
		t.Fatalf("display name: %+v %v", dn, err)
	}
	avatar := id.MustParseContentURI("mxc://localhost/AbC-123_x")
	if err := alice.SetAvatarURL(c, avatar); err != nil {
		t.Fatalf("set avatar: %v", err)
	}
	if got, err := alice.GetOwnAvatarURL(c); err != nil || got != avatar {
		t.Fatalf("avatar: %v %v", got, err)
	}
	// Extended profile fields (spec v1.16): m.tz and custom fields of any JSON type.
	if err := alice.SetProfileField(c, "m.tz", "Europe/London"); err != nil {
		t.Fatalf("set m.tz: %v", err)
	}
	if err := alice.SetProfileField(c, "org.example.job", map[string]any{"title": "Queen", "since": 1865}); err != nil {
		t.Fatalf("set custom field: %v", err)
	}
	if err := alice.SetProfileField(c, "org.example-corp.nothing", nil); err != nil {
		t.Fatalf("set null field: %v", err)
	}
	var job struct {
		Job struct{ Title string } `json:"org.example.job"`
	}
	if err := alice.GetProfileField(c, alice.UserID, "org.example.job", &job); err != nil || job.Job.Title != "Queen" {
		t.Fatalf("custom field: %+v %v", job, err)
	}

	// Look-ups need no access token, also under r0.
	anon := s.Client(t)
	profile, err := anon.GetProfile(c, alice.UserID)
	if err != nil || profile.DisplayName != "Alice <Liddell> & co" || profile.AvatarURL != avatar {
		t.Fatalf("anonymous profile: %+v %v", profile, err)
	}
	want := `{"displayname":"Alice <Liddell> & co","avatar_url":"mxc://localhost/AbC-123_x","m.tz":"Europe/London",
		"org.example.job":{"title":"Queen","since":1865},"org.example-corp.nothing":null}`
	status, _, body := do(t, "GET", clientURL(s, "profile", string(alice.UserID)), nil)
	wantOK(t, status, body, want)
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/r0/profile/@alice:localhost/m.tz", nil)
	wantOK(t, status, body, `{"m.tz":"Europe/London"}`)
	status, _, body = do(t, "GET", clientURL(s, "profile", string(alice.UserID), "org.example-corp.nothing"), nil)
	wantOK(t, status, body, `{"org.example-corp.nothing":null}`)

	// Deleting a field removes it; deleting it again still succeeds.
	for range 2 {
		if err := alice.DeleteProfileField(c, "org.example.job"); err != nil {
			t.Fatalf("delete field: %v", err)
		}
	}
	status, _, body = do(t, "GET", clientURL(s, "profile", string(alice.UserID), "org.example.job"), nil)
	wantError(t, status, body, 404, "M_NOT_FOUND")
	if err := alice.DeleteProfileField(c, "displayname"); err != nil {
		t.Fatalf("delete display name: %v", err)
	}
	status, _, body = do(t, "GET", clientURL(s, "profile", string(alice.UserID)), nil)
	wantOK(t, status, body, `{"avatar_url":"mxc://localhost/AbC-123_x","m.tz":"Europe/London","org.example-corp.nothing":null}`)

	// An empty avatar_url is how clients remove their avatar.
	status, _, body = do(t, "PUT", clientURL(s, "profile", string(alice.UserID), "avatar_url"), []byte(`{"avatar_url":""}`), bearer(alice)...)
	wantOK(t, status, body, `{}`)
	status, _, body = do(t, "GET", clientURL(s, "profile", string(alice.UserID), "avatar_url"), nil)
	wantOK(t, status, body, `{"avatar_url":""}`)
}

func TestProfileErrors(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")
	me := string(alice.UserID)
	field := func(key string) string { return clientURL(s, "profile", me, key) }
	put := func(key, body string) (int, []byte) {
		status, _, b := do(t, "PUT", field(key), []byte(body), bearer(alice)...)
		return status, b
	}

	t.Run("auth", func(t *testing.T) {
		for _, method := range []string{"PUT", "DELETE"} {
			status, _, body := do(t, method, field("displayname"), []byte(`{"displayname":"x"}`))
			wantError(t, status, body, 401, "M_MISSING_TOKEN")
			status, _, body = do(t, method, field("displayname"), []byte(`{"displayname":"x"}`), "Authorization", "Bearer nope")
			wantError(t, status, body, 401, "M_UNKNOWN_TOKEN")
			// Only one's own profile.
			status, _, body = do(t, method, clientURL(s, "profile", string(bob.UserID), "displayname"), []byte(`{"displayname":"x"}`), bearer(alice)...)
			wantError(t, status, body, 403, "M_FORBIDDEN")
		}
		if dn, err := bob.GetOwnDisplayName(ctx(t)); err != nil || dn.DisplayName != "bob" {
			t.Errorf("bob's display name changed: %+v %v", dn, err)
		}
		status, _, body := do(t, "POST", field("displayname"), []byte(`{}`), bearer(alice)...)
		wantError(t, status, body, 405, "M_UNRECOGNIZED")
	})

	t.Run("lookups", func(t *testing.T) {
		for _, tc := range []struct {
			path   string
			status int
			code   string
		}{
			{clientURL(s, "profile", "alice"), 400, "M_INVALID_PARAM"},
			{clientURL(s, "profile", "@alice"), 400, "M_INVALID_PARAM"},
			{clientURL(s, "profile", "@alice:bad_server"), 400, "M_INVALID_PARAM"},
			{clientURL(s, "profile", "alice", "displayname"), 400, "M_INVALID_PARAM"},
			{clientURL(s, "profile", "@nobody:localhost"), 404, "M_NOT_FOUND"},
			{clientURL(s, "profile", "@nobody:localhost", "displayname"), 404, "M_NOT_FOUND"},
			{clientURL(s, "profile", "@Alice:localhost"), 404, "M_NOT_FOUND"},
			{clientURL(s, "profile", string(remoteUser)), 404, "M_NOT_FOUND"},
			{clientURL(s, "profile", string(remoteUser), "displayname"), 404, "M_NOT_FOUND"},
			{field("avatar_url"), 404, "M_NOT_FOUND"}, // never set
			{field("org.example.unset"), 404, "M_NOT_FOUND"},
			{field("bio"), 400, "M_INVALID_PARAM"},
			{field("Org.Example.x"), 400, "M_INVALID_PARAM"},
		} {
			status, _, body := do(t, "GET", tc.path, nil)
			if status != tc.status || !strings.Contains(string(body), tc.code) {
				t.Errorf("GET %s: %d %s, want %d %s", tc.path, status, body, tc.status, tc.code)
			}
		}
	})

	t.Run("keys", func(t *testing.T) {
		status, body := put("bio", `{"bio":"x"}`)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
		status, body = put("org..example", `{"org..example":"x"}`)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
		long := "org.example." + strings.Repeat("k", 250)
		status, body = put(long, `{"`+long+`":"x"}`)
		wantError(t, status, body, 400, "M_KEY_TOO_LARGE")
		status, _, body = do(t, "DELETE", field("bio"), nil, bearer(alice)...)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
		ok := "org.example." + strings.Repeat("k", 243) // 255 bytes
		status, body = put(ok, `{"`+ok+`":"x"}`)
		wantOK(t, status, body, `{}`)
	})

	t.Run("bodies", func(t *testing.T) {
		for _, tc := range []struct {
			key, body string
			code      string
		}{
			{"displayname", `{"displayname":`, "M_NOT_JSON"},
			{"displayname", ``, "M_NOT_JSON"},
			{"displayname", `["x"]`, "M_BAD_JSON"},
			{"displayname", `null`, "M_BAD_JSON"},
			{"displayname", `{}`, "M_MISSING_PARAM"},
			{"displayname", `{"avatar_url":"mxc://localhost/a"}`, "M_MISSING_PARAM"},
			{"displayname", `{"displayname":"x","avatar_url":"mxc://localhost/a"}`, "M_BAD_JSON"},
			{"displayname", `{"displayname":1}`, "M_BAD_JSON"},
			{"displayname", `{"displayname":null}`, "M_BAD_JSON"},
			{"displayname", `{"displayname":"` + strings.Repeat("é", 257) + `"}`, "M_BAD_JSON"},
			{"avatar_url", `{"avatar_url":"https://example.org/a.png"}`, "M_BAD_JSON"},
			{"avatar_url", `{"avatar_url":"mxc://localhost/"}`, "M_BAD_JSON"},
			{"avatar_url", `{"avatar_url":"mxc://bad_server/abc"}`, "M_BAD_JSON"},
			{"avatar_url", `{"avatar_url":{"url":"mxc://localhost/a"}}`, "M_BAD_JSON"},
			{"m.tz", `{"m.tz":["Europe/London"]}`, "M_BAD_JSON"},
		} {
			status, body := put(tc.key, tc.body)
			if status != 400 || !strings.Contains(string(body), tc.code) {
				t.Errorf("PUT %s %s: %d %s, want 400 %s", tc.key, tc.body, status, body, tc.code)
			}
		}
		status, _, body := do(t, "GET", clientURL(s, "profile", me), nil)
		wantOK(t, status, body, `{"displayname":"alice","org.example.`+strings.Repeat("k", 243)+`":"x"}`)
	})

	t.Run("size", func(t *testing.T) {
		big, _ := json.Marshal(map[string]string{"org.example.big": strings.Repeat("x", 70<<10)})
		status, body := put("org.example.big", string(big))
		wantError(t, status, body, 400, "M_PROFILE_TOO_LARGE")
		// Two fields that fit alone but not together.
		half := strings.Repeat("y", 40<<10)
		status, body = put("org.example.one", `{"org.example.one":"`+half+`"}`)
		wantOK(t, status, body, `{}`)
		status, body = put("org.example.two", `{"org.example.two":"`+half+`"}`)
		wantError(t, status, body, 400, "M_PROFILE_TOO_LARGE")
		status, _, body = do(t, "GET", field("org.example.two"), nil)
		wantError(t, status, body, 404, "M_NOT_FOUND")
		// Bodies over the request limit are refused before they are read.
		huge := `{"org.example.huge":"` + strings.Repeat("z", 2<<20) + `"}`
		status, body = put("org.example.huge", huge)
		wantError(t, status, body, 413, "M_TOO_LARGE")
	})
}

func TestProfileGuest(t *testing.T) {
	s := Start(t)
	guest := newGuest(t, s, "1234")
	c := ctx(t)
	// Guests may set and delete their display name ("Guest access") ...
	if err := guest.SetDisplayName(c, "Visitor"); err != nil {
		t.Fatalf("guest display name: %v", err)
	}
	if dn, err := guest.GetOwnDisplayName(c); err != nil || dn.DisplayName != "Visitor" {
		t.Fatalf("guest display name: %+v %v", dn, err)
	}
	if err := guest.DeleteProfileField(c, "displayname"); err != nil {
		t.Fatalf("guest deletes display name: %v", err)
	}
	// ... and no other field.
	status, _, body := do(t, "PUT", clientURL(s, "profile", string(guest.UserID), "avatar_url"), []byte(`{"avatar_url":"mxc://localhost/abc"}`), bearer(guest)...)
	wantError(t, status, body, 403, "M_GUEST_ACCESS_FORBIDDEN")
	status, _, body = do(t, "PUT", clientURL(s, "profile", string(guest.UserID), "m.tz"), []byte(`{"m.tz":"UTC"}`), bearer(guest)...)
	wantError(t, status, body, 403, "M_GUEST_ACCESS_FORBIDDEN")
	status, _, body = do(t, "DELETE", clientURL(s, "profile", string(guest.UserID), "avatar_url"), nil, bearer(guest)...)
	wantError(t, status, body, 403, "M_GUEST_ACCESS_FORBIDDEN")

	// The capabilities say so.
	status, _, body = do(t, "GET", clientURL(s, "capabilities"), nil, bearer(guest)...)
	wantOK(t, status, body, `{"capabilities":{
		"m.change_password":{"enabled":false},"m.set_displayname":{"enabled":true},"m.set_avatar_url":{"enabled":false},
		"m.3pid_changes":{"enabled":false},"m.get_login_token":{"enabled":false},
		"m.profile_fields":{"enabled":true,"allowed":["displayname"]},
		"m.room_versions":{"default":"10","available":{"1":"stable","2":"stable","3":"stable","4":"stable","5":"stable",
		"6":"stable","7":"stable","8":"stable","9":"stable","10":"stable","11":"stable","12":"stable"}}}}`)

	// Account data, tags and filters are not on the spec's list of what guests may use.
	for _, tc := range []struct{ method, path, body string }{
		{"GET", clientURL(s, "user", string(guest.UserID), "account_data", "org.example"), ""},
		{"PUT", clientURL(s, "user", string(guest.UserID), "account_data", "org.example"), `{}`},
		{"PUT", clientURL(s, "user", string(guest.UserID), "rooms", "!r:localhost", "account_data", "org.example"), `{}`},
		{"GET", clientURL(s, "user", string(guest.UserID), "rooms", "!r:localhost", "tags"), ""},
		{"PUT", clientURL(s, "user", string(guest.UserID), "rooms", "!r:localhost", "tags", "u.x"), `{}`},
		{"POST", clientURL(s, "user", string(guest.UserID), "filter"), `{}`},
	} {
		status, _, body := do(t, tc.method, tc.path, []byte(tc.body), bearer(guest)...)
		wantError(t, status, body, 403, "M_GUEST_ACCESS_FORBIDDEN")
	}
}

func TestCapabilities(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	caps, err := alice.Capabilities(ctx(t))
	if err != nil {
		t.Fatalf("capabilities: %v", err)
	}
	if !caps.ChangePassword.Enabled || !caps.SetDisplayname.Enabled || !caps.SetAvatarURL.Enabled ||
		caps.ThreePIDChanges == nil || caps.ThreePIDChanges.Enabled || !caps.GetLoginToken.Enabled {
		t.Errorf("capabilities = %+v", caps)
	}
	if rv := caps.RoomVersions; rv == nil || rv.Default != "10" || len(rv.Available) != 12 || !rv.IsStable("1") || !rv.IsStable("12") || rv.IsAvailable("13") {
		t.Errorf("m.room_versions = %+v", caps.RoomVersions)
	}
	status, _, body := do(t, "GET", s.URL+"/_matrix/client/r0/capabilities", nil, bearer(alice)...)
	wantOK(t, status, body, `{"capabilities":{
		"m.change_password":{"enabled":true},"m.set_displayname":{"enabled":true},"m.set_avatar_url":{"enabled":true},
		"m.3pid_changes":{"enabled":false},"m.get_login_token":{"enabled":true},"m.profile_fields":{"enabled":true},
		"m.room_versions":{"default":"10","available":{"1":"stable","2":"stable","3":"stable","4":"stable","5":"stable",
		"6":"stable","7":"stable","8":"stable","9":"stable","10":"stable","11":"stable","12":"stable"}}}}`)

	status, _, body = do(t, "GET", clientURL(s, "capabilities"), nil)
	wantError(t, status, body, 401, "M_MISSING_TOKEN")
	status, _, body = do(t, "POST", clientURL(s, "capabilities"), []byte(`{}`), bearer(alice)...)
	wantError(t, status, body, 405, "M_UNRECOGNIZED")
}
