package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestGenerateRoundTrip(t *testing.T) {
	full := Default("example.org")
	full.Dir = "/srv/lattice"
	full.Database = Database{DSN: "postgres://u:p@db:5432/lattice?sslmode=disable", MaxOpenConns: 3, MaxIdleConns: 2, ConnMaxLifetime: time.Hour}
	full.Listeners = []Listen{
		{Address: "0.0.0.0:8008", Resources: []string{ResourceClient}},
		{Address: "[::]:8448", Resources: []string{ResourceFederation}, TLSCert: "tls.crt", TLSKey: "tls.key"},
	}
	full.Metrics.Address = "127.0.0.1:9090"
	full.WellKnown = WellKnown{ClientBaseURL: "https://matrix.example.org", Server: "matrix.example.org:443"}
	full.Log = Log{Level: "debug", Format: "json"}
	full.Registration = Registration{Open: Off, Guests: true, SharedSecret: NewSharedSecret(), BcryptCost: 10,
		AccessTokenLifetime: 5 * time.Minute, RefreshTokenLifetime: 720 * time.Hour, LoginTokenLifetime: time.Minute}
	full.RateLimits = RateLimits{Enabled: false, Login: Rate{PerSecond: 1.5, Burst: 2}, Register: Rate{PerSecond: 0.01, Burst: 1}, Message: Rate{PerSecond: 3, Burst: 7}}
	weird := Default("localhost")
	weird.Dir = "/x"
	weird.SigningKey = `odd "name": #1.key`

	for name, want := range map[string]*Config{"default": func() *Config { c := Default("localhost"); c.Dir = "/d"; return c }(), "full": full, "quoting": weird} {
		t.Run(name, func(t *testing.T) {
			out, err := Generate(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(out, want.Dir, noEnv)
			if err != nil {
				t.Fatalf("parse generated config: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestGeneratedConfigDocumentsEveryKey(t *testing.T) {
	out, err := Generate(Default("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(reflect.Type)
	walk = func(tp reflect.Type) {
		for i := range tp.NumField() {
			f := tp.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "-" {
				continue
			}
			if !strings.Contains(string(out), tag+":") {
				t.Errorf("generated config lacks %q", tag)
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
}

func TestParseErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"server_name: a\nbogus: 1\n", "bogus"},
		{"server_name: a\ndatabase:\n  dns: x\n", "database.dns"},
		{"server_name: a\ndatabase:\n  max_open_conns: many\n", "database.max_open_conns"},
		{"server_name: a\ndatabase:\n  max_open_conns: -1\n", "database.max_open_conns"},
		{"server_name: a\ndatabase:\n  conn_max_lifetime: 10\n", "database.conn_max_lifetime"},
		{"server_name: a\ndatabase:\n  dsn: mysql://x\n", "database.dsn"},
		{"server_name: a\nlisteners:\n  - address: 127.0.0.1:8008\n    resources: [client]\n    port: 1\n", "listeners[0].port"},
		{"server_name: a\nlisteners:\n  - address: nowhere\n    resources: [client]\n", "listeners[0].address"},
		{"server_name: a\nlisteners:\n  - address: 127.0.0.1:1\n    resources: [media]\n", "listeners[0].resources"},
		{"server_name: a\nlisteners:\n  - address: 127.0.0.1:1\n    resources: [client]\n    tls_cert: c\n", "listeners[0].tls_cert"},
		{"server_name: a\nlisteners: {}\n", "listeners"},
		{"server_name: a\nlisteners: []\n", "listeners"},
		{"server_name: a\nlog:\n  level: loud\n", "log.level"},
		{"server_name: a\nlog:\n  format: xml\n", "log.format"},
		{"server_name: a\nlog: quiet\n", "log"},
		{"server_name: a\nserver_name: b\n", "server_name"},
		{"server_name: [a]\n", "server_name"},
		{"server_name: 'bad name!'\n", "server_name"},
		{"log:\n  level: info\n", "server_name"},
		{"server_name: a\nwell_known:\n  client_base_url: ftp://x\n", "well_known.client_base_url"},
		{"server_name: a\nwell_known:\n  server: 'a b'\n", "well_known.server"},
		{"server_name: a\nmetrics:\n  address: 127.0.0.1:8008\n", "metrics.address"},
		{"server_name: a\nlisteners:\n  - address: 127.0.0.1:1\n    resources: [client]\n  - address: 127.0.0.1:1\n    resources: [federation]\n", "listeners[1].address"},
		{"- a\n- b\n", "(top level)"},
		{"server_name: a\nregistration:\n  open: maybe\n", "registration.open"},
		{"server_name: a\nregistration:\n  bcrypt_cost: 3\n", "registration.bcrypt_cost"},
		{"server_name: a\nregistration:\n  shared_secret: short\n", "registration.shared_secret"},
		{"server_name: a\nregistration:\n  access_token_lifetime: 500ms\n", "registration.access_token_lifetime"},
		{"server_name: a\nregistration:\n  refresh_token_lifetime: 1h\n", "registration.refresh_token_lifetime"},
		{"server_name: a\nrate_limits:\n  login: {per_second: 0, burst: 1}\n", "rate_limits.login.per_second"},
		{"server_name: a\nrate_limits:\n  register: {per_second: 1, burst: 0}\n", "rate_limits.register.burst"},
	} {
		_, err := Parse([]byte(tc.yaml), "/d", noEnv)
		if err == nil {
			t.Errorf("%q: accepted", tc.yaml)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.key+": ") {
			t.Errorf("%q: error %q does not start with the key %q", tc.yaml, err, tc.key)
		}
	}
	if _, err := Parse([]byte("server_name: a\nlisteners:\n  - {address: '127.0.0.1:0', resources: [client]}\n  - {address: '127.0.0.1:0', resources: [federation]}\nmetrics: {address: '127.0.0.1:0'}\n"), "/d", noEnv); err != nil {
		t.Errorf("port 0 on several listeners refused: %v", err)
	}
	if _, err := Parse([]byte("server_name: a\n\tx"), "/d", noEnv); err == nil {
		t.Error("invalid YAML accepted")
	}
}

func TestParseKeepsDefaultsAndAppliesEnv(t *testing.T) {
	cfg, err := Parse([]byte("server_name: example.org\nwell_known:\nlog:\n  level: warn\n"), "/d", func(k string) string {
		if k == EnvDatabase {
			return "postgres://x/y"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Default("example.org")
	want.Dir = "/d"
	want.Log.Level = "warn"
	want.Database.DSN = "postgres://x/y"
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v, want %+v", cfg, want)
	}
	if got := cfg.Path("signing.key"); got != "/d/signing.key" {
		t.Errorf("Path = %q", got)
	}
	if got := cfg.Path("/abs/k"); got != "/abs/k" {
		t.Errorf("Path(abs) = %q", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "lattice.yaml")
	if _, err := Load(p, noEnv); err == nil {
		t.Fatal("missing file accepted")
	}
	if err := os.WriteFile(p, []byte("server_name: example.org\nnope: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, noEnv); err == nil || !strings.Contains(err.Error(), "nope: line 2: unknown key") {
		t.Fatalf("err = %v", err)
	}
	if err := os.WriteFile(p, []byte("server_name: example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != p {
		t.Errorf("File = %q, want %q", cfg.File, p)
	}
	if cfg.Dir != dir {
		t.Errorf("Dir = %q, want %q", cfg.Dir, dir)
	}
}

func TestOpenRegistration(t *testing.T) {
	for _, tc := range []struct {
		open Toggle
		addr string
		want bool
	}{{Auto, "127.0.0.1:8008", true}, {Auto, "0.0.0.0:8008", false}, {On, "0.0.0.0:8008", true}, {Off, "127.0.0.1:8008", false}} {
		c := Default("x")
		c.Registration.Open = tc.open
		c.Listeners[0].Address = tc.addr
		if got := c.OpenRegistration(); got != tc.want {
			t.Errorf("open=%s on %s: %v", tc.open, tc.addr, got)
		}
	}
}

func TestOnlyLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8008": true, "[::1]:8008": true, "localhost:1": true, "0.0.0.0:8008": false, ":8008": false, "192.0.2.1:80": false} {
		c := Default("x")
		c.Listeners[0].Address = addr
		if got := c.OnlyLoopback(); got != want {
			t.Errorf("%s: OnlyLoopback = %v", addr, got)
		}
	}
}

func TestSigningKeyFile(t *testing.T) {
	key, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	_, version := key.ID.Parse()
	if !strings.HasPrefix(version, "a_") || len(version) != 6 || strings.ContainsAny(version, "-+/=") {
		t.Errorf("key version %q", version)
	}
	p := filepath.Join(t.TempDir(), "sub", "signing.key")
	if err := WriteSigningKey(p, key); err != nil {
		t.Fatal(err)
	}
	if err := WriteSigningKey(p, key); err == nil {
		t.Error("overwrote an existing key")
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, %v", st.Mode(), err)
	}
	got, err := LoadSigningKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != key.ID || got.Pub != key.Pub || !got.Priv.Equal(key.Priv) {
		t.Errorf("loaded key differs")
	}
	padded, err := ParseSigningKey(key.SynapseString() + "=\n")
	if err != nil || padded.Pub != key.Pub {
		t.Errorf("padded seed: %v", err)
	}
	for _, bad := range []string{"", "ed25519 a_1", "curve25519 a_1 AAAA", "ed25519 a-1 " + strings.Repeat("A", 43), "ed25519 a_1 AAAA", "ed25519 a_1 !!!!"} {
		if _, err := ParseSigningKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
