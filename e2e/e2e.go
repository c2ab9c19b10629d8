// Package e2e starts real Lattice servers for end-to-end tests and hands out real clients.
//
// The database engine comes from LATTICE_E2E_DB: "sqlite" (the default) or "postgres", which
// needs LATTICE_TEST_POSTGRES to hold a DSN; each server gets a fresh, empty database.
package e2e

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/latticehq/lattice"
	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/userapi"
)

// EnvDB names the environment variable that picks the engine of e2e servers.
const EnvDB = "LATTICE_E2E_DB"

// Server is a Lattice server started for one test; it stops when the test ends.
type Server struct {
	*lattice.Server
	// Config is the configuration the server runs with.
	Config *config.Config
	// URL is the base URL of its client API.
	URL string

	logs *testLog
}

// Option changes the configuration of a server before it starts.
type Option func(*config.Config)

// Engine returns the database engine that e2e servers use in this environment.
func Engine(t testing.TB) storage.Engine {
	switch e := os.Getenv(EnvDB); e {
	case "", "sqlite":
		return storage.EngineSQLite
	case "postgres":
		return storage.EnginePostgres
	default:
		t.Fatalf("%s=%q: want sqlite or postgres", EnvDB, e)
		return ""
	}
}

// Start starts a Lattice server named localhost on a random loopback port, with a temporary
// data folder and a fresh database, and stops it when the test ends. Registration is open (the
// listener is on loopback), rate limits are off and passwords are hashed at the lowest cost.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	dir := t.TempDir()
	key, err := config.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default("localhost")
	cfg.Dir = dir
	if err := config.WriteSigningKey(cfg.Path(cfg.SigningKey), key); err != nil {
		t.Fatal(err)
	}
	cfg.Database.DSN = storagetest.DSN(t, Engine(t))
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.Registration.BcryptCost = 4 // the cheapest cost: tests hash many passwords
	cfg.RateLimits.Enabled = false  // tests register and log in fast; the rate-limit test turns it on
	cfg.Registration.SharedSecret = "e2e-shared-secret-0123456789"
	if lvl := os.Getenv("LATTICE_E2E_LOG"); lvl != "" {
		cfg.Log.Level = lvl
	}
	for _, o := range opts {
		o(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}

	logs := &testLog{t: t}
	t.Cleanup(logs.stop) // registered first, so it runs after the server has stopped
	srv := &Server{Config: cfg, logs: logs}
	srv.Server = srv.boot(t)
	srv.URL = srv.Server.URL(config.ResourceClient)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Server.Shutdown(ctx); err != nil {
			t.Errorf("shut down lattice: %v", err)
		}
	})
	return srv
}

// boot builds and starts a server from the test's config.
func (s *Server) boot(t testing.TB) *lattice.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ls, err := lattice.New(ctx, s.Config, lattice.NewLogger(s.Config.Log, s.logs))
	if err != nil {
		t.Fatalf("start lattice: %v", err)
	}
	if err := ls.Start(); err != nil {
		ls.Shutdown(ctx)
		t.Fatalf("start lattice: %v", err)
	}
	return ls
}

// Restart stops the server gracefully and starts it again on the same address and data, as
// an operator restarting it would; clients keep working with their tokens.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Server.Shutdown(ctx); err != nil {
		t.Fatalf("shut down lattice: %v", err)
	}
	s.Config.Listeners[0].Address = strings.TrimPrefix(s.URL, "http://")
	s.Server = s.boot(t)
}

// Client returns a mautrix client for the server that is not logged in.
func (s *Server) Client(t testing.TB) *mautrix.Client {
	t.Helper()
	c, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testLog sends server logs to the test's log, shown when the test fails or runs with -v,
// and drops lines that arrive after the test is over.
type testLog struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// NewUser creates an account with password "password" directly through the user component and
// returns a mautrix client logged in on a new device. It does not depend on the HTTP
// registration and login endpoints, which have tests of their own.
func (s *Server) NewUser(t testing.TB, localpart string) *mautrix.Client {
	t.Helper()
	return s.NewAccount(t, userapi.NewAccount{Localpart: localpart, Password: "password"})
}

// NewAccount creates the account na directly through the user component and returns a mautrix
// client logged in as it on a new device.
func (s *Server) NewAccount(t testing.TB, na userapi.NewAccount) *mautrix.Client {
	t.Helper()
	ctx := context.Background()
	acc, err := s.Users().CreateAccount(ctx, na)
	if err != nil {
		t.Fatalf("create account %s: %v", na.Localpart, err)
	}
	dev, tokens, err := s.Users().CreateDevice(ctx, userapi.NewDevice{UserID: acc.UserID})
	if err != nil {
		t.Fatalf("create device for %s: %v", acc.UserID, err)
	}
	c, err := mautrix.NewClient(s.URL, acc.UserID, tokens.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	c.DeviceID = dev.DeviceID
	return c
}
