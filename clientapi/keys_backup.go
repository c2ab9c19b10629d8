package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// registerKeyBackupRoutes adds the server-side key backup endpoints (end-to-end encryption
// module, "Server-side key backups").
func (a *API) registerKeyBackupRoutes(r *mux.Router) {
	handle(r, "/room_keys/version", a.authed(a.createKeyBackup), http.MethodPost)
	handle(r, "/room_keys/version", a.authed(a.getKeyBackup), http.MethodGet)
	handle(r, "/room_keys/version/{backupVersion}", a.authed(a.getKeyBackup), http.MethodGet)
	handle(r, "/room_keys/version/{backupVersion}", a.authed(a.updateKeyBackup), http.MethodPut)
	handle(r, "/room_keys/version/{backupVersion}", a.authed(a.deleteKeyBackup), http.MethodDelete)
	for _, path := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		handle(r, path, a.authed(a.putBackupKeys), http.MethodPut)
		handle(r, path, a.authed(a.getBackupKeys), http.MethodGet)
		handle(r, path, a.authed(a.deleteBackupKeys), http.MethodDelete)
	}
}

// backupError maps the user component's backup errors to Matrix errors.
func backupError(err error) error {
	var wrong *userapi.WrongBackupVersionError
	switch {
	case errors.As(err, &wrong):
		return &httpapi.Error{Status: http.StatusForbidden, Code: "M_WRONG_ROOM_KEYS_VERSION", Message: "Wrong backup version",
			Extra: map[string]any{"current_version": wrong.Current}}
	case errors.Is(err, userapi.ErrNotFound):
		return httpapi.NotFound("Unknown backup version")
	case errors.Is(err, userapi.ErrInvalidKeys):
		return httpapi.InvalidParam("%s", err.Error())
	}
	return err
}

// createKeyBackup answers POST /room_keys/version.
func (a *API) createKeyBackup(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.Algorithm == "" || req.AuthData == nil {
		return httpapi.MissingParam("algorithm and auth_data are required")
	}
	version, err := a.users.CreateKeyBackup(r.Context(), dev.UserID, req.Algorithm, req.AuthData)
	if err != nil {
		return backupError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"version": version})
	return nil
}

// getKeyBackup answers GET /room_keys/version[/{version}].
func (a *API) getKeyBackup(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	b, err := a.users.GetKeyBackup(r.Context(), dev.UserID, httpapi.Vars(r)["backupVersion"])
	if err != nil {
		if errors.Is(err, userapi.ErrNotFound) {
			return httpapi.NotFound("No current backup version")
		}
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, b)
	return nil
}

// updateKeyBackup answers PUT /room_keys/version/{backupVersion}: only auth_data changes.
func (a *API) updateKeyBackup(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
		Version   *string         `json:"version"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	version := httpapi.Vars(r)["backupVersion"]
	if req.Algorithm == "" || req.AuthData == nil {
		return httpapi.MissingParam("algorithm and auth_data are required")
	}
	if req.Version != nil && *req.Version != version {
		return httpapi.InvalidParam("version does not match the path")
	}
	if err := a.users.UpdateKeyBackup(r.Context(), dev.UserID, version, req.Algorithm, req.AuthData); err != nil {
		return backupError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// deleteKeyBackup answers DELETE /room_keys/version/{backupVersion}.
func (a *API) deleteKeyBackup(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	if err := a.users.DeleteKeyBackup(r.Context(), dev.UserID, httpapi.Vars(r)["backupVersion"]); err != nil {
		return backupError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// backupTarget reads the version query parameter and the optional room and session of the path.
func backupTarget(r *http.Request) (version string, room id.RoomID, session string, err error) {
	version = r.URL.Query().Get("version")
	if version == "" {
		return "", "", "", httpapi.MissingParam("version is required")
	}
	vars := httpapi.Vars(r)
	return version, id.RoomID(vars["roomId"]), vars["sessionId"], nil
}

// roomSessions is the body of a room's keys.
type roomSessions struct {
	Sessions map[string]userapi.BackupKey `json:"sessions"`
}

// putBackupKeys answers PUT /room_keys/keys[/{roomId}[/{sessionId}]].
func (a *API) putBackupKeys(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	version, room, session, err := backupTarget(r)
	if err != nil {
		return err
	}
	keys := map[id.RoomID]map[string]userapi.BackupKey{}
	switch {
	case session != "":
		var k userapi.BackupKey
		if err := httpapi.ReadJSON(r, &k); err != nil {
			return err
		}
		keys[room] = map[string]userapi.BackupKey{session: k}
	case room != "":
		var body roomSessions
		if err := httpapi.ReadJSON(r, &body); err != nil {
			return err
		}
		keys[room] = body.Sessions
	default:
		var body struct {
			Rooms map[id.RoomID]roomSessions `json:"rooms"`
		}
		if err := httpapi.ReadJSON(r, &body); err != nil {
			return err
		}
		for rid, rs := range body.Rooms {
			keys[rid] = rs.Sessions
		}
	}
	count, etag, err := a.users.PutBackupKeys(r.Context(), dev.UserID, version, keys)
	if err != nil {
		return backupError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"count": count, "etag": etag})
	return nil
}

// getBackupKeys answers GET /room_keys/keys[/{roomId}[/{sessionId}]].
func (a *API) getBackupKeys(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	version, room, session, err := backupTarget(r)
	if err != nil {
		return err
	}
	keys, err := a.users.BackupKeys(r.Context(), dev.UserID, version, room, session)
	if err != nil {
		return backupError(err)
	}
	switch {
	case session != "":
		k, ok := keys[room][session]
		if !ok {
			return httpapi.NotFound("Key not found")
		}
		httpapi.WriteJSON(w, http.StatusOK, k)
	case room != "":
		sessions := keys[room]
		if sessions == nil {
			sessions = map[string]userapi.BackupKey{}
		}
		httpapi.WriteJSON(w, http.StatusOK, roomSessions{Sessions: sessions})
	default:
		rooms := make(map[id.RoomID]roomSessions, len(keys))
		for rid, s := range keys {
			rooms[rid] = roomSessions{Sessions: s}
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"rooms": rooms})
	}
	return nil
}

// deleteBackupKeys answers DELETE /room_keys/keys[/{roomId}[/{sessionId}]].
func (a *API) deleteBackupKeys(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	version, room, session, err := backupTarget(r)
	if err != nil {
		return err
	}
	count, etag, err := a.users.DeleteBackupKeys(r.Context(), dev.UserID, version, room, session)
	if err != nil {
		return backupError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"count": count, "etag": etag})
	return nil
}
