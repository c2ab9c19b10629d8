package clientapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/safehttp"
	"github.com/latticehq/lattice/userapi"
)

// Limits of pusher fields (pusher.yaml): "Max length, 64 chars" and "Max length, 512 bytes".
const (
	maxAppIDChars  = 64
	maxPushKeyLen  = 512
	maxPusherField = 1024
	maxPusherData  = 16 << 10
	// gatewayPath is the one path a gateway URL may have ("MUST be an HTTPS URL with a path of
	// /_matrix/push/v1/notify").
	gatewayPath = "/_matrix/push/v1/notify"
)

// registerPusherRoutes adds GET /pushers and POST /pushers/set (client-server API, "Push
// Notifications: Client behaviour"). Guests may not use them.
func (a *API) registerPusherRoutes(r *mux.Router) {
	handle(r, "/pushers", a.authed(a.getPushers), http.MethodGet)
	handle(r, "/pushers/set", a.authed(a.setPusher), http.MethodPost)
}

func (a *API) getPushers(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ps, err := a.users.Pushers(r.Context(), dev.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"pushers": ps})
	return nil
}

// pusherBody is the body of POST /pushers/set. Kind is a pointer so that null (delete) and a
// missing kind can be told apart.
type pusherBody struct {
	Kind              *string         `json:"kind"`
	AppID             *string         `json:"app_id"`
	PushKey           *string         `json:"pushkey"`
	AppDisplayName    *string         `json:"app_display_name"`
	DeviceDisplayName *string         `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Lang              *string         `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Append            bool            `json:"append"`
}

func (a *API) setPusher(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var raw map[string]json.RawMessage
	if err := httpapi.ReadJSONLimit(r, &raw, maxPusherData+4*maxPusherField); err != nil {
		return err
	}
	kindRaw, hasKind := raw["kind"]
	var b pusherBody
	whole, _ := json.Marshal(raw)
	if err := json.Unmarshal(whole, &b); err != nil {
		return httpapi.BadJSON("Invalid pusher: %v", err)
	}
	switch {
	case !hasKind:
		return httpapi.MissingParam("kind is required (null deletes the pusher)")
	case b.AppID == nil:
		return httpapi.MissingParam("app_id is required")
	case b.PushKey == nil:
		return httpapi.MissingParam("pushkey is required")
	case *b.AppID == "" || utf8.RuneCountInString(*b.AppID) > maxAppIDChars:
		return httpapi.InvalidParam("app_id must have 1 to %d characters", maxAppIDChars)
	case *b.PushKey == "" || len(*b.PushKey) > maxPushKeyLen:
		return httpapi.InvalidParam("pushkey must have 1 to %d bytes", maxPushKeyLen)
	}
	if string(kindRaw) == "null" {
		if err := a.users.DeletePusher(r.Context(), dev.UserID, *b.AppID, *b.PushKey); err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}
	p, err := a.validPusher(r, b)
	if err != nil {
		return err
	}
	p.UserID, p.DeviceID = dev.UserID, dev.DeviceID
	if err := a.users.SetPusher(r.Context(), p, b.Append); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// validPusher checks the fields a pusher that is set needs: an http kind (email pushers need a
// mail server, which Lattice does not have), the display names, the language, and data with a
// gateway URL this server may call.
func (a *API) validPusher(r *http.Request, b pusherBody) (userapi.Pusher, error) {
	for name, v := range map[string]*string{"app_display_name": b.AppDisplayName, "device_display_name": b.DeviceDisplayName, "lang": b.Lang} {
		if v == nil {
			return userapi.Pusher{}, httpapi.MissingParam("%s is required when kind is not null", name)
		}
		if len(*v) > maxPusherField {
			return userapi.Pusher{}, httpapi.InvalidParam("%s is longer than %d bytes", name, maxPusherField)
		}
	}
	if len(b.ProfileTag) > maxPusherField {
		return userapi.Pusher{}, httpapi.InvalidParam("profile_tag is longer than %d bytes", maxPusherField)
	}
	if *b.Kind != "http" {
		return userapi.Pusher{}, httpapi.InvalidParam("Unsupported pusher kind %q: this server sends http pushers only", *b.Kind)
	}
	if b.Data == nil || string(b.Data) == "null" {
		return userapi.Pusher{}, httpapi.MissingParam("data is required when kind is not null")
	}
	var data map[string]json.RawMessage
	if json.Unmarshal(b.Data, &data) != nil || data == nil {
		return userapi.Pusher{}, httpapi.BadJSON("data must be an object")
	}
	// data.format: event_id_only sends the event's IDs only; any other value, which the spec
	// does not define, gets the full format, as when it is absent.
	var pd userapi.PusherData
	if err := json.Unmarshal(b.Data, &pd); err != nil {
		return userapi.Pusher{}, httpapi.BadJSON("data.url and data.format must be strings")
	}
	if pd.URL == "" {
		return userapi.Pusher{}, httpapi.MissingParam("data.url is required for http pushers")
	}
	if err := a.checkGateway(r, pd.URL); err != nil {
		return userapi.Pusher{}, err
	}
	return userapi.Pusher{Kind: *b.Kind, AppID: *b.AppID, PushKey: *b.PushKey, AppDisplayName: *b.AppDisplayName,
		DeviceDisplayName: *b.DeviceDisplayName, ProfileTag: b.ProfileTag, Lang: *b.Lang, Data: b.Data}, nil
}

// checkGateway refuses gateway URLs the push sender would not call: not https (unless
// push.allow_http), another path than the notify endpoint, or a host on a private address
// (unless push.allow_private_addresses; the sender checks again at each connection).
func (a *API) checkGateway(r *http.Request, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return httpapi.InvalidParam("data.url must be an absolute https URL")
	}
	if u.Scheme == "http" && !a.cfg.Push.AllowHTTP {
		return httpapi.InvalidParam("data.url must use https")
	}
	if u.Path != gatewayPath {
		return httpapi.InvalidParam("data.url must have the path %s", gatewayPath)
	}
	if u.User != nil {
		return httpapi.InvalidParam("data.url must not carry credentials")
	}
	if !a.cfg.Push.AllowPrivateAddresses {
		if err := safehttp.CheckHost(r.Context(), u.Hostname()); err != nil {
			return httpapi.InvalidParam("data.url is not reachable from this server: %v", err)
		}
	}
	return nil
}
