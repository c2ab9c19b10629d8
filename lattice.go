// Package lattice wires Lattice's components into one server: it opens the database, builds
// each component, serves the configured listeners and shuts everything down gracefully.
// cmd/lattice is a thin command line around it, and e2e tests start it in-process.
package lattice

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"maunium.net/go/mautrix/federation"

	"github.com/latticehq/lattice/clientapi"
	"github.com/latticehq/lattice/federationapi"
	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/internal/ratelimit"
	"github.com/latticehq/lattice/internal/safehttp"
	"github.com/latticehq/lattice/mediaapi"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/syncapi"
	"github.com/latticehq/lattice/syncapi/ephemeral"
	e2ekeys "github.com/latticehq/lattice/syncapi/keys"
	"github.com/latticehq/lattice/syncapi/presence"
	"github.com/latticehq/lattice/syncapi/push"
	"github.com/latticehq/lattice/syncapi/search"
	"github.com/latticehq/lattice/syncapi/todevice"
	"github.com/latticehq/lattice/userapi"
)

// Version is the version of Lattice this binary is.
const Version = "0.1.0-dev"

// Server is one running Lattice homeserver (all components in one process).
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	db       *storage.DB
	notifier *notifier.Notifier
	key      *federation.SigningKey
	metrics  *prometheus.Registry
	users    *userapi.Users
	rooms    *roomserver.Roomserver
	search   *search.Search
	media    *mediaapi.Media
	sync     *syncapi.API
	eph      *ephemeral.API
	presence *presence.Tracker
	toDevice *todevice.API
	push     *push.Push

	listeners []*listener
	started   bool
	closeOnce sync.Once
	closeErr  error
}

type listener struct {
	cfg    config.Listen
	ln     net.Listener
	srv    *http.Server
	scheme string
}

