package userapi

import (
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestAccessTokenExpiry(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, clk := newUsers(t, db, Options{AccessTokenLifetime: time.Minute})
		alice := mustAccount(t, u, "alice", "").UserID
		_, expiring := mustLogin(t, u, NewDevice{UserID: alice, WithRefresh: true})
		_, lasting := mustLogin(t, u, NewDevice{UserID: alice})
		if !refreshTokenPattern.MatchString(expiring.RefreshToken) || expiring.ExpiresIn != time.Minute {
			t.Errorf("tokens with refresh: %+v", expiring)
		}
		if lasting.RefreshToken != "" || lasting.ExpiresIn != 0 {
			t.Errorf("tokens without refresh: %+v", lasting)
		}
		tokenWorks(t, u, expiring.AccessToken, alice, nil) // cached until it expires
		clk.Add(time.Minute - time.Millisecond)
		tokenWorks(t, u, expiring.AccessToken, alice, nil)
		clk.Add(time.Millisecond)
		tokenWorks(t, u, expiring.AccessToken, alice, ErrTokenExpired)
		tokenWorks(t, u, lasting.AccessToken, alice, nil)

		// Soft logout: the refresh token still gets new tokens for the device.
		fresh, err := u.Refresh(t.Context(), expiring.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		tokenWorks(t, u, fresh.AccessToken, alice, nil)
		clk.Add(365 * 24 * time.Hour)
		tokenWorks(t, u, lasting.AccessToken, alice, nil)
	})
}

func TestRefresh(t *testing.T) {
	type step struct {
		what  string
		check func(t *testing.T, u *Users, tok map[string]Tokens)
	}
	refresh := func(from, to string) step {
		return step{"refresh " + from + " → " + to, func(t *testing.T, u *Users, tok map[string]Tokens) {
			t.Helper()
			n, err := u.Refresh(t.Context(), tok[from].RefreshToken)
			if err != nil {
				t.Fatalf("Refresh(%s): %v", from, err)
			}
			if !accessTokenPattern.MatchString(n.AccessToken) || !refreshTokenPattern.MatchString(n.RefreshToken) || n.ExpiresIn != time.Hour {
				t.Errorf("Refresh(%s) = %+v", from, n)
			}
			tok[to] = n
		}}
	}
	access := func(name string, want error) step {
		return step{"use access " + name, func(t *testing.T, u *Users, tok map[string]Tokens) {
			t.Helper()
			tokenWorks(t, u, tok[name].AccessToken, "@alice:test.local", want)
		}}
	}
	refreshFails := func(name string) step {
		return step{"refresh " + name + " fails", func(t *testing.T, u *Users, tok map[string]Tokens) {
			t.Helper()
			_, err := u.Refresh(t.Context(), tok[name].RefreshToken)
			wantErr(t, "Refresh("+name+")", err, ErrUnknownToken)
		}}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"old tokens live until the new access token is used", []step{
			refresh("1", "2"),
			access("1", nil), access("1", nil), // still valid, and cached
			access("2", nil), // first use retires 1
			access("1", ErrUnknownToken), refreshFails("1"),
			access("2", nil), refresh("2", "3"),
		}},
		{"old tokens live until the new refresh token is used", []step{
			refresh("1", "2"),
			refresh("2", "3"), // retires 1; 2 lives until 3 is used
			access("1", ErrUnknownToken), refreshFails("1"),
			access("2", nil),
			access("3", nil),
			access("2", ErrUnknownToken), refreshFails("2"),
		}},
		{"a repeated refresh replaces the unused result of the last", []step{
			refresh("1", "2"),
			refresh("1", "2b"),
			access("2", ErrUnknownToken), refreshFails("2"),
			access("1", nil),
			access("2b", nil),
			access("1", ErrUnknownToken), refreshFails("1"),
		}},
		{"unknown refresh token", []step{
			{"garbage", func(t *testing.T, u *Users, _ map[string]Tokens) {
				_, err := u.Refresh(t.Context(), "latr_nonsense")
				wantErr(t, "Refresh(garbage)", err, ErrUnknownToken)
			}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T, db *storage.DB) {
				u, _ := newUsers(t, db, Options{AccessTokenLifetime: time.Hour})
				alice := mustAccount(t, u, "alice", "").UserID
				tok := map[string]Tokens{}
				_, tok["1"] = mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "DEV", WithRefresh: true})
				for _, s := range tc.steps {
					s.check(t, u, tok)
					if t.Failed() {
						t.Fatalf("failed at step %q", s.what)
					}
				}
				// However many exchanges ran, the device is one.
				if ds, _ := u.Devices(t.Context(), alice); len(ds) != 1 || ds[0].DeviceID != "DEV" {
					t.Errorf("devices: %+v", ds)
				}
			})
		})
	}
}

