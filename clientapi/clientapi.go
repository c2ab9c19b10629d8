// Package clientapi serves the client-server API (/_matrix/client/*): it translates HTTP requests
// into calls on the other components.
package clientapi

import (
	"log/slog"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/latticehq/lattice/internal/config"
	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/ratelimit"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/userapi"
)

// supportedVersions lists the spec versions whose required endpoints all exist. A version is
// added only when everything it requires has landed, so clients never rely on a missing endpoint.
var supportedVersions = []string{}

// Options configures the client API.
type Options struct {
	Config *config.Config
	Users  userapi.API
	Rooms  roomserver.API
	Logger *slog.Logger
}

// API is the client-server API component.
type API struct {
	cfg   *config.Config
	users userapi.API
	rooms roomserver.API
	log   *slog.Logger

	loginIPLimit   *ratelimit.Limiter // login attempts per client IP
	loginUserLimit *ratelimit.Limiter // login attempts per account
	registerLimit  *ratelimit.Limiter // registrations per client IP
	messageLimit   *ratelimit.Limiter // events sent per user
	nonces         nonces             // of shared-secret registration
}

// New returns the client API.
func New(opts Options) *API {
	rl := opts.Config.RateLimits
	return &API{
		cfg: opts.Config, users: opts.Users, rooms: opts.Rooms, log: opts.Logger,
		loginIPLimit:   ratelimit.New(rl.Login.PerSecond, rl.Login.Burst, rl.Enabled),
		loginUserLimit: ratelimit.New(rl.Login.PerSecond, rl.Login.Burst, rl.Enabled),
		registerLimit:  ratelimit.New(rl.Register.PerSecond, rl.Register.Burst, rl.Enabled),
		messageLimit:   ratelimit.New(rl.Message.PerSecond, rl.Message.Burst, rl.Enabled),
	}
}

// Register adds the client API's routes to r.
func (a *API) Register(r *mux.Router) {
	r.Handle("/_matrix/client/versions", httpapi.HandlerFunc(a.versions)).Methods(http.MethodGet)
	r.Handle("/.well-known/matrix/client", httpapi.HandlerFunc(a.wellKnown)).Methods(http.MethodGet)
	a.registerAccountRoutes(r)
	a.registerUserDataRoutes(r)
	a.registerRoomRoutes(r)
	a.registerDirectoryRoutes(r)
	a.registerHierarchyRoutes(r)
	a.registerUpgradeRoutes(r)
	a.registerPushRuleRoutes(r)
	a.registerPusherRoutes(r)
	a.registerKeyRoutes(r)
}

// handle registers h at path under both /_matrix/client/r0 and /_matrix/client/v3, as older
// clients still use r0 for the endpoints that existed then.
func handle(r *mux.Router, path string, h http.Handler, methods ...string) {
	r.Handle("/_matrix/client/{version:(?:r0|v3)}"+path, h).Methods(methods...)
}

// handleV1 registers h at path under /_matrix/client/v1 (endpoints added after v1.0).
func handleV1(r *mux.Router, path string, h http.Handler, methods ...string) {
	r.Handle("/_matrix/client/v1"+path, h).Methods(methods...)
}

// versions answers GET /_matrix/client/versions (client-server API, "GET /_matrix/client/versions").
func (a *API) versions(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"versions":          supportedVersions,
		"unstable_features": map[string]bool{},
	})
	return nil
}

// wellKnown answers GET /.well-known/matrix/client (client-server API, "Well-known URIs").
func (a *API) wellKnown(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.WellKnown.ClientBaseURL == "" {
		return httpapi.NotFound("no client well-known is configured")
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"m.homeserver": map[string]string{"base_url": a.cfg.WellKnown.ClientBaseURL},
	})
	return nil
}
