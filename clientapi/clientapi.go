// Package clientapi serves the client-server API (/_matrix/client/*): it translates HTTP requests
// into calls on the other components.
package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/latticehq/lattice/internal/httpapi"
)

// supportedVersions lists the spec versions whose required endpoints all exist. A version is
// added only when everything it requires has landed, so clients never rely on a missing endpoint.
var supportedVersions = []string{}

// Options configures the client API.
type Options struct {
	// WellKnownBaseURL answers /.well-known/matrix/client; empty answers 404.
	WellKnownBaseURL string
}

// API is the client-server API component.
type API struct {
	opts Options
}

// New returns the client API.
func New(opts Options) *API {
	return &API{opts: opts}
}

// Register adds the client API's routes to r.
func (a *API) Register(r *mux.Router) {
	r.Handle("/_matrix/client/versions", httpapi.HandlerFunc(a.versions)).Methods(http.MethodGet)
	r.Handle("/.well-known/matrix/client", httpapi.HandlerFunc(a.wellKnown)).Methods(http.MethodGet)
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
	if a.opts.WellKnownBaseURL == "" {
		return httpapi.NotFound("no client well-known is configured")
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"m.homeserver": map[string]string{"base_url": a.opts.WellKnownBaseURL},
	})
	return nil
}
