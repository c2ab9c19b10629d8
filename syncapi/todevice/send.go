package todevice

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/storage/todevicestore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// Limits of one send.
const (
	// maxIDLength bounds event types, transaction IDs and device IDs, as the spec bounds the
	// identifiers of events, users and rooms (appendices, "Identifier Grammar": 255 bytes).
	maxIDLength = 255
	// maxContentBytes bounds one message's content, as events are bounded ("Size limits").
	maxContentBytes = 65536
	// maxMessages bounds the messages one send stores after "*" is fanned out: enough for a
	// room key shared with every device of a few thousand users.
	maxMessages = 20_000
)

// sendBody is the body of PUT /sendToDevice.
type sendBody struct {
	Messages map[string]map[string]json.RawMessage `json:"messages"`
}

// sendToDevice answers PUT /sendToDevice/{eventType}/{txnId} (client-server API, "Send-to-Device
// messaging"): the messages for local devices are stored at one to_device position with the
// transaction ID, so a repeated request (also after a restart) stores nothing twice.
//
// Remote recipients are not served yet: their messages need the federation sender's EDU queue
// (server-server API, "Send-to-device messaging"), which does not exist, so they are dropped
// with a log line rather than kept where nothing would ever read them.
func (a *API) sendToDevice(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	vars := httpapi.Vars(r)
	evType, txnID := vars["eventType"], vars["txnId"]
	if !validText(evType) {
		return httpapi.InvalidParam("The event type must be 1 to %d bytes of UTF-8 text", maxIDLength)
	}
	if !validText(txnID) {
		return httpapi.InvalidParam("The transaction ID must be 1 to %d bytes of UTF-8 text", maxIDLength)
	}
	var body sendBody
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	if body.Messages == nil {
		return httpapi.MissingParam("Missing messages")
	}
	// Everything is checked before anything is stored: a request is taken whole or not at all.
	local := map[id.UserID]map[string]json.RawMessage{}
	remote := 0
	for user, devices := range body.Messages {
		if !validUserID(user) {
			return httpapi.InvalidParam("Invalid user ID %q", truncate(user))
		}
		for device, content := range devices {
			if device != "*" && !validText(device) {
				return httpapi.InvalidParam("Invalid device ID %q of %s", truncate(device), user)
			}
			if len(content) > maxContentBytes {
				return httpapi.TooLarge("The message for %s %s is larger than %d bytes", user, truncate(device), maxContentBytes)
			}
			if t := bytes.TrimSpace(content); len(t) == 0 || t[0] != '{' {
				return httpapi.BadJSON("The message for %s %s must be a JSON object", user, truncate(device))
			}
		}
		if id.UserID(user).Homeserver() != a.opts.ServerName {
			remote += len(devices)
			continue
		}
		local[id.UserID(user)] = devices
	}
	if remote > 0 {
		a.log.Info("dropping to-device messages for remote users: federation of them is not supported yet",
			"sender", dev.UserID, "type", evType, "messages", remote)
	}

	msgs := map[todevicestore.Device]json.RawMessage{}
	for user, devices := range local {
		known, err := a.opts.Users.Devices(ctx, user)
		if err != nil {
			return err
		}
		add := func(device id.DeviceID, content json.RawMessage) error {
			var buf bytes.Buffer
			if err := json.Compact(&buf, content); err != nil {
				return httpapi.BadJSON("The message for %s %s is not JSON", user, device)
			}
			msgs[todevicestore.Device{UserID: string(user), DeviceID: string(device)}] = buf.Bytes()
			return nil
		}
		// "*" means every device the user has now; a message naming one of them wins over it.
		if all, ok := devices["*"]; ok {
			for _, d := range known {
				if _, named := devices[string(d.DeviceID)]; !named {
					if err := add(d.DeviceID, all); err != nil {
						return err
					}
				}
			}
		}
		for _, d := range known {
			if content, ok := devices[string(d.DeviceID)]; ok {
				if err := add(d.DeviceID, content); err != nil {
					return err
				}
			}
		}
		if len(msgs) > maxMessages {
			return httpapi.TooLarge("More than %d messages in one send", maxMessages)
		}
	}

	pos, _, err := a.store.Send(ctx, todevicestore.Send{Sender: string(dev.UserID), SenderDevice: string(dev.DeviceID),
		TxnID: txnID, Type: evType, CreatedTS: a.now().UnixMilli(), Messages: msgs})
	if err != nil {
		return err
	}
	if pos > 0 {
		advance(&a.inbox.pos, pos)
		keys := map[string]bool{}
		for d := range msgs {
			keys[userapi.UserKey(id.UserID(d.UserID))] = true
		}
		a.notify(synctypes.StreamToDevice, pos, setKeys(keys))
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// validText reports whether s can be stored and compared as text: 1 to maxIDLength bytes of
// UTF-8 without NUL (PostgreSQL refuses both in text columns).
func validText(s string) bool {
	return s != "" && len(s) <= maxIDLength && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// validUserID reports whether s is a user ID (appendices, "User Identifiers"), accepting the
// historical localparts servers must still accept.
func validUserID(s string) bool {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return false
	}
	_, _, err := id.UserID(s).ParseAndValidateRelaxed()
	return err == nil
}

// truncate shortens what a client sent for an error message.
func truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	for i := 64; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}
