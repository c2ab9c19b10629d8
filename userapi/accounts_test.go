package userapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestNewValidatesOptions(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		for _, opts := range []Options{
			{},
			{ServerName: testServer, BcryptCost: 3},
			{ServerName: testServer, BcryptCost: 32},
			{ServerName: testServer, AccessTokenLifetime: -1},
		} {
			if u, err := New(t.Context(), db, opts); err == nil {
				u.Close()
				t.Errorf("New(%+v) succeeded", opts)
			}
		}
		// Migrating twice is harmless.
		newUsers(t, db, Options{})
		newUsers(t, db, Options{})
	})
}

func TestCreateAccount(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		a, err := u.CreateAccount(ctx, NewAccount{Localpart: "alice", Password: "pw", Admin: true, AppServiceID: "as1"})
		if err != nil {
			t.Fatal(err)
		}
		if a.UserID != "@alice:test.local" || !a.IsAdmin || a.IsGuest || a.AppServiceID != "as1" || a.CreatedAt.IsZero() {
			t.Errorf("CreateAccount = %+v", a)
		}
		got, err := u.Account(ctx, a.UserID)
		if err != nil || *got != *a {
			t.Errorf("Account = %+v, %v; want %+v", got, err, a)
		}
		g, err := u.CreateAccount(ctx, NewAccount{Localpart: "guest1", Guest: true, DisplayName: "Visitor"})
		if err != nil || !g.IsGuest {
			t.Fatalf("guest: %+v, %v", g, err)
		}
		for user, want := range map[id.UserID]string{a.UserID: `"alice"`, g.UserID: `"Visitor"`} {
			p, err := u.Profile(ctx, user)
			if err != nil || string(p["displayname"]) != want {
				t.Errorf("Profile(%s) = %s, %v; want displayname %s", user, p, err, want)
			}
		}
		_, err = u.Account(ctx, "@nobody:test.local")
		wantErr(t, "Account(unknown)", err, ErrNotFound)
		_, err = u.CreateAccount(ctx, NewAccount{})
		if err == nil {
			t.Error("CreateAccount with an empty localpart succeeded")
		}

		// Taken names, in any letter case, including deactivated ones.
		mustAccount(t, u, "Bob", "")
		mustAccount(t, u, "dave", "")
		if err := u.Deactivate(ctx, "@dave:test.local", false); err != nil {
			t.Fatal(err)
		}
		for _, lp := range []string{"alice", "ALICE", "Alice", "bob", "BOB", "Bob", "dave", "Dave"} {
			_, err := u.CreateAccount(ctx, NewAccount{Localpart: lp, Password: "x"})
			wantErr(t, "CreateAccount("+lp+")", err, ErrUserInUse)
		}
		// A failed registration leaves nothing behind.
		if p, _ := u.Profile(ctx, "@ALICE:test.local"); p != nil {
			t.Errorf("profile of the refused account: %s", p)
		}
	})
}

func TestLookupLocalpart(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		mustAccount(t, u, "Alice", "")
		mustAccount(t, u, "bob", "")
		for _, tc := range []struct {
			in   string
			want id.UserID
			err  error
		}{
			{"Alice", "@Alice:test.local", nil},
			{"alice", "@Alice:test.local", nil},
			{"ALICE", "@Alice:test.local", nil},
			{"bob", "@bob:test.local", nil},
			{"Bob", "@bob:test.local", nil},
			{"carol", "", ErrNotFound},
			{"", "", ErrNotFound},
		} {
			a, err := u.LookupLocalpart(t.Context(), tc.in)
			wantErr(t, "LookupLocalpart("+tc.in+")", err, tc.err)
			if err == nil && a.UserID != tc.want {
				t.Errorf("LookupLocalpart(%s) = %s, want %s", tc.in, a.UserID, tc.want)
			}
		}
	})
}

func TestCheckPassword(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		long := strings.Repeat("p", 72)
		mustAccount(t, u, "alice", "correct horse")
		mustAccount(t, u, "nopass", "")
		mustAccount(t, u, "long", long+"-suffix")
		mustAccount(t, u, "gone", "pw")
		if err := u.Deactivate(ctx, "@gone:test.local", false); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			user id.UserID
			pw   string
			err  error
		}{
			{"@alice:test.local", "correct horse", nil},
			{"@alice:test.local", "Correct horse", ErrWrongPassword},
			{"@alice:test.local", "", ErrWrongPassword},
			{"@nobody:test.local", "correct horse", ErrNotFound},
			{"@alice:elsewhere", "correct horse", ErrNotFound},
			{"@gone:test.local", "pw", ErrDeactivated},
			{"@nopass:test.local", "", ErrWrongPassword},
			{"@nopass:test.local", "", ErrNoPasswordForAcc},
			// bcrypt reads the first 72 bytes only.
			{"@long:test.local", long + "-suffix", nil},
			{"@long:test.local", long + "-other", nil},
			{"@long:test.local", long[:71], ErrWrongPassword},
		} {
			a, err := u.CheckPassword(ctx, tc.user, tc.pw)
			wantErr(t, "CheckPassword("+string(tc.user)+", "+tc.pw+")", err, tc.err)
			if err == nil && a.UserID != tc.user {
				t.Errorf("CheckPassword(%s) = %s", tc.user, a.UserID)
			}
		}
	})
}

