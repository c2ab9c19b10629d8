package syncapi

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/syncstore"
)

// maxCachedVisibility bounds the rooms whose history visibility the consumer keeps in memory;
// past it the cache starts again, and misses read the database.
const maxCachedVisibility = 100_000

// visibilityCache holds each room's current history visibility as the consumer has seen it.
// Only the consumer (under consumeMu) writes it.
type visibilityCache struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *visibilityCache) get(room string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[room]
	return v, ok
}

func (c *visibilityCache) set(room, v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedVisibility {
		c.m = map[string]string{}
	}
	c.m[room] = v
}

// visibilityRank orders history visibilities from most to least permissive.
var visibilityRank = map[string]int{"world_readable": 0, "shared": 1, "invited": 2, "joined": 3}

// parseVisibility reads content.history_visibility, "shared" when missing or unknown (client-
// server API, "History visibility": shared is the default).
func parseVisibility(content []byte) string {
	var c struct {
		HistoryVisibility string `json:"history_visibility"`
	}
	if json.Unmarshal(content, &c) != nil {
		return "shared"
	}
	if _, ok := visibilityRank[c.HistoryVisibility]; !ok {
		return "shared"
	}
	return c.HistoryVisibility
}

// consume stores a batch of output events and moves the cursor, in one transaction.
func (a *API) consume(ctx context.Context, evs []roomserver.OutputEvent) error {
	var visUpdates [][2]string
	err := a.db.WithTx(ctx, func(tx *storage.Tx) error {
		visUpdates = visUpdates[:0]
		local := map[string]string{} // visibility changes within this transaction
		for _, oe := range evs {
			ev := oe.Event
			room := string(ev.RoomID())
			vis, ok := local[room]
			if !ok {
				var err error
				if vis, err = a.currentVisibility(ctx, tx, room, oe.Pos); err != nil {
					return err
				}
			}
			evVis := vis
			if ev.Type() == "m.room.history_visibility" && ev.StateKey() != nil && *ev.StateKey() == "" {
				// The change itself is visible under the more permissive of the old and new
				// settings, so both those who could see before and after see it.
				next := parseVisibility(ev.Content())
				if visibilityRank[next] < visibilityRank[vis] {
					evVis = next
				}
				local[room] = next
				visUpdates = append(visUpdates, [2]string{room, next})
			} else if !ok {
				local[room] = vis
			}
			if err := a.storeEvent(ctx, tx, oe, evVis); err != nil {
				return err
			}
		}
		return a.store.SetCursor(ctx, tx, consumerName, evs[len(evs)-1].Pos)
	})
	if err != nil {
		if a.push != nil {
			a.push.Reset()
		}
		return err
	}
	for _, u := range visUpdates {
		a.vis.set(u[0], u[1])
	}
	return nil
}

// currentVisibility is the room's history visibility before stream position pos.
func (a *API) currentVisibility(ctx context.Context, q storage.Querier, room string, pos int64) (string, error) {
	if v, ok := a.vis.get(room); ok {
		return v, nil
	}
	js, err := a.store.LatestState(ctx, q, room, "m.room.history_visibility", pos-1)
	if err != nil {
		return "", err
	}
	v := "shared"
	if js != nil {
		var ev struct {
			Content json.RawMessage `json:"content"`
		}
		json.Unmarshal(js, &ev)
		v = parseVisibility(ev.Content)
	}
	a.vis.set(room, v)
	return v, nil
}

// relatesTo reads content["m.relates_to"] (client-server API, "Forming relationships between
// events").
func relatesTo(content []byte) (relType, target string) {
	var c struct {
		RelatesTo *struct {
			RelType string `json:"rel_type"`
			EventID string `json:"event_id"`
		} `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || c.RelatesTo == nil || c.RelatesTo.EventID == "" || c.RelatesTo.RelType == "" {
		return "", ""
	}
	return c.RelatesTo.RelType, c.RelatesTo.EventID
}

// containsURL reports whether content has a url key (RoomEventFilter contains_url).
func containsURL(content []byte) bool {
	var c struct {
		URL any `json:"url"`
	}
	return json.Unmarshal(content, &c) == nil && c.URL != nil
}

func (a *API) storeEvent(ctx context.Context, tx *storage.Tx, oe roomserver.OutputEvent, vis string) error {
	ev := oe.Event
	js, err := json.Marshal(ev.Client(nil))
	if err != nil {
		return err
	}
	relType, target := relatesTo(ev.Content())
	rec := &syncstore.Event{
		Pos: oe.Pos, RoomID: string(ev.RoomID()), EventID: string(ev.EventID()), Type: ev.Type(), StateKey: ev.StateKey(),
		Sender: string(ev.Sender()), Depth: ev.Depth(), OriginServerTS: ev.OriginServerTS(), Visibility: vis,
		ContainsURL: containsURL(ev.Content()), JSON: js, RelType: relType, RelTarget: target,
	}
	if oe.Txn != nil {
		rec.TxnDevice, rec.TxnID = string(oe.Txn.DeviceID), oe.Txn.TxnID
	}
	if err := a.store.InsertEvent(ctx, tx, rec); err != nil {
		return err
	}
	if a.push != nil {
		if err := a.push.Process(ctx, tx, oe, js); err != nil {
			return err
		}
	}
	if ev.Type() == "m.room.member" && ev.StateKey() != nil {
		m := roomserver.MembershipOf(ev)
		if err := a.store.AddMembership(ctx, tx, rec.RoomID, *ev.StateKey(), oe.Pos, m); err != nil {
			return err
		}
		if m == "join" {
			if err := a.store.Unforget(ctx, tx, *ev.StateKey(), rec.RoomID); err != nil {
				return err
			}
		}
	}
	if ev.Redacts() != "" {
		return a.applyRedaction(ctx, tx, ev, js)
	}
	return nil
}

// applyRedaction replaces the redacted event's stored JSON with its redacted form (client-server
// API, "Redactions"): when the target is in the same room and the redaction comes from the
// target's server or from a user whose power level allows redacting others' events (rooms/v3.md
// "Handling redactions"). The client API checks local senders before sending.
func (a *API) applyRedaction(ctx context.Context, tx *storage.Tx, redaction *pdu.Event, redactionJSON []byte) error {
	target, err := a.store.EventByID(ctx, tx, string(redaction.Redacts()))
	if err != nil || target == nil || target.RoomID != string(redaction.RoomID()) || target.RedactedBecause != nil {
		return err
	}
	if id.UserID(target.Sender).Homeserver() != redaction.Sender().Homeserver() {
		state, err := a.rooms.CurrentState(ctx, redaction.RoomID())
		if err != nil {
			return err
		}
		pl := auth.LoadPowerLevels(roomserver.StateOf(state))
		if pl.User(redaction.Sender()) < pl.Redact() {
			return nil
		}
	}
	orig, err := a.rooms.Event(ctx, id.EventID(target.EventID))
	if err != nil {
		return err
	}
	if orig == nil {
		return fmt.Errorf("redact %s: the roomserver does not have it", target.EventID)
	}
	redacted, err := json.Marshal(orig.Redacted().Client(nil))
	if err != nil {
		return err
	}
	return a.store.Redact(ctx, tx, target.EventID, redacted, redactionJSON)
}
