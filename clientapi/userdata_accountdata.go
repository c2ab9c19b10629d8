package clientapi

import (
	"errors"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// serverManagedAccountData lists the account data types clients may read but not set: "Servers
// MUST reject setting account data for event types that the server manages by using a 405
// error response" ("Client Config", Server Behaviour), with M_BAD_JSON (account-data.yaml).
var serverManagedAccountData = map[string]bool{
	"m.fully_read": true,
	"m.push_rules": true,
}

// accountDataTarget checks the caller and path of an account data request and returns the room
// ("" for global account data) and type it names.
func accountDataTarget(r *http.Request, dev *userapi.Device) (id.RoomID, string, error) {
	if err := ownUser(r, dev); err != nil {
		return "", "", err
	}
	vars := httpapi.Vars(r)
	roomID, err := pathRoomID(vars)
	if err != nil {
		return "", "", err
	}
	typ := vars["type"]
	if !validPathString(typ) {
		return "", "", httpapi.InvalidParam("Invalid account data type: at most %d bytes of UTF-8 text", maxIDLength)
	}
	return roomID, typ, nil
}

// pathRoomID returns the {roomId} of the path, "" if the route has none; M_INVALID_PARAM if it
// is not a room ID (account-data.yaml).
func pathRoomID(vars map[string]string) (id.RoomID, error) {
	s, ok := vars["roomId"]
	if !ok {
		return "", nil
	}
	if !validRoomID(s) {
		return "", httpapi.InvalidParam("%q is not a valid room ID", s)
	}
	return id.RoomID(s), nil
}

// getAccountData answers GET /user/{userId}/account_data/{type} and its per-room form.
func (a *API) getAccountData(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, typ, err := accountDataTarget(r, dev)
	if err != nil {
		return err
	}
	content, err := a.users.GetAccountData(r.Context(), dev.UserID, roomID, typ)
	if errors.Is(err, userapi.ErrNotFound) {
		return httpapi.NotFound("Account data not found")
	} else if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, content)
	return nil
}

// setAccountData answers PUT /user/{userId}/account_data/{type} and its per-room form.
func (a *API) setAccountData(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, typ, err := accountDataTarget(r, dev)
	if err != nil {
		return err
	}
	if serverManagedAccountData[typ] {
		return httpapi.NewError(http.StatusMethodNotAllowed, "M_BAD_JSON", "Cannot set %s through this API", typ)
	}
	content, err := readObject(r)
	if err != nil {
		return err
	}
	if err := a.users.SetAccountData(r.Context(), dev.UserID, roomID, typ, content); err != nil {
		return err
	}
	writeEmpty(w)
	return nil
}
