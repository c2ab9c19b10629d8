package clientapi

import (
	"net/http"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/roomserver"
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

// roomVersionsCapability is m.room_versions: the default version of new rooms and every
// version this server supports, all stable.
func roomVersionsCapability() map[string]any {
	available := map[string]string{}
	for _, v := range roomserver.SupportedVersions {
		available[string(v)] = "stable"
	}
	return map[string]any{"default": string(roomserver.DefaultRoomVersion), "available": available}
}

// capabilities answers GET /capabilities ("Capabilities negotiation") for the calling user.
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
			"m.room_versions":   roomVersionsCapability(),
		},
	})
	return nil
}
