package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latticehq/lattice/internal/config"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func TestGenerateConfig(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCmd(t, "generate-config", "--server-name", "example.org", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	cfg, err := config.Parse([]byte(out), "/elsewhere", nil)
	if err != nil {
		t.Fatalf("generated config does not parse: %v", err)
	}
	if cfg.ServerName != "example.org" || cfg.SigningKey != filepath.Join(dir, "signing.key") || cfg.Database.DSN != "sqlite://"+filepath.Join(dir, "lattice.db") {
		t.Errorf("config = %+v", cfg)
	}
	_, out, _ = runCmd(t, "generate-config", "--server-name", "example.org", "--database", "postgres://u@h/db")
	if cfg, err := config.Parse([]byte(out), "/", nil); err != nil || cfg.Database.DSN != "postgres://u@h/db" {
		t.Errorf("--database not honoured: %v %+v", err, cfg)
	}
	for _, args := range [][]string{
		{"generate-config"},
		{"generate-config", "--server-name", "bad name"},
		{"generate-config", "--server-name", "a", "--database", "mysql://x"},
		{"generate-config", "--server-name", "a", "extra"},
		{"generate-config", "--nope"},
	} {
		if code, _, errs := runCmd(t, args...); code == 0 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

func TestGenerateKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if code, _, errs := runCmd(t, "generate-keys", "--out", p); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, err := config.LoadSigningKey(p); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCmd(t, "generate-keys", "--out", p); code == 0 {
		t.Error("overwrote an existing key")
	}
	if code, _, _ := runCmd(t, "generate-keys"); code == 0 {
		t.Error("accepted a missing --out")
	}
}

func TestEnsureDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	p, err := ensureDataDir(dir, "example.org", &out)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "example.org" || cfg.Listeners[0].Address != "127.0.0.1:8008" || !strings.HasPrefix(cfg.Database.DSN, "sqlite://") {
		t.Errorf("config = %+v", cfg)
	}
	key1, err := config.LoadSigningKey(cfg.Path(cfg.SigningKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ensureDataDir(dir, "", &out); err != nil {
		t.Fatal(err)
	}
	key2, _ := config.LoadSigningKey(cfg.Path(cfg.SigningKey))
	if key1.SynapseString() != key2.SynapseString() {
		t.Error("second start replaced the signing key")
	}
	if _, err := ensureDataDir(filepath.Join(t.TempDir(), "x"), "not a name", &out); err == nil {
		t.Error("accepted a bad server name")
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "lattice.yaml")
	if err := os.WriteFile(p, []byte("server_name: a\nlog:\n  levle: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd(t, "--config", p)
	if code == 0 || !strings.Contains(errs, "log.levle") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if code, _, _ := runCmd(t, "--config", p, "--server-name", "b"); code == 0 {
		t.Error("accepted --server-name with --config")
	}
	if code, _, errs := runCmd(t, "frobnicate"); code == 0 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: exit %d, %q", code, errs)
	}
	if code, out, _ := runCmd(t, "version"); code != 0 || !strings.HasPrefix(out, "lattice ") {
		t.Errorf("version: %d %q", code, out)
	}
}

// TestServeLogFileAndSIGINT starts the server with log.file set, waits until it listens (as
// told by the log file) and checks that SIGINT stops it promptly with exit code 0.
func TestServeLogFileAndSIGINT(t *testing.T) {
	dir := t.TempDir()
	key, err := config.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := config.WriteSigningKey(filepath.Join(dir, "signing.key"), key); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "lattice.yaml")
	cfg := "server_name: localhost\nlisteners:\n  - address: 127.0.0.1:0\n    resources: [client, federation]\n" +
		"log:\n  level: debug\n  file: logs/lattice.log\n"
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	var errs string
	go func() {
		code, _, e := runCmd(t, "--config", p)
		errs = e
		done <- code
	}()
	logPath := filepath.Join(dir, "logs", "lattice.log")
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(logPath)
		if strings.Contains(string(data), "listening") {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("server exited with %d before listening: %s", code, errs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no 'listening' line in the log file")
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after SIGINT: %s", code, errs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGINT")
	}
	if strings.Contains(errs, "listening") {
		t.Errorf("logs went to stderr too: %q", errs)
	}
	data, _ := os.ReadFile(logPath)
	if !strings.Contains(string(data), "stopped") {
		t.Errorf("log file lacks the shutdown: %q", data)
	}
}
