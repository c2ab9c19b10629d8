package clientapi

import (
	"net/http"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// boolCapability is the shape of the spec's boolean capabilities (capabilities.yaml, BooleanCapability).
type boolCapability struct {
	Enabled bool `json:"enabled"`
}

// profileFieldsCapability is m.profile_fields (spec v1.16, capabilities.yaml).
type profileFieldsCapability struct {
	Enabled bool     `json:"enabled"`
	Allowed []string `json:"allowed,omitempty"`
}

// capabilities answers GET /capabilities ("Capabilities negotiation") for the calling user.
//
// m.room_versions is added by the room server once rooms exist; until then clients assume
// room version 1, which is harmless as they cannot create rooms yet.
func (a *API) capabilities(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	full := !dev.IsGuest
	profile := profileFieldsCapability{Enabled: true}
	if dev.IsGuest {
		// Guests may change only their display name ("Guest access"); servers that forbid
		// avatar_url in m.profile_fields MUST also say so in m.set_avatar_url.
		profile.Allowed = []string{profileDisplayName}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"capabilities": map[string]any{
			"m.change_password": boolCapability{full},
			"m.set_displayname": boolCapability{true},
			"m.set_avatar_url":  boolCapability{full},
			"m.3pid_changes":    boolCapability{false}, // no third-party identifiers on this server
			"m.get_login_token": boolCapability{full},
			"m.profile_fields":  profile,
		},
	})
	return nil
}
