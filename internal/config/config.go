// Package config holds Lattice's configuration: its YAML shape, defaults, validation and the
// generated, commented config file.
package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/federation"
)

// EnvDatabase names the environment variable that overrides database.dsn.
const EnvDatabase = "LATTICE_DATABASE"

// Resources a listener can serve.
const (
	ResourceClient     = "client"
	ResourceFederation = "federation"
)

// Config is the whole configuration of one Lattice server.
type Config struct {
	ServerName   string       `yaml:"server_name"`
	SigningKey   string       `yaml:"signing_key"`
	Database     Database     `yaml:"database"`
	Listeners    []Listen     `yaml:"listeners"`
	Metrics      Metrics      `yaml:"metrics"`
	WellKnown    WellKnown    `yaml:"well_known"`
	Registration Registration `yaml:"registration"`
	RateLimits   RateLimits   `yaml:"rate_limits"`
	UserDir      UserDir      `yaml:"user_directory"`
	Presence     Presence     `yaml:"presence"`
	Media        Media        `yaml:"media"`
	Push         Push         `yaml:"push"`
	Outbound     Outbound     `yaml:"outbound"`
	Log          Log          `yaml:"log"`

	// Dir is the folder relative paths are resolved against: the config file's folder.
	Dir string `yaml:"-"`
	// File is the config file's path as given, when loaded from a file.
	File string `yaml:"-"`
}

// Database configures the storage engine.
type Database struct {
	DSN             string        `yaml:"dsn"`
	MaxOpenConns    int           `yaml:"max_open_conns"`
	MaxIdleConns    int           `yaml:"max_idle_conns"`
	ConnMaxLifetime time.Duration `yaml:"conn_max_lifetime"`
}

// Listen is one HTTP listener and the APIs it serves.
type Listen struct {
	Address   string   `yaml:"address"`
	Resources []string `yaml:"resources"`
	TLSCert   string   `yaml:"tls_cert"`
	TLSKey    string   `yaml:"tls_key"`
}

// Metrics configures the optional Prometheus listener.
type Metrics struct {
	Address string `yaml:"address"`
}

// WellKnown configures the /.well-known/matrix/* answers.
type WellKnown struct {
	ClientBaseURL string `yaml:"client_base_url"`
	Server        string `yaml:"server"`
}

// UserDir configures the user directory (POST /user_directory/search).
type UserDir struct {
	SearchAllUsers bool `yaml:"search_all_users"`
}

// Presence configures presence (online/unavailable/offline and status messages).
type Presence struct {
	Enabled bool `yaml:"enabled"`
}

