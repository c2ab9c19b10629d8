package push

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

const (
	defaultNotificationLimit = 20
	maxNotificationLimit     = 100
)

// notificationEntry is one entry of GET /notifications (notifications.yaml).
type notificationEntry struct {
	Actions    json.RawMessage `json:"actions"`
	Event      json.RawMessage `json:"event"`
	ProfileTag string          `json:"profile_tag,omitempty"`
	Read       bool            `json:"read"`
	RoomID     string          `json:"room_id"`
	TS         int64           `json:"ts"`
}

// notifications answers GET /notifications (client-server API, "Listing Notifications"): the
// user's notifications, newest first, paged by next_token; only=highlight keeps those that
// highlight.
func (p *Push) notifications(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	q := r.URL.Query()
	var from int64
	if s := q.Get("from"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return httpapi.InvalidParam("Invalid from token")
		}
		from = n
	}
	limit := defaultNotificationLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return httpapi.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, maxNotificationLimit)
	}
	onlyHighlight := false
	switch q.Get("only") {
	case "":
	case "highlight":
		onlyHighlight = true
	default:
		return httpapi.InvalidParam("only must be highlight")
	}
	out := struct {
		NextToken     string              `json:"next_token,omitempty"`
		Notifications []notificationEntry `json:"notifications"`
	}{Notifications: []notificationEntry{}}
	if limit > 0 {
		rooms, err := p.joinedRooms(r.Context(), dev.UserID)
		if err != nil {
			return err
		}
		ns, err := p.store.List(r.Context(), string(dev.UserID), rooms, from, limit+1, onlyHighlight)
		if err != nil {
			return err
		}
		if len(ns) > limit {
			ns = ns[:limit]
			out.NextToken = strconv.FormatInt(ns[limit-1].EventPos, 10)
		}
		for _, n := range ns {
			ev, err := p.events.EventByID(r.Context(), p.db, n.EventID)
			if err != nil {
				return err
			}
			if ev == nil {
				continue
			}
			out.Notifications = append(out.Notifications, notificationEntry{Actions: n.Actions, Event: ev.JSON,
				Read: n.Read, RoomID: n.RoomID, TS: n.TS})
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
