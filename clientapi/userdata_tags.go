package clientapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// tagEventType is the room account data event that holds a room's tags ("Room Tagging"): its
// content is {"tags": {name: {"order": number, ...}}}. Storing tags there is what lets /sync
// deliver them in the room's account_data.
const tagEventType = "m.tag"

// tagTarget checks the caller and path of a tag request and returns the room and, for the
// routes that have one, the tag name.
func tagTarget(r *http.Request, dev *userapi.Device) (id.RoomID, string, error) {
	if err := ownUser(r, dev); err != nil {
		return "", "", err
	}
	vars := httpapi.Vars(r)
	roomID, err := pathRoomID(vars)
	if err != nil {
		return "", "", err
	}
	tag, ok := vars["tag"]
	// "The name of a tag MUST NOT exceed 255 bytes."
	if ok && !validPathString(tag) {
		return "", "", httpapi.InvalidParam("Invalid tag name: at most %d bytes of UTF-8 text", maxIDLength)
	}
	return roomID, tag, nil
}

// roomTags loads the content of a room's m.tag event and its tags. Content set directly through
// the account data API may not have the spec's shape: entries that are not objects are
// dropped, and other top-level keys are kept as they are.
func (a *API) roomTags(ctx context.Context, userID id.UserID, roomID id.RoomID) (content, tags map[string]json.RawMessage, err error) {
	raw, err := a.users.GetAccountData(ctx, userID, roomID, tagEventType)
	if err != nil && !errors.Is(err, userapi.ErrNotFound) {
		return nil, nil, err
	}
	content = map[string]json.RawMessage{}
	tags = map[string]json.RawMessage{}
	if raw == nil || json.Unmarshal(raw, &content) != nil || content == nil {
		content = map[string]json.RawMessage{}
		return content, tags, nil
	}
	var stored map[string]json.RawMessage
	if json.Unmarshal(content["tags"], &stored) == nil {
		for name, v := range stored {
			if v = bytes.TrimSpace(v); len(v) > 0 && v[0] == '{' {
				tags[name] = v
			}
		}
	}
	return content, tags, nil
}

// saveTags writes tags back into the room's m.tag event.
//
// This reads, changes and writes the event, so two tag changes to one room at the same moment
// can lose one of them; the user component offers no atomic update of account data yet.
func (a *API) saveTags(ctx context.Context, userID id.UserID, roomID id.RoomID, content, tags map[string]json.RawMessage) error {
	encoded, err := marshalStored(tags)
	if err != nil {
		return err
	}
	content["tags"] = encoded
	raw, err := marshalStored(content)
	if err != nil {
		return err
	}
	return a.users.SetAccountData(ctx, userID, roomID, tagEventType, raw)
}

// getTags answers GET /user/{userId}/rooms/{roomId}/tags.
func (a *API) getTags(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, _, err := tagTarget(r, dev)
	if err != nil {
		return err
	}
	_, tags, err := a.roomTags(r.Context(), dev.UserID, roomID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"tags": tags})
	return nil
}

// setTag answers PUT /user/{userId}/rooms/{roomId}/tags/{tag}. The body is the tag's object
// (definitions/tag.yaml): "order", if present, is a number in [0,1]; other keys are kept.
func (a *API) setTag(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, tag, err := tagTarget(r, dev)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	if raw, ok := body["order"]; ok {
		var order *float64
		if err := json.Unmarshal(raw, &order); err != nil || order == nil {
			return httpapi.BadJSON("order must be a number")
		}
		if *order < 0 || *order > 1 {
			return httpapi.BadJSON("order must be between 0 and 1")
		}
		// Store the number plainly: clients write it in any notation (mautrix as 5e-01).
		if body["order"], err = json.Marshal(*order); err != nil {
			return err
		}
	}
	value, err := marshalStored(body)
	if err != nil {
		return err
	}
	content, tags, err := a.roomTags(r.Context(), dev.UserID, roomID)
	if err != nil {
		return err
	}
	tags[tag] = value
	if err := a.saveTags(r.Context(), dev.UserID, roomID, content, tags); err != nil {
		return err
	}
	writeEmpty(w)
	return nil
}

// deleteTag answers DELETE /user/{userId}/rooms/{roomId}/tags/{tag}; removing a tag the room
// does not have succeeds without a change.
func (a *API) deleteTag(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, tag, err := tagTarget(r, dev)
	if err != nil {
		return err
	}
	content, tags, err := a.roomTags(r.Context(), dev.UserID, roomID)
	if err != nil {
		return err
	}
	if _, ok := tags[tag]; ok {
		delete(tags, tag)
		if err := a.saveTags(r.Context(), dev.UserID, roomID, content, tags); err != nil {
			return err
		}
	}
	writeEmpty(w)
	return nil
}