// New opens the database (migrating it), loads the signing key and builds every component.
// Nothing listens until Start.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Server, error) {
	keyPath := cfg.Path(cfg.SigningKey)
	key, err := config.LoadSigningKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (create one with 'lattice generate-keys --out %s')", err, keyPath)
	} else if err != nil {
		return nil, err
	}
	db, err := openDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	nf := notifier.New()
	users, err := userapi.New(ctx, db, userOptions(cfg, nf, logger))
	if err != nil {
		db.Close()
		return nil, err
	}
	rooms, err := roomserver.New(ctx, db, roomserver.Options{ServerName: cfg.ServerName, SigningKey: key, Notifier: nf, Logger: logger})
	if err != nil {
		users.Close()
		db.Close()
		return nil, err
	}
	var caFiles []string
	for _, f := range cfg.Outbound.CAFiles {
		caFiles = append(caFiles, cfg.Path(f))
	}
	roots, err := safehttp.RootCAs(caFiles)
	if err != nil {
		users.Close()
		db.Close()
		return nil, fmt.Errorf("outbound.ca_files: %w", err)
	}
	pushes, err := push.New(ctx, push.Options{DB: db, Rooms: rooms, Users: users, Notifier: nf, Logger: logger,
		ServerName: cfg.ServerName, Config: cfg.Push, RootCAs: roots})
	if err != nil {
		users.Close()
		db.Close()
		return nil, err
	}
	rl := cfg.RateLimits
	eph, err := ephemeral.New(ctx, ephemeral.Options{DB: db, Rooms: rooms, Users: users, Notifier: nf, Logger: logger,
		Limiter: ratelimit.New(rl.Message.PerSecond, rl.Message.Burst, rl.Enabled), OnReceipts: pushes.MarkReceipts})
	if err != nil {
		users.Close()
		db.Close()
		return nil, err
	}
	pres, err := presence.New(ctx, presence.Options{DB: db, Rooms: rooms, Users: users, Notifier: nf, Logger: logger,
		ServerName: cfg.ServerName, Enabled: cfg.Presence.Enabled})
	if err != nil {
		eph.Close()
		users.Close()
		db.Close()
		return nil, err
	}
	toDevice, err := todevice.New(ctx, todevice.Options{DB: db, Rooms: rooms, Users: users, Notifier: nf, Logger: logger,
		ServerName: cfg.ServerName})
	if err != nil {
		pres.Close()
		eph.Close()
		users.Close()
		db.Close()
		return nil, err
	}
	keyCounts, err := e2ekeys.New(ctx, e2ekeys.Options{DB: db, Users: users, Notifier: nf})
	if err != nil {
		toDevice.Close()
		pres.Close()
		eph.Close()
		users.Close()
		db.Close()
		return nil, err
	}
	var keyChanges *e2ekeys.Changes
	for _, src := range toDevice.Sources() {
		if lists, ok := src.(e2ekeys.DeviceListChanges); ok {
			keyChanges = e2ekeys.NewChanges(users, lists)
		}
	}
	syncAPI, err := syncapi.New(ctx, syncapi.Options{DB: db, Rooms: rooms, Users: users, Notifier: nf, Logger: logger,
		Sources: append(append(append(eph.Sources(), pres), toDevice.Sources()...), keyCounts), Presence: pres, Push: pushes})
	if err != nil {
		pres.Close()
		eph.Close()
		users.Close()
		db.Close()
		return nil, err
	}
	srch, err := search.New(ctx, search.Options{DB: db, Rooms: rooms, Users: users, Notifier: nf, ServerName: cfg.ServerName,
		SearchAllUsers: cfg.UserDir.SearchAllUsers, Logger: logger})
	if err != nil {
		syncAPI.Close()
		pres.Close()
		eph.Close()
		users.Close()
		db.Close()
		return nil, err
	}
	med, err := mediaapi.New(ctx, mediaapi.Options{DB: db, Users: users, ServerName: cfg.ServerName,
		Path: cfg.Path(cfg.Media.Path), Config: cfg.Media, Logger: logger, RootCAs: roots})
	if err != nil {
		srch.Close()
		syncAPI.Close()
		pres.Close()
		eph.Close()
		users.Close()
		db.Close()
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      logger,
		db:       db,
		notifier: nf,
		users:    users,
		rooms:    rooms,
		search:   srch,
		media:    med,
		sync:     syncAPI,
		eph:      eph,
		presence: pres,
		toDevice: toDevice,
		push:     pushes,
		key:      key,
		metrics:  prometheus.NewRegistry(),
	}
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	httpMetrics := httpapi.NewMetrics(s.metrics)
	registerCacheMetrics(s.metrics, rooms, users)

	client := clientapi.New(clientapi.Options{Config: cfg, Users: s.users, Rooms: rooms, Logger: logger})
	fed := federationapi.New(federationapi.Options{ServerName: cfg.ServerName, SigningKey: key, Version: Version, WellKnownServer: cfg.WellKnown.Server})
	for _, lc := range cfg.Listeners {
		r := httpapi.NewRouter()
		if slices.Contains(lc.Resources, config.ResourceClient) {
			client.Register(r)
			srch.Register(r)
			med.Register(r)
			syncAPI.Register(r)
			eph.Register(r)
			pres.Register(r)
			toDevice.Register(r)
			pushes.Register(r)
			if keyChanges != nil {
				keyChanges.Register(r)
			}
			r.Handle("/", http.HandlerFunc(s.landing)).Methods(http.MethodGet, http.MethodHead)
		}
		if slices.Contains(lc.Resources, config.ResourceFederation) {
			fed.Register(r)
		}
		s.listeners = append(s.listeners, s.newListener(lc, httpapi.Wrap(r, logger, httpMetrics)))
	}
	if cfg.Metrics.Address != "" {
		r := mux.NewRouter()
		r.Handle("/metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}))
		s.listeners = append(s.listeners, s.newListener(config.Listen{Address: cfg.Metrics.Address, Resources: []string{"metrics"}}, r))
	}
	return s, nil
}

