package userapi

import (
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestRegistrationTokens(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, clk := newUsers(t, db, Options{})
		ctx := t.Context()
		two := 2
		expiry := clk.Now().Add(time.Hour).UnixMilli()

		tok, err := u.CreateRegistrationToken(ctx, RegistrationToken{Token: "abc", UsesAllowed: &two, ExpiryTime: &expiry, Completed: 7})
		if err != nil || tok.Token != "abc" || *tok.UsesAllowed != 2 || *tok.ExpiryTime != expiry || tok.Completed != 0 {
			t.Fatalf("CreateRegistrationToken = %+v, %v", tok, err)
		}
		two = 5 // what was stored does not alias the caller's values
		if got, _ := u.GetRegistrationToken(ctx, "abc"); got == nil || *got.UsesAllowed != 2 {
			t.Errorf("GetRegistrationToken = %+v", got)
		}
		_, err = u.CreateRegistrationToken(ctx, RegistrationToken{Token: "abc"})
		wantErr(t, "duplicate", err, ErrExists)
		gen, err := u.CreateRegistrationToken(ctx, RegistrationToken{})
		if err != nil || !regexp.MustCompile(`^[A-Za-z0-9]{16}$`).MatchString(gen.Token) || gen.UsesAllowed != nil || gen.ExpiryTime != nil {
			t.Fatalf("generated token = %+v, %v", gen, err)
		}

		// Use counts, up to the limit.
		for i := range 2 {
			wantErr(t, "use", u.UseRegistrationToken(ctx, "abc"), nil)
			if got, _ := u.GetRegistrationToken(ctx, "abc"); got.Completed != i+1 {
				t.Errorf("completed = %d after %d uses", got.Completed, i+1)
			}
		}
		wantErr(t, "use past the limit", u.UseRegistrationToken(ctx, "abc"), ErrTokenExhausted)
		wantErr(t, "use unknown", u.UseRegistrationToken(ctx, "nope"), ErrNotFound)

		valid, invalid := true, false
		list := func(v *bool) []string {
			ts, err := u.RegistrationTokens(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, tk := range ts {
				out = append(out, tk.Token)
			}
			return out
		}
		if all, vs, ivs := list(nil), list(&valid), list(&invalid); len(all) != 2 || len(vs) != 1 || vs[0] != gen.Token || len(ivs) != 1 || ivs[0] != "abc" {
			t.Errorf("lists: all %v, valid %v, invalid %v", all, vs, ivs)
		}

		// Update: raise the limit, keep the expiry; then clear the limit.
		three := 3
		pThree := &three
		got, err := u.UpdateRegistrationToken(ctx, "abc", &pThree, nil)
		if err != nil || *got.UsesAllowed != 3 || got.ExpiryTime == nil || *got.ExpiryTime != expiry {
			t.Fatalf("UpdateRegistrationToken = %+v, %v", got, err)
		}
		wantErr(t, "use after raising", u.UseRegistrationToken(ctx, "abc"), nil)
		var noLimit *int
		var noExpiry *int64
		if got, err = u.UpdateRegistrationToken(ctx, "abc", &noLimit, &noExpiry); err != nil || got.UsesAllowed != nil || got.ExpiryTime != nil || got.Completed != 3 {
			t.Fatalf("UpdateRegistrationToken(clear) = %+v, %v", got, err)
		}
		_, err = u.UpdateRegistrationToken(ctx, "nope", &noLimit, nil)
		wantErr(t, "update unknown", err, ErrNotFound)

		// Expiry.
		past := clk.Now().Add(time.Minute).UnixMilli()
		pPast := &past
		if _, err := u.UpdateRegistrationToken(ctx, "abc", nil, &pPast); err != nil {
			t.Fatal(err)
		}
		wantErr(t, "use before expiry", u.UseRegistrationToken(ctx, "abc"), nil)
		clk.Add(time.Minute)
		wantErr(t, "use at expiry", u.UseRegistrationToken(ctx, "abc"), ErrTokenExhausted)

		wantErr(t, "delete", u.DeleteRegistrationToken(ctx, "abc"), nil)
		wantErr(t, "delete again", u.DeleteRegistrationToken(ctx, "abc"), ErrNotFound)
		_, err = u.GetRegistrationToken(ctx, "abc")
		wantErr(t, "get deleted", err, ErrNotFound)
	})
}

// TestRegistrationTokenLastUse races two registrations for the last use of a token, many times:
// exactly one may win each race.
func TestRegistrationTokenLastUse(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		one := 1
		for round := range 20 {
			tok, err := u.CreateRegistrationToken(ctx, RegistrationToken{UsesAllowed: &one})
			if err != nil {
				t.Fatal(err)
			}
			var errs [2]error
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range errs {
				wg.Go(func() {
					<-start
					errs[i] = u.UseRegistrationToken(ctx, tok.Token)
				})
			}
			close(start)
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
				} else {
					wantErr(t, "losing use", err, ErrTokenExhausted)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d of 2 registrations took the last use", round, ok)
			}
			if got, _ := u.GetRegistrationToken(ctx, tok.Token); got.Completed != 1 {
				t.Fatalf("round %d: completed = %d", round, got.Completed)
			}
		}
	})
}
