package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice"
	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/userapi"
)

// accountFlags are the flags shared by create-account and reset-password.
type accountFlags struct {
	config, username, password, passwordFile *string
}

func newAccountFlags(fs *flag.FlagSet) accountFlags {
	return accountFlags{
		config:       fs.String("config", "lattice-data/lattice.yaml", "config file"),
		username:     fs.String("username", "", "localpart or user ID (required)"),
		password:     fs.String("password", "", "the password (visible to other local users; prefer --password-file or standard input)"),
		passwordFile: fs.String("password-file", "", "read the password from the first line of this file"),
	}
}

// readPassword takes the password from --password, --password-file or a line of stdin.
func (f accountFlags) readPassword(stdin io.Reader) (string, error) {
	if *f.password != "" && *f.passwordFile != "" {
		return "", errors.New("give --password or --password-file, not both")
	}
	pw := *f.password
	if *f.passwordFile != "" {
		data, err := os.ReadFile(*f.passwordFile)
		if err != nil {
			return "", err
		}
		pw, _, _ = strings.Cut(string(data), "\n")
	} else if pw == "" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", errors.New("no password: use --password-file or write it to standard input")
		}
		pw = line
	}
	pw = strings.TrimRight(pw, "\r\n")
	if pw == "" {
		return "", errors.New("the password is empty")
	}
	return pw, nil
}

// account is what an account command works with: the config, the user component of the
// server's database and the localpart the command is about.
type account struct {
	cfg       *config.Config
	users     userapi.API
	localpart string
	close     func() error
}

// parseAndOpen parses the command's flags, then opens as open does.
func (f accountFlags) parseAndOpen(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string) (*account, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	return f.open(ctx, getenv)
}

// open loads the config, resolves --username and opens the user component.
func (f accountFlags) open(ctx context.Context, getenv func(string) string) (*account, error) {
	if *f.username == "" {
		return nil, errors.New("--username is required")
	}
	cfg, err := config.Load(*f.config, getenv)
	if err != nil {
		return nil, err
	}
	lp, err := localpart(cfg, *f.username)
	if err != nil {
		return nil, err
	}
	users, closeFn, err := lattice.OpenUsers(ctx, cfg, lattice.NewLogger(config.Log{Level: "warn", Format: cfg.Log.Format}, os.Stderr))
	if err != nil {
		return nil, err
	}
	return &account{cfg: cfg, users: users, localpart: lp, close: closeFn}, nil
}

// localpart accepts a bare localpart or a user ID of this server.
func localpart(cfg *config.Config, name string) (string, error) {
	if !strings.HasPrefix(name, "@") {
		return name, nil
	}
	lp, server, err := id.UserID(name).Parse()
	if err != nil || server != cfg.ServerName {
		return "", fmt.Errorf("%s is not a user ID of %s", name, cfg.ServerName)
	}
	return lp, nil
}

func createAccount(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("create-account", stderr)
	f := newAccountFlags(fs)
	admin := fs.Bool("admin", false, "make the account a server admin")
	ctx := context.Background()
	a, err := f.parseAndOpen(ctx, fs, args, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	pw, err := f.readPassword(stdin)
	if err != nil {
		return err
	}
	acc, err := a.users.CreateAccount(ctx, userapi.NewAccount{Localpart: a.localpart, Password: pw, Admin: *admin})
	if errors.Is(err, userapi.ErrUserInUse) {
		return fmt.Errorf("@%s:%s already exists", a.localpart, a.cfg.ServerName)
	} else if err != nil {
		return err
	}
	kind := "account"
	if *admin {
		kind = "admin account"
	}
	fmt.Fprintf(stdout, "Created %s %s\n", kind, acc.UserID)
	return nil
}

func resetPassword(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("reset-password", stderr)
	f := newAccountFlags(fs)
	keep := fs.Bool("keep-devices", false, "keep the account's devices logged in")
	ctx := context.Background()
	a, err := f.parseAndOpen(ctx, fs, args, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	acc, err := a.users.LookupLocalpart(ctx, a.localpart)
	if errors.Is(err, userapi.ErrNotFound) {
		return fmt.Errorf("no account @%s:%s", a.localpart, a.cfg.ServerName)
	} else if err != nil {
		return err
	}
	if acc.Deactivated {
		return fmt.Errorf("%s is deactivated", acc.UserID)
	}
	pw, err := f.readPassword(stdin)
	if err != nil {
		return err
	}
	if err := a.users.SetPassword(ctx, acc.UserID, pw, !*keep, ""); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Changed the password of %s\n", acc.UserID)
	return nil
}
