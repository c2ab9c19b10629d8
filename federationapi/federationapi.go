// Package federationapi serves the server-server API (/_matrix/federation/*, /_matrix/key/*).
package federationapi

import (
	"net/http"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/federation"

	"github.com/latticehq/lattice/internal/httpapi"
)

// Options configures the federation API.
type Options struct {
	// ServerName is this server's name.
	ServerName string
	// SigningKey signs what this server publishes.
	SigningKey *federation.SigningKey
	// Version is the software version reported by /_matrix/federation/v1/version.
	Version string
	// WellKnownServer answers /.well-known/matrix/server; empty answers 404.
	WellKnownServer string
}

// API is the federation component.
type API struct {
	opts Options
}

// New returns the federation API.
func New(opts Options) *API {
	return &API{opts: opts}
}

// Register adds the federation API's routes to r.
func (a *API) Register(r *mux.Router) {
	r.Handle("/_matrix/federation/v1/version", httpapi.HandlerFunc(a.version)).Methods(http.MethodGet)
	r.Handle("/.well-known/matrix/server", httpapi.HandlerFunc(a.wellKnown)).Methods(http.MethodGet)
	r.Handle("/_matrix/key/v2/server", httpapi.HandlerFunc(a.serverKeys)).Methods(http.MethodGet)
	r.Handle("/_matrix/key/v2/query", httpapi.HandlerFunc(a.queryKeys)).Methods(http.MethodPost)
	r.Handle("/_matrix/key/v2/query/{serverName}", httpapi.HandlerFunc(a.queryServerKeys)).Methods(http.MethodGet)
}

// version answers GET /_matrix/federation/v1/version (server-server API, "Server Implementation").
func (a *API) version(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"server": map[string]string{"name": "Lattice", "version": a.opts.Version},
	})
	return nil
}

// wellKnown answers GET /.well-known/matrix/server (server-server API, "Server discovery").
func (a *API) wellKnown(w http.ResponseWriter, r *http.Request) error {
	if a.opts.WellKnownServer == "" {
		return httpapi.NotFound("no server well-known is configured")
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"m.server": a.opts.WellKnownServer})
	return nil
}
