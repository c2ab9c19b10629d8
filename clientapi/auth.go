package clientapi

import (
	"errors"
	"net"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// AuthedFunc is a handler that runs for an authenticated device.
type AuthedFunc func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error

// guestsAllowed marks a handler that guest accounts may call (client-server API, "Guest access").
const guestsAllowed = true

// authed wraps h so that it runs only with a valid access token (client-server API, "Using access
// tokens"): from the Authorization header, or the deprecated access_token query parameter. Guests
// are refused unless allowGuests.
func (a *API) authed(h AuthedFunc, allowGuests ...bool) http.Handler {
	guests := len(allowGuests) > 0 && allowGuests[0]
	return httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		token, err := accessToken(r)
		if err != nil {
			return err
		}
		dev, err := a.users.QueryAccessToken(r.Context(), token)
		switch {
		case errors.Is(err, userapi.ErrTokenExpired):
			return httpapi.UnknownToken(true, "Access token has expired")
		case errors.Is(err, userapi.ErrUnknownToken):
			return httpapi.UnknownToken(false, "Unrecognised access token")
		case err != nil:
			return err
		}
		if dev.IsGuest && !guests {
			return httpapi.NewError(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed here")
		}
		a.users.RecordSeen(r.Context(), dev, clientIP(r), r.UserAgent())
		return h(w, r, dev)
	})
}

// accessToken extracts the access token of a request, M_MISSING_TOKEN if there is none.
func accessToken(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", httpapi.MissingToken("Authorization header is not a Bearer token")
		}
		return strings.TrimSpace(token), nil
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t, nil
	}
	return "", httpapi.MissingToken("Missing access token")
}

// clientIP is the address the request came from.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ownUser checks that the {userId} of the path is the caller's own, as endpoints that act on a
// user's private data demand.
func ownUser(r *http.Request, dev *userapi.Device) error {
	if id.UserID(httpapi.Vars(r)["userId"]) != dev.UserID {
		return httpapi.Forbidden("Cannot act on behalf of another user")
	}
	return nil
}