func TestSetPassword(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{AccessTokenLifetime: 3600e9})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "old").UserID
		tokens := map[id.DeviceID]Tokens{}
		for _, d := range []id.DeviceID{"A", "B", "C"} {
			_, tokens[d] = mustLogin(t, u, NewDevice{UserID: alice, DeviceID: d, WithRefresh: true})
			tokenWorks(t, u, tokens[d].AccessToken, alice, nil) // cached from here on
		}

		// Without logout every device stays.
		if err := u.SetPassword(ctx, alice, "new", false, ""); err != nil {
			t.Fatal(err)
		}
		_, err := u.CheckPassword(ctx, alice, "old")
		wantErr(t, "old password", err, ErrWrongPassword)
		_, err = u.CheckPassword(ctx, alice, "new")
		wantErr(t, "new password", err, nil)
		for _, tok := range tokens {
			tokenWorks(t, u, tok.AccessToken, alice, nil)
		}

		// With logout only keep survives, refresh tokens included.
		if err := u.SetPassword(ctx, alice, "newer", true, "B"); err != nil {
			t.Fatal(err)
		}
		tokenWorks(t, u, tokens["A"].AccessToken, alice, ErrUnknownToken)
		tokenWorks(t, u, tokens["C"].AccessToken, alice, ErrUnknownToken)
		tokenWorks(t, u, tokens["B"].AccessToken, alice, nil)
		_, err = u.Refresh(ctx, tokens["A"].RefreshToken)
		wantErr(t, "Refresh of a logged out device", err, ErrUnknownToken)
		if ds, _ := u.Devices(ctx, alice); len(ds) != 1 || ds[0].DeviceID != "B" {
			t.Errorf("devices after logout: %+v", ds)
		}

		// "" removes password login.
		if err := u.SetPassword(ctx, alice, "", false, ""); err != nil {
			t.Fatal(err)
		}
		_, err = u.CheckPassword(ctx, alice, "")
		wantErr(t, "after removing the password", err, ErrNoPasswordForAcc)

		wantErr(t, "SetPassword(unknown)", u.SetPassword(ctx, "@nobody:test.local", "x", true, ""), ErrNotFound)
		mustAccount(t, u, "gone", "x")
		if err := u.Deactivate(ctx, "@gone:test.local", false); err != nil {
			t.Fatal(err)
		}
		wantErr(t, "SetPassword(deactivated)", u.SetPassword(ctx, "@gone:test.local", "x", false, ""), ErrDeactivated)
	})
}

func TestSetAdmin(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		_, tok := mustLogin(t, u, NewDevice{UserID: alice})
		for _, admin := range []bool{true, false, true} {
			if err := u.SetAdmin(ctx, alice, admin); err != nil {
				t.Fatal(err)
			}
			a, _ := u.Account(ctx, alice)
			d, err := u.QueryAccessToken(ctx, tok.AccessToken) // cached after the first round
			if err != nil || d.IsAdmin != admin || a.IsAdmin != admin {
				t.Errorf("after SetAdmin(%v): device admin %v, account admin %v, %v", admin, d.IsAdmin, a.IsAdmin, err)
			}
		}
		wantErr(t, "SetAdmin(unknown)", u.SetAdmin(ctx, "@nobody:test.local", true), ErrNotFound)
	})
}