func TestRefreshTokenExpiry(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, clk := newUsers(t, db, Options{AccessTokenLifetime: time.Minute, RefreshTokenLifetime: time.Hour})
		alice := mustAccount(t, u, "alice", "").UserID
		_, toks := mustLogin(t, u, NewDevice{UserID: alice, WithRefresh: true})
		clk.Add(59 * time.Minute)
		next, err := u.Refresh(t.Context(), toks.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Hour) // the new refresh token got a full hour of its own
		_, err = u.Refresh(t.Context(), next.RefreshToken)
		wantErr(t, "Refresh at expiry", err, ErrUnknownToken)
	})
}

func TestRefreshAfterLifetimeRemoved(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{AccessTokenLifetime: time.Minute})
		alice := mustAccount(t, u, "alice", "").UserID
		_, toks := mustLogin(t, u, NewDevice{UserID: alice, WithRefresh: true})
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		u, clk := newUsers(t, db, Options{}) // restarted without an access token lifetime
		n, err := u.Refresh(t.Context(), toks.RefreshToken)
		if err != nil || n.RefreshToken != "" || n.ExpiresIn != 0 {
			t.Fatalf("Refresh = %+v, %v", n, err)
		}
		clk.Add(24 * time.Hour)
		tokenWorks(t, u, n.AccessToken, alice, nil)
		tokenWorks(t, u, toks.AccessToken, alice, ErrUnknownToken)
		_, err = u.Refresh(t.Context(), toks.RefreshToken)
		wantErr(t, "second Refresh", err, ErrUnknownToken)
	})
}

// TestConcurrentRefresh exchanges one refresh token from several goroutines: each succeeds, and
// afterwards exactly one of the new token pairs is live.
func TestConcurrentRefresh(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{AccessTokenLifetime: time.Hour})
		alice := mustAccount(t, u, "alice", "").UserID
		_, toks := mustLogin(t, u, NewDevice{UserID: alice, WithRefresh: true})
		const n = 4
		results := make([]Tokens, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { results[i], errs[i] = u.Refresh(t.Context(), toks.RefreshToken) })
		}
		wg.Wait()
		live := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Refresh %d: %v", i, errs[i])
			}
			if _, err := u.QueryAccessToken(t.Context(), results[i].AccessToken); err == nil {
				live++
			}
		}
		if live != 1 {
			t.Errorf("%d of %d concurrent exchanges left live tokens, want 1", live, n)
		}
	})
}

func TestLoginToken(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, clk := newUsers(t, db, Options{LoginTokenLifetime: time.Minute})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		tok, life, err := u.CreateLoginToken(ctx, alice)
		if err != nil || life != time.Minute || !regexp.MustCompile(`^latl_[A-Za-z0-9_-]{43}$`).MatchString(tok) {
			t.Fatalf("CreateLoginToken = %q, %v, %v", tok, life, err)
		}
		got, err := u.ConsumeLoginToken(ctx, tok)
		if err != nil || got != alice {
			t.Errorf("ConsumeLoginToken = %s, %v", got, err)
		}
		_, err = u.ConsumeLoginToken(ctx, tok)
		wantErr(t, "second use", err, ErrUnknownToken)

		tok, _, _ = u.CreateLoginToken(ctx, alice)
		clk.Add(time.Minute)
		_, err = u.ConsumeLoginToken(ctx, tok)
		wantErr(t, "expired", err, ErrUnknownToken)
		_, err = u.ConsumeLoginToken(ctx, "latl_unknown")
		wantErr(t, "unknown", err, ErrUnknownToken)
		_, _, err = u.CreateLoginToken(ctx, "@nobody:test.local")
		wantErr(t, "CreateLoginToken(unknown)", err, ErrNotFound)

		// Concurrent redemptions: one wins.
		tok, _, _ = u.CreateLoginToken(ctx, alice)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 4 {
			wg.Go(func() {
				if _, err := u.ConsumeLoginToken(ctx, tok); err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("%d concurrent redemptions succeeded, want 1", wins)
		}

		// Creating a token sweeps out expired ones.
		for range 3 {
			_, _, _ = u.CreateLoginToken(ctx, alice)
		}
		clk.Add(2 * time.Minute)
		_, _, _ = u.CreateLoginToken(ctx, alice)
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM login_tokens`).Scan(&n); err != nil || n != 1 {
			t.Errorf("login tokens kept: %d, %v; want 1", n, err)
		}
	})
}

func TestTokensAreHashed(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{AccessTokenLifetime: time.Hour})
		alice := mustAccount(t, u, "alice", "").UserID
		_, toks := mustLogin(t, u, NewDevice{UserID: alice, WithRefresh: true})
		for _, q := range []string{`SELECT token_hash FROM access_tokens`, `SELECT token_hash FROM refresh_tokens`} {
			var h []byte
			if err := db.QueryRow(t.Context(), q).Scan(&h); err != nil {
				t.Fatal(err)
			}
			if len(h) != 32 || string(h) == toks.AccessToken || string(h) == toks.RefreshToken {
				t.Errorf("%s: stored %q", q, h)
			}
		}
	})
}
