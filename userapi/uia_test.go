package userapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestUIASessions(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, clk := newUsers(t, db, Options{})
		ctx := t.Context()
		load := func(id, want string, wantErrV error) {
			t.Helper()
			got, err := u.UIASession(ctx, id)
			wantErr(t, "UIASession("+id+")", err, wantErrV)
			if wantErrV == nil && string(got) != want {
				t.Errorf("UIASession(%s) = %s, want %s", id, got, want)
			}
		}
		if err := u.SaveUIASession(ctx, "s1", json.RawMessage(`{"completed":[]}`), clk.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		load("s1", `{"completed":[]}`, nil)
		if err := u.SaveUIASession(ctx, "s1", json.RawMessage(`{"completed":["m.login.dummy"]}`), clk.Now().Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		load("s1", `{"completed":["m.login.dummy"]}`, nil)
		load("unknown", "", ErrNotFound)
		if err := u.SaveUIASession(ctx, "s2", json.RawMessage(`{}`), clk.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}

		clk.Add(time.Minute)
		load("s2", "", ErrNotFound) // expired
		load("s1", `{"completed":["m.login.dummy"]}`, nil)
		if err := u.DeleteUIASession(ctx, "s1"); err != nil {
			t.Fatal(err)
		}
		load("s1", "", ErrNotFound)
		wantErr(t, "DeleteUIASession(unknown)", u.DeleteUIASession(ctx, "s1"), nil)
		if err := u.SaveUIASession(ctx, "s3", json.RawMessage(`{`), clk.Now().Add(time.Minute)); err == nil {
			t.Error("invalid JSON accepted")
		}
		// Saving swept the expired session out.
		if err := u.SaveUIASession(ctx, "s4", json.RawMessage(`{}`), clk.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM uia_sessions`).Scan(&n); err != nil || n != 1 {
			t.Errorf("sessions kept: %d, %v; want 1", n, err)
		}
	})
}