func (s *Server) newListener(lc config.Listen, h http.Handler) *listener {
	return &listener{cfg: lc, scheme: "http", srv: &http.Server{
		Handler: h,
		// No WriteTimeout: long-poll /sync and media downloads legitimately take long.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}}
}

// Start binds every listener and serves them in the background.
func (s *Server) Start() error {
	if s.started {
		return errors.New("server already started")
	}
	s.started = true
	s.search.Start()
	s.media.Start()
	s.presence.Start()
	s.toDevice.Start()
	for _, l := range s.listeners {
		ln, err := net.Listen("tcp", l.cfg.Address)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen on %s: %w", l.cfg.Address, err)
		}
		if l.cfg.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(s.cfg.Path(l.cfg.TLSCert), s.cfg.Path(l.cfg.TLSKey))
			if err != nil {
				ln.Close()
				s.closeListeners()
				return fmt.Errorf("load TLS certificate for %s: %w", l.cfg.Address, err)
			}
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			l.scheme = "https"
		}
		l.ln = ln
	}
	s.sync.Start()
	s.push.Start()
	for _, l := range s.listeners {
		go func() {
			if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("listener stopped", "address", l.ln.Addr().String(), "error", err)
			}
		}()
		s.log.Info("listening", "url", l.URL(), "resources", l.cfg.Resources)
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		if l.ln != nil {
			l.ln.Close()
			l.ln = nil
		}
	}
}

// URL is the base URL the listener answers on (with the bound port when the config said :0).
func (l *listener) URL() string {
	if l.ln == nil {
		return ""
	}
	return l.scheme + "://" + l.ln.Addr().String()
}

// URL returns the base URL of the first started listener serving resource, or "".
func (s *Server) URL(resource string) string {
	for _, l := range s.listeners {
		if slices.Contains(l.cfg.Resources, resource) && l.ln != nil {
			return l.URL()
		}
	}
	return ""
}

// Users is the server's user component, for tools and tests that act on accounts directly.
func (s *Server) Users() userapi.API { return s.users }

// Rooms is the server's room component, for the client API's room endpoints and for tests.
func (s *Server) Rooms() roomserver.API { return s.rooms }

// ServerName is the server's Matrix server name.
func (s *Server) ServerName() string { return s.cfg.ServerName }

