package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/gorilla/mux"
)

// unmatchedRoute is the route label of requests no route template matched;
// one shared label keeps metric cardinality bounded whatever paths clients send.
const unmatchedRoute = "unmatched"

// requestState is the per-request holder Wrap puts in the context. The router
// fills in the route (mux runs its middleware only for matched routes, after
// Wrap has passed the request on), and Wrap reads it back for the log line and
// metrics once the handler returns.
type requestState struct {
	logger *slog.Logger
	route  string
	rec    *recorder
}

type stateKey struct{}

func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// routeOf returns the route template of r for logs, also when r did not come through Wrap.
func routeOf(r *http.Request) string {
	if st := stateOf(r.Context()); st != nil {
		return st.route
	}
	if tpl, ok := template(r); ok {
		return tpl
	}
	return unmatchedRoute
}

func template(r *http.Request) (string, bool) {
	route := mux.CurrentRoute(r)
	if route == nil {
		return "", false
	}
	tpl, err := route.GetPathTemplate()
	return tpl, err == nil
}

// NewRouter returns a gorilla/mux router that matches on the encoded path (UseEncodedPath: event IDs of
// room v3 contain '/', percent-encoded in paths), answers unknown paths 404 M_UNRECOGNIZED and a known path with
// a wrong method 405 M_UNRECOGNIZED, and records the matched route template for logs and metrics.
//
// It also skips mux's path cleaning: that answers a 301 redirect for paths
// such as a state key of "..", which would move a PUT to another resource.
func NewRouter() *mux.Router {
	r := mux.NewRouter().UseEncodedPath().SkipClean(true)
	r.NotFoundHandler = HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return Unrecognized("Unrecognized request")
	})
	r.MethodNotAllowedHandler = HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return MethodNotAllowed("Unrecognized request method")
	})
	r.Use(recordRoute)
	return r
}

// recordRoute writes the matched route template into the request's holder.
// Routes of subrouters pass through it too, and report their full template.
func recordRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := stateOf(r.Context()); st != nil {
			if tpl, ok := template(r); ok {
				st.route = tpl
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Vars returns the route variables of r, percent-decoded.
//
// It expects a router from NewRouter: on a router matching decoded paths it
// would decode twice.
func Vars(r *http.Request) map[string]string {
	raw := mux.Vars(r)
	vars := make(map[string]string, len(raw))
	for k, v := range raw {
		// net/http refuses malformed escapes before routing, so this only
		// fails for a router that did not use the encoded path.
		if dec, err := url.PathUnescape(v); err == nil {
			v = dec
		}
		vars[k] = v
	}
	return vars
}
