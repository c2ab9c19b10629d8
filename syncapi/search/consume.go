package search

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/searchstore"
)

// visibilityRank orders history visibilities from most to least permissive.
var visibilityRank = map[string]int{"world_readable": 0, "shared": 1, "invited": 2, "joined": 3}

// batch is what one transaction of the consumer has changed so far.
type batch struct {
	rooms map[string]*searchstore.Room
}

// index stores a batch of output events and moves the cursor past them, in one transaction.
func (s *Search) index(ctx context.Context, evs []roomserver.OutputEvent) error {
	return s.opts.DB.WithTx(ctx, func(tx *storage.Tx) error {
		b := &batch{rooms: map[string]*searchstore.Room{}} // afresh on every attempt of the transaction
		for _, oe := range evs {
			if err := s.indexEvent(ctx, tx, b, oe); err != nil {
				return fmt.Errorf("event %s at %d: %w", oe.Event.EventID(), oe.Pos, err)
			}
		}
		for _, r := range b.rooms {
			if err := s.store.SetRoom(ctx, tx, *r); err != nil {
				return err
			}
		}
		return s.store.SetCursor(ctx, tx, cursorName, evs[len(evs)-1].Pos)
	})
}

func (s *Search) room(ctx context.Context, tx *storage.Tx, b *batch, roomID string) (*searchstore.Room, error) {
	if r := b.rooms[roomID]; r != nil {
		return r, nil
	}
	r, err := s.store.Room(ctx, tx, roomID)
	if err != nil {
		return nil, err
	}
	b.rooms[roomID] = &r
	return &r, nil
}

// indexEvent stores one event's header, its text if it is searchable, and what it changes of
// the room, the memberships and the directory. Content is read leniently: whatever another
// server sent, a malformed field only means nothing is indexed from it.
func (s *Search) indexEvent(ctx context.Context, tx *storage.Tx, b *batch, oe roomserver.OutputEvent) error {
	ev := oe.Event
	r, err := s.room(ctx, tx, b, string(ev.RoomID()))
	if err != nil {
		return err
	}
	h := &searchstore.Event{Pos: oe.Pos, EventID: string(ev.EventID()), RoomID: r.ID, Sender: string(ev.Sender()),
		Type: ev.Type(), StateKey: ev.StateKey(), Visibility: r.Visibility}
	var c content
	_ = json.Unmarshal(ev.Content(), &c)
	if sk := ev.StateKey(); sk != nil && *sk == "" {
		switch ev.Type() {
		case "m.room.history_visibility":
			// The change itself is visible to those who could see under either setting
			// ("History visibility").
			next := c.visibility()
			if visibilityRank[next] < visibilityRank[r.Visibility] {
				h.Visibility = next
			}
			r.Visibility = next
		case "m.room.join_rules":
			r.JoinRule = str(c.JoinRule)
		case "m.room.encryption":
			r.Encrypted = true
		case "m.room.create":
			r.CreateEvent = h.EventID
		case "m.room.power_levels":
			r.PowerEvent = h.EventID
		}
	}
	h.Text = searchText(ev, &c)
	if ev.Type() == "m.room.message" && r.Encrypted {
		h.Text = "" // "The search will not include rooms that are end to end encrypted."
	}
	if h.Redacted, err = s.redactedEarlier(ctx, tx, h); err != nil {
		return err
	}
	if err := s.store.InsertEvent(ctx, tx, h); err != nil {
		return err
	}
	if sk := ev.StateKey(); sk != nil && ev.Type() == "m.room.member" {
		if err := s.indexMember(ctx, tx, r.ID, *sk, &c, oe.Pos); err != nil {
			return err
		}
	}
	if ev.Type() == "m.room.redaction" && ev.Redacts() != "" {
		return s.indexRedaction(ctx, tx, r, ev)
	}
	return nil
}

// content holds the fields of event content the index reads; each is checked for type where used.
type content struct {
	Body       json.RawMessage `json:"body"`
	Name       json.RawMessage `json:"name"`
	Topic      json.RawMessage `json:"topic"`
	MTopic     json.RawMessage `json:"m.topic"`
	Visibility json.RawMessage `json:"history_visibility"`
	JoinRule   json.RawMessage `json:"join_rule"`
	Membership json.RawMessage `json:"membership"`
	Display    json.RawMessage `json:"displayname"`
	Avatar     json.RawMessage `json:"avatar_url"`
}

// str returns a JSON string's value, "" for anything else.
func str(raw json.RawMessage) string {
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	return v
}

