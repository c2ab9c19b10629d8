package config

import (
	"bytes"
	"strconv"
	"text/template"
)

// Generate renders cfg as a complete YAML config file in which every option is documented with
// its default. Parsing the output gives back cfg.
func Generate(cfg *Config) ([]byte, error) {
	var buf bytes.Buffer
	if err := configTemplate.Execute(&buf, cfg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// yamlString quotes a string for YAML so that any value survives the round trip.
func yamlString(s string) string { return strconv.Quote(s) }

// configTemplate is the whole file; sections kept next to their options (media, push) are
// parsed into it as named templates.
var configTemplate = newConfigTemplate()

func newConfigTemplate() *template.Template {
	t := template.Must(template.New("config").Funcs(template.FuncMap{"q": yamlString}).Parse(mainTemplate))
	template.Must(t.New("media").Parse(mediaTemplate))
	template.Must(t.New("push").Parse(pushTemplate))
	return t
}

const mainTemplate = `# Lattice configuration.
#
# Every option is listed with its default. Relative paths are resolved against the folder that
# holds this file. Unknown keys and invalid values stop the server at start-up with a message
# that names the key.

# The server's name: the part after the colon in user IDs (@alice:example.org) and room aliases.
# It cannot be changed once users and rooms exist. Default: localhost.
server_name: {{q .ServerName}}

# The ed25519 key this server signs events and federation requests with, in the usual
# "ed25519 <version> <base64 seed>" form. Create one with 'lattice generate-keys --out FILE'.
# Default: signing.key
signing_key: {{q .SigningKey}}

database:
  # Where data lives. sqlite:///absolute/path.db or sqlite://relative.db (relative to this file)
  # for embedded SQLite; postgres://user:password@host:5432/db?sslmode=disable for PostgreSQL,
  # which is needed to run components as separate processes. The environment variable
  # LATTICE_DATABASE overrides this value. Default: sqlite://lattice.db
  dsn: {{q .Database.DSN}}
  # Largest number of open connections (PostgreSQL; on SQLite the size of the read pool, as
  # SQLite always writes through one connection). Default: 10
  max_open_conns: {{.Database.MaxOpenConns}}
  # Idle connections kept open; 0 means as many as max_open_conns. Default: 0
  max_idle_conns: {{.Database.MaxIdleConns}}
  # Close connections older than this (e.g. 1h); 0 keeps them. Default: 0s
  conn_max_lifetime: {{.Database.ConnMaxLifetime}}

# HTTP listeners. Each serves some of the resources:
#   client      the client-server API (/_matrix/client), /.well-known/matrix/client and the landing page
#   federation  the server-server API (/_matrix/federation, /_matrix/key) and /.well-known/matrix/server
# tls_cert and tls_key (PEM files) turn on HTTPS for that listener; both or neither.
# Default: one listener on 127.0.0.1:8008 serving client and federation without TLS.
listeners:
{{- range .Listeners}}
  - address: {{q .Address}}
    resources: [{{range $i, $r := .Resources}}{{if $i}}, {{end}}{{$r}}{{end}}]
    tls_cert: {{q .TLSCert}}
    tls_key: {{q .TLSKey}}
{{- end}}

metrics:
  # Address of a separate listener that serves Prometheus metrics at /metrics; empty turns it
  # off. Keep it private (e.g. 127.0.0.1:9090). Default: "" (off)
  address: {{q .Metrics.Address}}

well_known:
  # Answer of /.well-known/matrix/client: the URL clients should use for this server, such as
  # https://matrix.example.org. Empty answers 404, so clients use the server name. Default: ""
  client_base_url: {{q .WellKnown.ClientBaseURL}}
  # Answer of /.well-known/matrix/server: host[:port] that other servers should use for
  # federation, such as matrix.example.org:443. Empty answers 404. Default: ""
  server: {{q .WellKnown.Server}}

registration:
  # Whether anyone may create an account (with the m.login.dummy stage). auto: only while
  # every listener is on a loopback address, i.e. a local trial; true or false otherwise.
  # When closed, accounts come from admins, registration tokens or the shared secret.
  # Default: auto
  open: {{.Registration.Open}}
  # Allow guest accounts (POST /register?kind=guest). Default: false
  guests: {{.Registration.Guests}}
  # Secret for shared-secret registration (GET/POST /_synapse/admin/v1/register), as used by
  # admin tools. Empty turns it off; otherwise at least 8 characters (generated configs have a
  # long random one). Keep it private. Default: "" (generated configs have one)
  shared_secret: {{q .Registration.SharedSecret}}
  # bcrypt cost of stored password hashes (4-31). Default: 12
  bcrypt_cost: {{.Registration.BcryptCost}}
  # Lifetime of access tokens for clients that ask for refresh tokens; 0 means they never
  # expire and no refresh token is handed out. Default: 0s
  access_token_lifetime: {{.Registration.AccessTokenLifetime}}
  # Lifetime of refresh tokens; 0 means until used. Needs access_token_lifetime. Default: 0s
  refresh_token_lifetime: {{.Registration.RefreshTokenLifetime}}
  # Lifetime of login tokens from POST /login/get_token. Default: 2m0s
  login_token_lifetime: {{.Registration.LoginTokenLifetime}}

rate_limits:
  # Slow down clients that log in or register too often (429 M_LIMIT_EXCEEDED). Default: true
  enabled: {{.RateLimits.Enabled}}
  # Attempts per IP address and per account: per_second refill, burst at most.
  # Default: per_second 0.2, burst 5
  login: {per_second: {{.RateLimits.Login.PerSecond}}, burst: {{.RateLimits.Login.Burst}}}
  # Registrations per IP address. Default: per_second 0.2, burst 5
  register: {per_second: {{.RateLimits.Register.PerSecond}}, burst: {{.RateLimits.Register.Burst}}}
  # Events each user sends (messages, state, redactions). Default: per_second 10, burst 50
  message: {per_second: {{.RateLimits.Message.PerSecond}}, burst: {{.RateLimits.Message.Burst}}}

user_directory:
  # Let the user directory find every local user, not only those who share a room with the
  # searcher or are in a public room. Default: false
  search_all_users: {{.UserDir.SearchAllUsers}}

presence:
  # Track and share who is online, idle or offline and their status messages. false stores
  # and sends nothing: everyone appears offline and setting presence is accepted and ignored.
  # Default: true
  enabled: {{.Presence.Enabled}}

{{template "media" .}}
{{template "push" .}}
outbound:
  # PEM files of certificate authorities to trust for outgoing HTTPS (push gateways, URL
  # previews) besides the system's, e.g. a private CA. Relative to this file. Default: []
  ca_files: [{{range $i, $f := .Outbound.CAFiles}}{{if $i}}, {{end}}{{q $f}}{{end}}]

log:
  # One of debug, info, warn, error. Default: info
  level: {{q .Log.Level}}
  # text (human-readable) or json. Default: text
  format: {{q .Log.Format}}
  # File the logs are appended to (created if missing; relative to this file's folder)
  # instead of standard error. Empty logs to standard error. Default: ""
  file: {{q .Log.File}}
`
