package userapi

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testServer = "test.local"

// clock is a settable time source for Users.now, so expiry is tested without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newUsers builds the component on db with a fake clock and the cheapest bcrypt cost.
func newUsers(t testing.TB, db *storage.DB, opts Options) (*Users, *clock) {
	t.Helper()
	if opts.ServerName == "" {
		opts.ServerName = testServer
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = 4
	}
	u, err := New(context.Background(), db, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	u.now = c.Now
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return u, c
}

func mustAccount(t testing.TB, u *Users, localpart, password string) *Account {
	t.Helper()
	a, err := u.CreateAccount(context.Background(), NewAccount{Localpart: localpart, Password: password})
	if err != nil {
		t.Fatalf("CreateAccount(%s): %v", localpart, err)
	}
	return a
}

func mustLogin(t testing.TB, u *Users, req NewDevice) (*Device, Tokens) {
	t.Helper()
	d, toks, err := u.CreateDevice(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateDevice(%+v): %v", req, err)
	}
	return d, toks
}

// wantErr fails unless errors.Is(err, want), where want nil means success.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

// tokenWorks checks what QueryAccessToken answers for token: the device of user, or wantErr.
func tokenWorks(t *testing.T, u *Users, token string, user id.UserID, want error) {
	t.Helper()
	d, err := u.QueryAccessToken(t.Context(), token)
	wantErr(t, "QueryAccessToken", err, want)
	if want == nil && err == nil && d.UserID != user {
		t.Errorf("QueryAccessToken: user %s, want %s", d.UserID, user)
	}
}
