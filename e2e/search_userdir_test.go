package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/config"
)

// srchUsers searches the user directory and returns the user IDs found and limited.
func srchUsers(t *testing.T, c *mautrix.Client, term string, limit int) ([]id.UserID, bool) {
	t.Helper()
	resp, err := c.SearchUserDirectory(context.Background(), term, limit)
	if err != nil {
		t.Fatalf("user directory %q: %v", term, err)
	}
	var out []id.UserID
	for _, r := range resp.Results {
		out = append(out, r.UserID)
	}
	return out, resp.Limited
}

// TestUserDirectoryVisibility: a user finds those they share a room with and the members of
// public and published rooms, by localpart or display name words, and nobody else.
func TestUserDirectoryVisibility(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	dave, frank, _ := s.NewUser(t, "dave"), s.NewUser(t, "frank"), s.NewUser(t, "erin")
	if err := bob.SetDisplayName(ctx, "Bobby Tables"); err != nil {
		t.Fatal(err)
	}
	if err := frank.SetDisplayName(ctx, "Frank Bee"); err != nil {
		t.Fatal(err)
	}
	shared := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	srchJoin(t, bob, shared)
	createRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	createRoom(t, dave, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	createRoom(t, frank, &mautrix.ReqCreateRoom{Preset: "private_chat", Visibility: "public"})

	for term, want := range map[string][]id.UserID{
		"bob":            {bob.UserID},
		"TABLES":         {bob.UserID},
		"bobby tab":      {bob.UserID},
		"@bob:localhost": {bob.UserID},
		"carol":          {carol.UserID},
		"frank":          {frank.UserID},
		"dave":           nil,
		"erin":           nil,
		"obby":           nil,
		"":               nil,
	} {
		if got, limited := srchUsers(t, alice, term, 10); !slices.Equal(got, want) || limited {
			t.Errorf("%q: %v (limited %v), want %v", term, got, limited, want)
		}
	}
	// The spec's key is display_name, which mautrix keeps among the extra fields.
	resp, err := alice.SearchUserDirectory(ctx, "bob", 10)
	if err != nil || len(resp.Results) != 1 || resp.Results[0].Extra["display_name"] != "Bobby Tables" {
		t.Fatalf("bob's entry: %+v %v", resp, err)
	}
	// "b" starts Bobby's and Frank Bee's words; the limit cuts one off.
	if got, limited := srchUsers(t, alice, "b", 1); len(got) != 1 || !limited {
		t.Fatalf("limit 1: %v limited %v", got, limited)
	}
	if got, limited := srchUsers(t, alice, "b", 0); len(got) != 2 || limited {
		t.Fatalf("default limit: %v limited %v", got, limited)
	}

	// A new name in a member event is found at once; leaving the shared room hides bob.
	if _, err := bob.SendStateEvent(ctx, shared, event.StateMember, string(bob.UserID), map[string]string{"membership": "join", "displayname": "Robert"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := srchUsers(t, alice, "robert", 10); !slices.Equal(got, []id.UserID{bob.UserID}) {
		t.Fatalf("renamed: %v", got)
	}
	if _, err := bob.LeaveRoom(ctx, shared); err != nil {
		t.Fatal(err)
	}
	if got, _ := srchUsers(t, alice, "bob", 10); len(got) != 0 {
		t.Fatalf("after leaving: %v", got)
	}
}

// TestUserDirectorySearchAllUsers: with user_directory.search_all_users every local user is
// found, also one who was never in a room.
func TestUserDirectorySearchAllUsers(t *testing.T) {
	s := Start(t, func(c *config.Config) { c.UserDir.SearchAllUsers = true })
	alice, dave := s.NewUser(t, "alice"), s.NewUser(t, "dave")
	s.NewUser(t, "erin")
	createRoom(t, dave, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	for term, want := range map[string][]id.UserID{
		"dave": {dave.UserID},
		"eri":  {"@erin:localhost"},
		"zed":  nil,
	} {
		if got, _ := srchUsers(t, alice, term, 10); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", term, got, want)
		}
	}
}

// TestUserDirectoryBadInput answers malformed requests with the spec's errors.
func TestUserDirectoryBadInput(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	url := s.URL + "/_matrix/client/v3/user_directory/search"
	for body, code := range map[string]string{
		`{}`:                                 "M_BAD_JSON",
		`{"search_term":5}`:                  "M_BAD_JSON",
		`{"search_term":"a","limit":-1}`:     "M_INVALID_PARAM",
		`{"search_term":"a","limit":"many"}`: "M_BAD_JSON",
		`[`:                                  "M_NOT_JSON",
	} {
		status, _, resp := do(t, "POST", url, []byte(body), "Authorization", "Bearer "+alice.AccessToken)
		if status != http.StatusBadRequest || srchErrcode(resp) != code {
			t.Errorf("%s: %d %s, want 400 %s", body, status, resp, code)
		}
	}
	if status, _, _ := do(t, "POST", url, []byte(`{"search_term":"a"}`)); status != http.StatusUnauthorized {
		t.Errorf("without a token: %d", status)
	}
}

func srchErrcode(body []byte) string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(body, &e)
	return e.Errcode
}
