package userapi

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestProfile(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		for _, tc := range []struct{ key, value, stored string }{
			{"displayname", `"Alice"`, `"Alice"`},
			{"avatar_url", `"mxc://test.local/abc"`, `"mxc://test.local/abc"`},
			{"m.tz", ` "Europe/Berlin" `, `"Europe/Berlin"`},
			{"org.example.number", `42`, `42`},
			{"org.example.object", `{"a": [1, 2, {"b": null}]}`, `{"a":[1,2,{"b":null}]}`},
			{"org.example.null", `null`, `null`},
		} {
			if err := u.SetProfileField(ctx, alice, tc.key, json.RawMessage(tc.value)); err != nil {
				t.Fatalf("SetProfileField(%s): %v", tc.key, err)
			}
			p, err := u.Profile(ctx, alice)
			if err != nil || string(p[tc.key]) != tc.stored {
				t.Errorf("after setting %s: %s, %v", tc.key, p[tc.key], err)
			}
		}
		if err := u.DeleteProfileField(ctx, alice, "avatar_url"); err != nil {
			t.Fatal(err)
		}
		if err := u.DeleteProfileField(ctx, alice, "never-set"); err != nil {
			t.Errorf("deleting an absent field: %v", err)
		}
		p, _ := u.Profile(ctx, alice)
		if _, ok := p["avatar_url"]; ok || len(p) != 5 {
			t.Errorf("profile after delete: %s", p)
		}
		if err := u.SetProfileField(ctx, alice, "bad", json.RawMessage(`{`)); err == nil {
			t.Error("SetProfileField accepted invalid JSON")
		}
		for _, user := range []id.UserID{"@nobody:test.local", "@alice:elsewhere", "not a user"} {
			_, err := u.Profile(ctx, user)
			wantErr(t, "Profile("+string(user)+")", err, ErrNotFound)
			wantErr(t, "SetProfileField("+string(user)+")", u.SetProfileField(ctx, user, "displayname", json.RawMessage(`"x"`)), ErrNotFound)
			wantErr(t, "DeleteProfileField("+string(user)+")", u.DeleteProfileField(ctx, user, "displayname"), ErrNotFound)
		}
	})
}

func TestProfileSizeLimit(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		str := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n) + `"`) }
		// {"displayname":"alice","big":"xxx…"} is 64 KiB exactly with this many x.
		fit := maxProfileSize - len(`{"big":"","displayname":"alice"}`)
		if err := u.SetProfileField(ctx, alice, "big", str(fit)); err != nil {
			t.Fatalf("profile of exactly 64 KiB: %v", err)
		}
		wantErr(t, "one byte over", u.SetProfileField(ctx, alice, "big", str(fit+1)), ErrProfileTooLarge)
		wantErr(t, "another field", u.SetProfileField(ctx, alice, "x", json.RawMessage(`1`)), ErrProfileTooLarge)
		// Replacing a field counts its new size, not both.
		wantErr(t, "smaller replacement", u.SetProfileField(ctx, alice, "big", str(fit-100)), nil)
		wantErr(t, "small field now fits", u.SetProfileField(ctx, alice, "x", json.RawMessage(`1`)), nil)
		p, _ := u.Profile(ctx, alice)
		if enc, _ := json.Marshal(p); len(enc) > maxProfileSize {
			t.Errorf("profile is %d bytes", len(enc))
		}

		// Concurrent writers of different fields cannot together pass the limit.
		bob := mustAccount(t, u, "bob", "").UserID
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() { _ = u.SetProfileField(ctx, bob, "f"+string(rune('a'+i)), str(maxProfileSize/3)) })
		}
		wg.Wait()
		p, _ = u.Profile(ctx, bob)
		if enc, _ := json.Marshal(p); len(enc) > maxProfileSize || len(p) != 3 {
			t.Errorf("after concurrent writes the profile has %d fields, %d bytes", len(p), len(enc))
		}
	})
}
