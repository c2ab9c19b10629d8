package clientapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// AuthedFunc is a handler that runs for an authenticated device.
type AuthedFunc func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error

// guestsAllowed marks a handler that guest accounts may call (client-server API, "Guest access").
const guestsAllowed = true

// authed wraps h so that it runs only with a valid access token; guests are refused unless
// allowGuests.
func (a *API) authed(h AuthedFunc, allowGuests ...bool) http.Handler {
	guests := len(allowGuests) > 0 && allowGuests[0]
	return httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		dev, err := userapi.Authenticate(r, a.users, guests)
		if err != nil {
			return err
		}
		return h(w, r, dev)
	})
}

// ownUser checks that the {userId} of the path is the caller's own, as endpoints that act on a
// user's private data demand.
func ownUser(r *http.Request, dev *userapi.Device) error {
	if id.UserID(httpapi.Vars(r)["userId"]) != dev.UserID {
		return httpapi.Forbidden("Cannot act on behalf of another user")
	}
	return nil
}