func TestDeactivate(t *testing.T) {
	for _, erase := range []bool{false, true} {
		t.Run(map[bool]string{false: "keep profile", true: "erase"}[erase], func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T, db *storage.DB) {
				u, _ := newUsers(t, db, Options{AccessTokenLifetime: 3600e9})
				ctx := t.Context()
				alice := mustAccount(t, u, "alice", "pw").UserID
				_, tok := mustLogin(t, u, NewDevice{UserID: alice, WithRefresh: true})
				tokenWorks(t, u, tok.AccessToken, alice, nil)
				login, _, err := u.CreateLoginToken(ctx, alice)
				if err != nil {
					t.Fatal(err)
				}
				if err := u.SetProfileField(ctx, alice, "avatar_url", json.RawMessage(`"mxc://x/y"`)); err != nil {
					t.Fatal(err)
				}

				if err := u.Deactivate(ctx, alice, erase); err != nil {
					t.Fatal(err)
				}
				tokenWorks(t, u, tok.AccessToken, alice, ErrUnknownToken)
				_, err = u.Refresh(ctx, tok.RefreshToken)
				wantErr(t, "Refresh", err, ErrUnknownToken)
				_, err = u.ConsumeLoginToken(ctx, login)
				wantErr(t, "ConsumeLoginToken", err, ErrUnknownToken)
				if ds, err := u.Devices(ctx, alice); err != nil || len(ds) != 0 {
					t.Errorf("Devices = %+v, %v", ds, err)
				}
				_, err = u.CheckPassword(ctx, alice, "pw")
				wantErr(t, "CheckPassword", err, ErrDeactivated)
				a, err := u.Account(ctx, alice)
				if err != nil || !a.Deactivated {
					t.Errorf("Account = %+v, %v", a, err)
				}
				p, err := u.Profile(ctx, alice)
				if err != nil || (len(p) == 0) != erase {
					t.Errorf("Profile = %s, %v (erase %v)", p, err, erase)
				}
				_, _, err = u.CreateDevice(ctx, NewDevice{UserID: alice})
				wantErr(t, "CreateDevice", err, ErrDeactivated)
				_, _, err = u.CreateLoginToken(ctx, alice)
				wantErr(t, "CreateLoginToken", err, ErrDeactivated)
				_, err = u.CreateAccount(ctx, NewAccount{Localpart: "alice"})
				wantErr(t, "CreateAccount", err, ErrUserInUse)
				wantErr(t, "Deactivate again", u.Deactivate(ctx, alice, erase), nil)
				wantErr(t, "Deactivate(unknown)", u.Deactivate(ctx, "@nobody:test.local", erase), ErrNotFound)
			})
		})
	}
}

func TestAccounts(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		for _, lp := range []string{"carol", "alice", "al_ice", "Alfred", "bob", "zed"} {
			mustAccount(t, u, lp, "")
		}
		if _, err := u.CreateAccount(ctx, NewAccount{Localpart: "guest7", Guest: true}); err != nil {
			t.Fatal(err)
		}
		mustAccount(t, u, "alf-gone", "")
		if err := u.Deactivate(ctx, "@alf-gone:test.local", false); err != nil {
			t.Fatal(err)
		}
		names := func(as []Account) string {
			var s []string
			for _, a := range as {
				s = append(s, a.UserID.Localpart())
			}
			return strings.Join(s, ",")
		}
		for _, tc := range []struct {
			name  string
			f     AccountFilter
			want  string
			total int
		}{
			{"all active", AccountFilter{}, "Alfred,al_ice,alice,bob,carol,zed", 6},
			{"with guests", AccountFilter{Guests: true}, "Alfred,al_ice,alice,bob,carol,guest7,zed", 7},
			{"everything", AccountFilter{Guests: true, Deactivated: true}, "Alfred,al_ice,alf-gone,alice,bob,carol,guest7,zed", 8},
			{"name, any case", AccountFilter{Name: "@AL"}, "Alfred,al_ice,alice", 3},
			{"name with deactivated", AccountFilter{Name: "alf", Deactivated: true}, "Alfred,alf-gone", 2},
			{"underscore is literal", AccountFilter{Name: "l_i"}, "al_ice", 1},
			{"percent is literal", AccountFilter{Name: "%"}, "", 0},
			{"server name matches", AccountFilter{Name: "TEST.local", Limit: 2}, "Alfred,al_ice", 6},
			{"page 2", AccountFilter{From: 2, Limit: 2}, "alice,bob", 6},
			{"past the end", AccountFilter{From: 10, Limit: 2}, "", 6},
			{"negative from", AccountFilter{From: -5, Limit: 1}, "Alfred", 6},
		} {
			got, total, err := u.Accounts(ctx, tc.f)
			if err != nil || names(got) != tc.want || total != tc.total {
				t.Errorf("%s: Accounts = %s (%d), %v; want %s (%d)", tc.name, names(got), total, err, tc.want, tc.total)
			}
		}
	})
}

func TestErrorsAreWrapped(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := u.Account(t.Context(), "@alice:test.local")
		if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "@alice:test.local") {
			t.Errorf("Account on a closed database: %v", err)
		}
	})
}