// Shutdown stops accepting requests, wakes long-polls, waits for in-flight requests until ctx
// ends and then closes the database. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.notifier.Close()
		var wg sync.WaitGroup
		errs := make([]error, len(s.listeners))
		for i, l := range s.listeners {
			if l.ln == nil {
				continue
			}
			wg.Go(func() { errs[i] = l.srv.Shutdown(ctx) })
		}
		wg.Wait()
		s.push.Close()
		s.sync.Close()
		s.presence.Close()
		s.eph.Close()
		s.toDevice.Close()
		errs = append(errs, s.media.Close())
		errs = append(errs, s.search.Close(), s.users.Close(), s.db.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// registerCacheMetrics exports the roomserver's cache sizes and hit counts.
func registerCacheMetrics(reg prometheus.Registerer, rooms *roomserver.Roomserver, users *userapi.Users) {
	gauge := func(name, help string, f func(roomserver.CacheStats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(rooms.CacheStats()) }))
	}
	counter := func(name, help string, f func(roomserver.CacheStats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(rooms.CacheStats()) }))
	}
	gauge("lattice_roomserver_cached_rooms", "Rooms whose current state is cached.", func(s roomserver.CacheStats) float64 { return float64(s.Rooms) })
	gauge("lattice_roomserver_cached_state_entries", "State entries of the cached rooms.", func(s roomserver.CacheStats) float64 { return float64(s.StateEntries) })
	gauge("lattice_roomserver_event_cache_bytes", "Estimated bytes held by the parsed-event cache.", func(s roomserver.CacheStats) float64 { return float64(s.Events.Bytes) })
	gauge("lattice_roomserver_event_cache_entries", "Events held by the parsed-event cache.", func(s roomserver.CacheStats) float64 { return float64(s.Events.Entries) })
	gauge("lattice_roomserver_auth_chain_cache_nids", "Event numbers held by the auth-chain cache.", func(s roomserver.CacheStats) float64 { return float64(s.ChainNIDs) })
	counter("lattice_roomserver_event_cache_hits_total", "Parsed-event cache hits.", func(s roomserver.CacheStats) float64 { return float64(s.Events.Hits) })
	counter("lattice_roomserver_event_cache_misses_total", "Parsed-event cache misses.", func(s roomserver.CacheStats) float64 { return float64(s.Events.Misses) })
	counter("lattice_roomserver_event_cache_evictions_total", "Parsed-event cache evictions.", func(s roomserver.CacheStats) float64 { return float64(s.Events.Evictions) })
	gauge("lattice_roomserver_state_key_cache_entries", "State-key numbers cached.", func(s roomserver.CacheStats) float64 { return float64(s.StateKeys) })
	gauge("lattice_roomserver_event_id_cache_entries", "Event IDs by number cached.", func(s roomserver.CacheStats) float64 { return float64(s.EventIDs) })

	tokens := func(f func(userapi.CacheStats) float64) func() float64 {
		return func() float64 { return f(users.CacheStats()) }
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lattice_userapi_token_cache_entries", Help: "Access tokens cached."},
			tokens(func(s userapi.CacheStats) float64 { return float64(s.Tokens) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lattice_userapi_token_cache_hits_total", Help: "Access token checks answered from the cache."},
			tokens(func(s userapi.CacheStats) float64 { return float64(s.Hits) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lattice_userapi_token_cache_misses_total", Help: "Access token checks that read the database."},
			tokens(func(s userapi.CacheStats) float64 { return float64(s.Misses) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lattice_userapi_token_cache_evictions_total", Help: "Access tokens dropped from the cache."},
			tokens(func(s userapi.CacheStats) float64 { return float64(s.Evictions) })),
	)
}

func openDB(ctx context.Context, cfg *config.Config) (*storage.DB, error) {
	db, err := storage.Open(ctx, cfg.Database.DSN, storage.Options{
		MaxOpenConns:    cfg.Database.MaxOpenConns,
		MaxIdleConns:    cfg.Database.MaxIdleConns,
		ConnMaxLifetime: cfg.Database.ConnMaxLifetime,
		BaseDir:         cfg.Dir,
	})
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return db, nil
}

func userOptions(cfg *config.Config, nf *notifier.Notifier, logger *slog.Logger) userapi.Options {
	r := cfg.Registration
	return userapi.Options{
		ServerName:           cfg.ServerName,
		BcryptCost:           r.BcryptCost,
		AccessTokenLifetime:  r.AccessTokenLifetime,
		RefreshTokenLifetime: r.RefreshTokenLifetime,
		LoginTokenLifetime:   r.LoginTokenLifetime,
		Notifier:             nf,
		Logger:               logger,
	}
}

// OpenUsers opens the database of cfg and its user component alone, for the command line's
// account chores. The returned function closes both.
func OpenUsers(ctx context.Context, cfg *config.Config, logger *slog.Logger) (userapi.API, func() error, error) {
	db, err := openDB(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	users, err := userapi.New(ctx, db, userOptions(cfg, notifier.New(), logger))
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return users, func() error { return errors.Join(users.Close(), db.Close()) }, nil
}

// landing answers GET / with a short page that says what this server is.
func (s *Server) landing(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, landingPage, html.EscapeString(s.cfg.ServerName), Version)
}

const landingPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>Lattice</title></head>
<body>
<h1>Lattice</h1>
<p>This is the Matrix homeserver <b>%s</b>, run by Lattice %s.</p>
<p>Use a Matrix client such as Element and point it at this address to sign in.</p>
</body></html>
`
