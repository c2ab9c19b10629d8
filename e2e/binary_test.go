package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"
	"maunium.net/go/mautrix"

	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds cmd/lattice once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "lattice-e2e-bin")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "lattice")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/latticehq/lattice/cmd/lattice").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build lattice: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type process struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

func startBinary(t *testing.T, dir string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(binary(t), args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = append(os.Environ(), config.EnvDatabase+"=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
		}
	})
	return p
}

// waitFor polls cond until it holds, the process exits or the deadline passes.
func (p *process) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("lattice exited (%v) while waiting for %s", err, what)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
	if !strings.Contains(p.stderr.String(), "stopped") {
		t.Errorf("no graceful shutdown logged")
	}
}

func get200(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// TestFirstRun runs `lattice` with no arguments, as the README says, in an empty folder. It
// needs the default port, so it cannot run where something else holds 127.0.0.1:8008.
func TestFirstRun(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.1:8008"); err != nil {
		t.Skipf("the default port 127.0.0.1:8008 is taken on this machine (%v)", err)
	} else {
		ln.Close()
	}
	dir := t.TempDir()
	p := startBinary(t, dir)
	p.waitFor(t, "versions on 127.0.0.1:8008", func() bool { return get200("http://127.0.0.1:8008/_matrix/client/versions") })
	for _, f := range []string{"lattice.yaml", "signing.key", "lattice.db"} {
		if _, err := os.Stat(filepath.Join(dir, "lattice-data", f)); err != nil {
			t.Errorf("lattice-data/%s: %v", f, err)
		}
	}
	out := p.stdout.String()
	for _, want := range []string{"Created lattice-data", "http://127.0.0.1:8008", "lattice create-account --config lattice-data/lattice.yaml --username NAME --admin", "registration is open"} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up output lacks %q:\n%s", want, out)
		}
	}
	p.stop(t)

	// A second start keeps the config and key.
	key, err := os.ReadFile(filepath.Join(dir, "lattice-data", "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	p = startBinary(t, dir)
	p.waitFor(t, "second start", func() bool { return get200("http://127.0.0.1:8008/_matrix/client/versions") })
	if strings.Contains(p.stdout.String(), "Created") {
		t.Error("second start created the data folder again")
	}
	p.stop(t)
	if key2, _ := os.ReadFile(filepath.Join(dir, "lattice-data", "signing.key")); !bytes.Equal(key, key2) {
		t.Error("second start replaced the signing key")
	}
}

// TestConfigFile runs `lattice --config` with a generated config on this run's engine and
// checks that an empty database is migrated.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	dsn := storagetest.DSN(t, Engine(t))
	gen := exec.Command(binary(t), "generate-config", "--server-name", "example.test", "--data-dir", dir, "--database", dsn)
	out, err := gen.Output()
	if err != nil {
		t.Fatalf("generate-config: %v", err)
	}
	cfg, err := config.Parse(out, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listeners[0].Address = "127.0.0.1:0" // any free port; the banner tells which
	out, err = config.Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "lattice.yaml")
	if err := os.WriteFile(cfgPath, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary(t), "generate-keys", "--out", cfg.SigningKey).CombinedOutput(); err != nil {
		t.Fatalf("generate-keys: %v %s", err, out)
	}

	// The first account comes from the command line, its password from standard input.
	create := exec.Command(binary(t), "create-account", "--config", cfgPath, "--username", "admin", "--admin")
	create.Stdin = strings.NewReader("first-password\n")
	if out, err := create.CombinedOutput(); err != nil || !strings.Contains(string(out), "@admin:example.test") {
		t.Fatalf("create-account: %v %s", err, out)
	}
	if out, err := exec.Command(binary(t), "create-account", "--config", cfgPath, "--username", "admin", "--password", "x").CombinedOutput(); err == nil {
		t.Errorf("create-account of an existing user succeeded: %s", out)
	}

	urlRE := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	run := func() (*process, string) {
		p := startBinary(t, dir, "--config", cfgPath)
		p.waitFor(t, "the banner", func() bool { return urlRE.MatchString(p.stdout.String()) })
		base := urlRE.FindString(p.stdout.String())
		p.waitFor(t, "versions", func() bool { return get200(base + "/_matrix/client/versions") })
		return p, base
	}
	loginStatus := func(base, password string) int {
		body := `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"admin"},"password":"` + password + `"}`
		status, _, _ := do(t, "POST", base+"/_matrix/client/v3/login", []byte(body))
		return status
	}
	p, base := run()
	if !strings.Contains(p.stdout.String(), "database: "+string(Engine(t))) {
		t.Errorf("banner does not name the %s engine:\n%s", Engine(t), p.stdout)
	}
	if st := loginStatus(base, "first-password"); st != 200 {
		t.Errorf("login with the created account: %d", st)
	}
	p.stop(t)

	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("second-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary(t), "reset-password", "--config", cfgPath, "--username", "@admin:example.test", "--password-file", pwFile).CombinedOutput(); err != nil {
		t.Fatalf("reset-password: %v %s", err, out)
	}
	p, base = run()
	if st := loginStatus(base, "first-password"); st != 403 {
		t.Errorf("old password after reset: %d", st)
	}
	if st := loginStatus(base, "second-password"); st != 200 {
		t.Errorf("new password after reset: %d", st)
	}
	p.stop(t)

	// Look at the database with the bare driver: Open would migrate it itself.
	driver, src := "pgx", dsn
	if Engine(t) == storage.EngineSQLite {
		driver, src = "sqlite3", strings.TrimPrefix(dsn, "sqlite://")
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM lattice_migrations").Scan(&n); err != nil || n == 0 {
		t.Errorf("database not migrated: %d rows, %v", n, err)
	}
}

// binaryServer writes the config of a server on a fresh database in a temporary folder and
// returns a function that starts the built binary on it and waits until it answers, with its
// base URL: for tests that kill the process and start it again on the same data. opts change
// the config before it is written.
func binaryServer(t *testing.T, opts ...Option) func() (*process, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default("example.test")
	cfg.Dir = dir
	cfg.Database.DSN = storagetest.DSN(t, Engine(t))
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.Registration.BcryptCost = 4
	cfg.RateLimits.Enabled = false
	for _, o := range opts {
		o(cfg)
	}
	out, err := config.Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "lattice.yaml")
	if err := os.WriteFile(cfgPath, out, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := config.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := config.WriteSigningKey(cfg.Path(cfg.SigningKey), key); err != nil {
		t.Fatal(err)
	}
	urlRE := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	return func() (*process, string) {
		p := startBinary(t, dir, "--config", cfgPath)
		p.waitFor(t, "the banner", func() bool { return urlRE.MatchString(p.stdout.String()) })
		base := urlRE.FindString(p.stdout.String())
		p.waitFor(t, "versions", func() bool { return get200(base + "/_matrix/client/versions") })
		return p, base
	}
}

// registerAt registers user with the dummy stage on the server at base and returns its client.
func registerAt(t *testing.T, base, user string) *mautrix.Client {
	t.Helper()
	c, err := mautrix.NewClient(base, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: user, Password: "password-" + user})
	if err != nil {
		t.Fatalf("register %s: %v", user, err)
	}
	c.UserID, c.AccessToken, c.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return c
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.done <- <-p.done // keep the exit for the cleanup's wait
}

// pointAt makes clients talk to the server at base (a restarted binary listens elsewhere).
func pointAt(t *testing.T, base string, clients ...*mautrix.Client) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.HomeserverURL = u
	}
}
