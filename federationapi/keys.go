package federationapi

import (
	"net/http"

	"maunium.net/go/mautrix/federation"

	"github.com/latticehq/lattice/internal/httpapi"
)

// ownKeys returns this server's verify keys, self-signed and valid for a day (server-server API,
// "Publishing Keys").
func (a *API) ownKeys() *federation.ServerKeyResponse {
	return a.opts.SigningKey.GenerateKeyResponse(a.opts.ServerName, nil)
}

// serverKeys answers GET /_matrix/key/v2/server.
func (a *API) serverKeys(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, a.ownKeys())
	return nil
}

// queryKeysRequest is the body of POST /_matrix/key/v2/query.
type queryKeysRequest struct {
	ServerKeys map[string]map[string]struct {
		MinimumValidUntilTS int64 `json:"minimum_valid_until_ts"`
	} `json:"server_keys"`
}

// queryKeys answers POST /_matrix/key/v2/query ("Querying Keys Through Another Server"). Servers
// this notary holds no keys for are left out of the answer, as the spec allows; until the
// federation key ring exists that is every server but this one.
func (a *API) queryKeys(w http.ResponseWriter, r *http.Request) error {
	var req queryKeysRequest
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.ServerKeys == nil {
		return httpapi.MissingParam("server_keys is required")
	}
	keys := []*federation.ServerKeyResponse{}
	if _, ok := req.ServerKeys[a.opts.ServerName]; ok {
		keys = append(keys, a.ownKeys())
	}
	httpapi.WriteJSON(w, http.StatusOK, federation.QueryKeysResponse{ServerKeys: keys})
	return nil
}

// queryServerKeys answers GET /_matrix/key/v2/query/{serverName}, with the same rules.
func (a *API) queryServerKeys(w http.ResponseWriter, r *http.Request) error {
	keys := []*federation.ServerKeyResponse{}
	if httpapi.Vars(r)["serverName"] == a.opts.ServerName {
		keys = append(keys, a.ownKeys())
	}
	httpapi.WriteJSON(w, http.StatusOK, federation.QueryKeysResponse{ServerKeys: keys})
	return nil
}