// Outbound configures the HTTP requests Lattice makes (push gateways, URL previews).
type Outbound struct {
	// CAFiles are PEM files of certificate authorities trusted besides the system's.
	CAFiles []string `yaml:"ca_files"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
	// File, when set, receives the logs instead of standard error.
	File string `yaml:"file"`
}

// Default returns the configuration used when a value is not given. Its database is an SQLite
// file next to the config file.
func Default(serverName string) *Config {
	return &Config{
		ServerName: serverName,
		SigningKey: "signing.key",
		Database: Database{
			DSN:          "sqlite://lattice.db",
			MaxOpenConns: 10,
		},
		Listeners: []Listen{{
			Address:   "127.0.0.1:8008",
			Resources: []string{ResourceClient, ResourceFederation},
		}},
		Registration: defaultRegistration(),
		RateLimits:   defaultRateLimits(),
		Presence:     Presence{Enabled: true},
		Media:        defaultMedia(),
		Push:         defaultPush(),
		Outbound:     Outbound{CAFiles: []string{}},
		Log:          Log{Level: "info", Format: "text"},
	}
}

// Path resolves a path from the config against the config file's folder.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Dir == "" {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// OnlyLoopback reports whether every listener binds a loopback address: a local trial.
func (c *Config) OnlyLoopback() bool {
	for _, l := range c.Listeners {
		host, _, err := net.SplitHostPort(l.Address)
		if err != nil {
			return false
		}
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return len(c.Listeners) > 0
}

// Validate checks every value and names the offending key in its error.
func (c *Config) Validate() error {
	if c.ServerName == "" {
		return keyErr("server_name", "must be set")
	}
	if _, _, ok := federation.ParseServerName(c.ServerName); !ok {
		return keyErr("server_name", "%q is not a valid server name (hostname or IP literal, optional :port)", c.ServerName)
	}
	if c.SigningKey == "" {
		return keyErr("signing_key", "must be set")
	}
	if err := c.Database.validate(); err != nil {
		return err
	}
	if len(c.Listeners) == 0 {
		return keyErr("listeners", "at least one listener is needed")
	}
	seen := map[string]bool{}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("listeners[%d]", i)
		if err := validAddress(l.Address); err != nil {
			return keyErr(key+".address", "%v", err)
		}
		if seen[l.Address] {
			return keyErr(key+".address", "%q is used by two listeners", l.Address)
		}
		if !strings.HasSuffix(l.Address, ":0") { // port 0 picks a free port each time
			seen[l.Address] = true
		}
		if len(l.Resources) == 0 {
			return keyErr(key+".resources", "name at least one of %s, %s", ResourceClient, ResourceFederation)
		}
		for _, r := range l.Resources {
			if r != ResourceClient && r != ResourceFederation {
				return keyErr(key+".resources", "unknown resource %q (want %s or %s)", r, ResourceClient, ResourceFederation)
			}
		}
		if (l.TLSCert == "") != (l.TLSKey == "") {
			return keyErr(key+".tls_cert", "tls_cert and tls_key go together")
		}
	}
	if c.Metrics.Address != "" {
		if err := validAddress(c.Metrics.Address); err != nil {
			return keyErr("metrics.address", "%v", err)
		}
		if seen[c.Metrics.Address] {
			return keyErr("metrics.address", "%q is also a listener's address", c.Metrics.Address)
		}
	}
	if u := c.WellKnown.ClientBaseURL; u != "" {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return keyErr("well_known.client_base_url", "%q is not an http(s) URL", u)
		}
	}
	if s := c.WellKnown.Server; s != "" {
		if _, _, ok := federation.ParseServerName(s); !ok {
			return keyErr("well_known.server", "%q is not a valid server name", s)
		}
	}
	if err := c.Registration.validate(); err != nil {
		return err
	}
	if err := c.RateLimits.validate(); err != nil {
		return err
	}
	if err := c.Media.validate(); err != nil {
		return err
	}
	if err := c.Push.validate(); err != nil {
		return err
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		return keyErr("log.level", "must be one of debug, info, warn, error (got %q)", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return keyErr("log.format", "must be text or json (got %q)", c.Log.Format)
	}
	return nil
}

func (d *Database) validate() error {
	if d.DSN == "" {
		return keyErr("database.dsn", "must be set")
	}
	ok := false
	for _, p := range []string{"sqlite://", "file:", "postgres://", "postgresql://"} {
		ok = ok || strings.HasPrefix(d.DSN, p)
	}
	if !ok {
		return keyErr("database.dsn", "must start with sqlite://, file:, postgres:// or postgresql://")
	}
	if d.MaxOpenConns < 0 {
		return keyErr("database.max_open_conns", "must not be negative")
	}
	if d.MaxIdleConns < 0 {
		return keyErr("database.max_idle_conns", "must not be negative")
	}
	if d.ConnMaxLifetime < 0 {
		return keyErr("database.conn_max_lifetime", "must not be negative")
	}
	return nil
}

func validAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return fmt.Errorf("%q: host must be an IP address or localhost", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: bad port", addr)
	}
	return nil
}

// KeyError is a configuration error about one key.
type KeyError struct {
	Key string
	Msg string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Msg }

func keyErr(key, format string, args ...any) error {
	return &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
}
