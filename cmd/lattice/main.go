// Command lattice runs the Lattice Matrix homeserver and its chores.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/latticehq/lattice"
	"github.com/latticehq/lattice/internal/config"
)

const usage = `Lattice %s, a Matrix homeserver.

Usage:
  lattice [--config FILE | --data-dir DIR --server-name NAME]
      Run the server. Without --config it uses DIR/lattice.yaml (DIR defaults to ./lattice-data),
      creating the folder, a default config and a signing key on first start.
  lattice generate-config --server-name NAME [--data-dir DIR] [--database DSN]
      Print a complete, commented config file.
  lattice generate-keys --out FILE
      Write a new ed25519 signing key to FILE.
  lattice create-account [--config FILE] --username NAME [--password P | --password-file F] [--admin]
      Create an account in the server's database (the password is read from standard input
      when neither flag is given).
  lattice reset-password [--config FILE] --username NAME [--password P | --password-file F] [--keep-devices]
      Set a new password and log the account's devices out.
  lattice version
      Print the version.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// run carries out one command line and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var err error
	cmd := ""
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "":
		err = serve(args, stdout, stderr, getenv)
	case "generate-config":
		err = generateConfig(args, stdout, stderr)
	case "generate-keys":
		err = generateKeys(args, stdout, stderr)
	case "create-account":
		err = createAccount(args, stdin, stdout, stderr, getenv)
	case "reset-password":
		err = resetPassword(args, stdin, stdout, stderr, getenv)
	case "version":
		fmt.Fprintln(stdout, "lattice", lattice.Version)
	case "help":
		fmt.Fprintf(stdout, usage, lattice.Version)
	default:
		err = fmt.Errorf("unknown command %q (see 'lattice help')", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "lattice:", err)
		return 1
	}
	return 0
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, usage, lattice.Version) }
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func serve(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("lattice", stderr)
	configPath := fs.String("config", "", "config file")
	dataDir := fs.String("data-dir", "lattice-data", "data folder used when --config is not given")
	serverName := fs.String("server-name", "", "server name for a newly created config (default localhost)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *configPath == "" {
		p, err := ensureDataDir(*dataDir, *serverName, stdout)
		if err != nil {
			return err
		}
		*configPath = p
	} else if *serverName != "" {
		return errors.New("--server-name applies only without --config; set server_name in the config file")
	}
	cfg, err := config.Load(*configPath, getenv)
	if err != nil {
		return err
	}
	if *serverName != "" && cfg.ServerName != *serverName {
		return fmt.Errorf("%s already has server_name %q; a server name cannot be changed once chosen", *configPath, cfg.ServerName)
	}
	logOut := stderr
	if cfg.Log.File != "" {
		f, err := openLogFile(cfg.Path(cfg.Log.File))
		if err != nil {
			return err
		}
		defer f.Close()
		logOut = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return lattice.Run(ctx, cfg, lattice.NewLogger(cfg.Log, logOut), stdout)
}

// openLogFile opens the log.file of the config for appending, creating it and its folder.
func openLogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create folder for log.file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log.file: %w", err)
	}
	return f, nil
}

// ensureDataDir creates dir with a default config and a signing key unless its config exists,
// and returns the config's path.
func ensureDataDir(dir, serverName string, stdout io.Writer) (string, error) {
	path := filepath.Join(dir, "lattice.yaml")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if serverName == "" {
		serverName = "localhost"
	}
	cfg := config.Default(serverName)
	cfg.Dir = dir
	cfg.Registration.SharedSecret = config.NewSharedSecret()
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create data folder: %w", err)
	}
	keyPath := cfg.Path(cfg.SigningKey)
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		key, err := config.GenerateSigningKey()
		if err != nil {
			return "", err
		}
		if err := config.WriteSigningKey(keyPath, key); err != nil {
			return "", err
		}
	}
	data, err := config.Generate(cfg)
	if err != nil {
		return "", err
	}
	// Write the config last and atomically: its presence means the folder is complete.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return "", fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write config: %w", err)
	}
	fmt.Fprintf(stdout, "Created %s with a default config (server name %s), a signing key and an SQLite database.\n", dir, serverName)
	return path, nil
}

func generateConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate-config", stderr)
	serverName := fs.String("server-name", "", "the server name (required)")
	dataDir := fs.String("data-dir", "lattice-data", "folder for the signing key and SQLite database")
	dsn := fs.String("database", "", "database DSN (default: SQLite in the data folder)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *serverName == "" {
		return errors.New("generate-config needs --server-name")
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	// The output may be saved anywhere, so its paths are absolute.
	cfg := config.Default(*serverName)
	cfg.SigningKey = filepath.Join(dir, "signing.key")
	cfg.Database.DSN = "sqlite://" + filepath.Join(dir, "lattice.db")
	cfg.Registration.SharedSecret = config.NewSharedSecret()
	if *dsn != "" {
		cfg.Database.DSN = *dsn
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	data, err := config.Generate(cfg)
	if err != nil {
		return err
	}
	_, err = stdout.Write(data)
	return err
}

func generateKeys(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate-keys", stderr)
	out := fs.String("out", "", "file to write the key to (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("generate-keys needs --out FILE")
	}
	key, err := config.GenerateSigningKey()
	if err != nil {
		return err
	}
	if err := config.WriteSigningKey(*out, key); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wrote signing key %s to %s\n", key.ID, *out)
	return nil
}