// visibility reads content.history_visibility: "shared" when missing or not understood
// ("History visibility": the default).
func (c *content) visibility() string {
	v := str(c.Visibility)
	if _, ok := visibilityRank[v]; !ok {
		return "shared"
	}
	return v
}

// searchText is the text the search matches an event by (client-server API, "Server Side
// Search", room_events): content.body of m.room.message, content.name of m.room.name, and of
// m.room.topic content.topic with the text/plain bodies of content["m.topic"].
func searchText(ev *pdu.Event, c *content) string {
	sk := ev.StateKey()
	switch {
	case ev.Type() == "m.room.message" && sk == nil:
		return str(c.Body)
	case ev.Type() == "m.room.name" && sk != nil && *sk == "":
		return str(c.Name)
	case ev.Type() == "m.room.topic" && sk != nil && *sk == "":
		parts := []string{str(c.Topic)}
		var mt struct {
			Text []struct {
				MimeType *string         `json:"mimetype"`
				Body     json.RawMessage `json:"body"`
			} `json:"m.text"`
		}
		if json.Unmarshal(c.MTopic, &mt) == nil {
			for _, t := range mt.Text {
				if b := str(t.Body); (t.MimeType == nil || *t.MimeType == "text/plain") && b != parts[0] {
					parts = append(parts, b)
				}
			}
		}
		return strings.TrimSpace(strings.Join(parts, "\n"))
	}
	return ""
}

// indexMember records a membership change: the local user's spans for history visibility, and
// the directory's room members and profile (the profile of the latest join).
func (s *Search) indexMember(ctx context.Context, tx *storage.Tx, roomID, user string, c *content, pos int64) error {
	if !strings.HasPrefix(user, "@") {
		return nil
	}
	membership := str(c.Membership)
	local := id.UserID(user).Homeserver() == s.opts.ServerName
	if local {
		if err := s.store.SetMembership(ctx, tx, user, roomID, membership, pos); err != nil {
			return err
		}
	}
	if err := s.store.SetJoined(ctx, tx, roomID, user, membership == "join"); err != nil {
		return err
	}
	if membership != "join" {
		return nil
	}
	return s.store.SetProfile(ctx, tx, searchstore.DirUser{UserID: user, DisplayName: str(c.Display), AvatarURL: str(c.Avatar)}, local)
}

// redactionApplies reports whether a redaction takes effect on a target of sender: when the
// redaction's sender may redact others' events or is of the same server (rooms/v3.md "Handling
// redactions"; for v1 and v2 the auth rules already checked the same).
func redactionApplies(r searchstore.Redaction, target *searchstore.Event) bool {
	return r.RoomID == target.RoomID &&
		(r.Powerful || id.UserID(r.Sender).Homeserver() == id.UserID(target.Sender).Homeserver())
}

// redactedEarlier reports whether a redaction that came before the event applies to it.
func (s *Search) redactedEarlier(ctx context.Context, tx *storage.Tx, h *searchstore.Event) (bool, error) {
	rs, err := s.store.Redactions(ctx, tx, h.EventID)
	if err != nil {
		return false, err
	}
	for _, r := range rs {
		if redactionApplies(r, h) {
			return true, nil
		}
	}
	return false, nil
}

// indexRedaction records a redaction and takes its target out of the index when it applies.
func (s *Search) indexRedaction(ctx context.Context, tx *storage.Tx, r *searchstore.Room, ev *pdu.Event) error {
	powerful, err := s.canRedactOthers(ctx, r, ev.Sender())
	if err != nil {
		return err
	}
	red := searchstore.Redaction{TargetID: string(ev.Redacts()), RedactionID: string(ev.EventID()), RoomID: r.ID,
		Sender: string(ev.Sender()), Powerful: powerful}
	if err := s.store.AddRedaction(ctx, tx, red); err != nil {
		return err
	}
	target, err := s.store.EventHeader(ctx, tx, red.TargetID)
	if err != nil || target == nil || target.Redacted || !redactionApplies(red, target) {
		return err
	}
	return s.store.Redact(ctx, tx, target)
}

// canRedactOthers reports whether user's power level reaches the redact level, under the
// power levels the stream has reached.
func (s *Search) canRedactOthers(ctx context.Context, r *searchstore.Room, user id.UserID) (bool, error) {
	var evs []auth.Event
	for _, e := range []string{r.CreateEvent, r.PowerEvent} {
		if e == "" {
			continue
		}
		ev, err := s.opts.Rooms.Event(ctx, id.EventID(e))
		if err != nil {
			return false, err
		}
		if ev != nil {
			evs = append(evs, ev)
		}
	}
	pl := auth.LoadPowerLevels(auth.NewStateMap(evs...))
	return pl.User(user) >= pl.Redact(), nil
}
