package clientapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// createFilter answers POST /user/{userId}/filter: the body is validated against the Filter
// schema (definitions/sync_filter.yaml) and stored, normalised, for /sync to use.
func (a *API) createFilter(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	if err := ownUser(r, dev); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := httpapi.ReadJSON(r, &raw); err != nil {
		return err
	}
	filter, err := normaliseFilter(raw)
	if err != nil {
		return httpapi.BadJSON("Invalid filter: %v", err)
	}
	filterID, err := a.users.CreateFilter(r.Context(), dev.UserID, filter)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"filter_id": filterID})
	return nil
}

// getFilter answers GET /user/{userId}/filter/{filterId}.
func (a *API) getFilter(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	if err := ownUser(r, dev); err != nil {
		return err
	}
	filterID := httpapi.Vars(r)["filterId"]
	if !validPathString(filterID) {
		// We never hand out such an ID.
		return httpapi.NotFound("Unknown filter")
	}
	filter, err := a.users.Filter(r.Context(), dev.UserID, filterID)
	if errors.Is(err, userapi.ErrNotFound) {
		return httpapi.NotFound("Unknown filter")
	} else if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, filter)
	return nil
}

// maxFilterLimit is the largest "limit" a filter may carry: the largest integer that JSON
// numbers hold exactly (canonical JSON's range). Consumers still clamp it to their own maximum.
const maxFilterLimit = 1<<53 - 1

// normaliseFilter checks a filter body against the Filter schema (definitions/sync_filter.yaml,
// event_filter.yaml, room_event_filter.yaml) and returns it re-encoded with sorted keys and
// integer limits, so consumers can decode it into plain Go types. Unknown keys are kept
// unchecked (extensions and newer spec versions); null stands for an absent key. The error
// names the offending field.
func normaliseFilter(raw json.RawMessage) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the filter must be a JSON object")
	}
	if err := checkFilter(top); err != nil {
		return nil, err
	}
	return marshalStored(top)
}

// filterCheck validates (and may normalise) the value of one key of an object, named path.
type filterCheck func(obj map[string]any, key, path string) error

// checkFilterFields runs the checks of the keys present and not null in obj.
func checkFilterFields(obj map[string]any, prefix string, checks map[string]filterCheck) error {
	// In key order, so that of several mistakes the same one is always reported.
	for _, key := range slices.Sorted(maps.Keys(checks)) {
		if v, ok := obj[key]; ok && v != nil {
			if err := checks[key](obj, key, prefix+key); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkFilter validates the top level: the Filter object of sync_filter.yaml.
func checkFilter(f map[string]any) error {
	return checkFilterFields(f, "", map[string]filterCheck{
		"event_fields": filterStrings(nil, ""),
		"event_format": func(obj map[string]any, key, path string) error {
			if s, ok := obj[key].(string); !ok || s != "client" && s != "federation" {
				return fmt.Errorf("%s must be \"client\" or \"federation\"", path)
			}
			return nil
		},
		"presence":     filterObject(eventFilterChecks),
		"account_data": filterObject(eventFilterChecks),
		"room": filterObject(func() map[string]filterCheck {
			return map[string]filterCheck{
				"rooms":         filterStrings(validRoomID, "room IDs"),
				"not_rooms":     filterStrings(validRoomID, "room IDs"),
				"include_leave": filterBool,
				"ephemeral":     filterObject(roomEventFilterChecks),
				"state":         filterObject(roomEventFilterChecks),
				"timeline":      filterObject(roomEventFilterChecks),
				"account_data":  filterObject(roomEventFilterChecks),
			}
		}),
	})
}

// eventFilterChecks are the keys of an EventFilter (event_filter.yaml).
func eventFilterChecks() map[string]filterCheck {
	return map[string]filterCheck{
		"limit":       filterLimit,
		"types":       filterStrings(nil, ""),
		"not_types":   filterStrings(nil, ""),
		"senders":     filterStrings(validUserID, "user IDs"),
		"not_senders": filterStrings(validUserID, "user IDs"),
	}
}

// roomEventFilterChecks are the keys of a RoomEventFilter (room_event_filter.yaml): an
// EventFilter with room lists and switches.
func roomEventFilterChecks() map[string]filterCheck {
	checks := eventFilterChecks()
	checks["rooms"] = filterStrings(validRoomID, "room IDs")
	checks["not_rooms"] = filterStrings(validRoomID, "room IDs")
	for _, key := range []string{"unread_thread_notifications", "lazy_load_members", "include_redundant_members", "contains_url"} {
		checks[key] = filterBool
	}
	return checks
}

// object checks that a value is an object whose keys pass checks.
func filterObject(checks func() map[string]filterCheck) filterCheck {
	return func(obj map[string]any, key, path string) error {
		inner, ok := obj[key].(map[string]any)
		if !ok {
			return fmt.Errorf("%s must be an object", path)
		}
		return checkFilterFields(inner, path+".", checks())
	}
}

// stringList checks that a value is an array of strings, each passing valid if not nil (what
// names the kind of string the list holds).
func filterStrings(valid func(string) bool, what string) filterCheck {
	return func(obj map[string]any, key, path string) error {
		list, ok := obj[key].([]any)
		if !ok {
			return fmt.Errorf("%s must be an array of strings", path)
		}
		for i, item := range list {
			s, ok := item.(string)
			if !ok {
				return fmt.Errorf("%s[%d] must be a string", path, i)
			}
			if valid != nil && !valid(s) {
				return fmt.Errorf("%s[%d] (%q) is not valid: %s must contain %s", path, i, s, path, what)
			}
		}
		return nil
	}
}

// boolean checks that a value is true or false.
func filterBool(obj map[string]any, key, path string) error {
	if _, ok := obj[key].(bool); !ok {
		return fmt.Errorf("%s must be a boolean", path)
	}
	return nil
}

// limit checks that a value is a non-negative integer and rewrites it as an integer literal
// (10.0 and 1e1 become 10). event_filter.yaml asks for an integer greater than 0; 0 is taken
// too, as clients use it to ask for no events of a kind.
func filterLimit(obj map[string]any, key, path string) error {
	n, ok := obj[key].(json.Number)
	if !ok {
		return fmt.Errorf("%s must be an integer", path)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f > maxFilterLimit {
		return fmt.Errorf("%s must be a non-negative integer, got %s", path, n)
	}
	obj[key] = json.Number(strconv.FormatInt(int64(f), 10))
	return nil
}
