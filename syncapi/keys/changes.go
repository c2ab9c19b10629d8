package keys

import (
	"context"
	"net/http"
	"slices"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/synctoken"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// DeviceListChanges is the device-list view GET /keys/changes answers from: the same as /sync's
// device_lists (syncapi/todevice's DeviceLists).
type DeviceListChanges interface {
	Changes(ctx context.Context, user id.UserID, from, to int64) (changed, left []id.UserID, err error)
}

// Changes serves GET /keys/changes.
type Changes struct {
	users userapi.API
	lists DeviceListChanges
}

// NewChanges returns the /keys/changes endpoint over lists.
func NewChanges(users userapi.API, lists DeviceListChanges) *Changes {
	return &Changes{users: users, lists: lists}
}

// Register adds GET /keys/changes to r.
func (c *Changes) Register(r *mux.Router) {
	r.Handle("/_matrix/client/{version:(?:r0|v3)}/keys/changes", httpapi.HandlerFunc(c.changes)).Methods(http.MethodGet)
}

// deviceListsPosition returns the device_lists position of a sync token.
func deviceListsPosition(tok string) (int64, error) {
	s, err := synctoken.ParseStream(tok)
	if err != nil {
		return 0, err
	}
	i := slices.Index(synctypes.TokenOrder, synctypes.StreamDeviceLists)
	if i < len(s.Others) {
		return s.Others[i], nil
	}
	return 0, nil
}

// changes answers GET /keys/changes (client-server API, "GET /_matrix/client/v3/keys/changes"):
// the users whose device lists changed between two sync tokens, as /sync's device_lists would
// have said.
func (c *Changes) changes(w http.ResponseWriter, r *http.Request) error {
	dev, err := userapi.Authenticate(r, c.users, false)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if !q.Has("from") || !q.Has("to") {
		return httpapi.MissingParam("from and to are required")
	}
	from, err := deviceListsPosition(q.Get("from"))
	if err != nil {
		return httpapi.InvalidParam("Invalid from token")
	}
	to, err := deviceListsPosition(q.Get("to"))
	if err != nil {
		return httpapi.InvalidParam("Invalid to token")
	}
	changed, left, err := c.lists.Changes(r.Context(), dev.UserID, from, to)
	if err != nil {
		return err
	}
	if changed == nil {
		changed = []id.UserID{}
	}
	if left == nil {
		left = []id.UserID{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"changed": changed, "left": left})
	return nil
}
