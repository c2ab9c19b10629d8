package push

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/pushstore"
	"github.com/latticehq/lattice/userapi"
)

// maxCachedMembers bounds the memberships the room cache holds over all rooms; past it the
// cache starts again and rooms are read back from the sync tables.
const maxCachedMembers = 2_000_000

// genericUser stands for "a local member who is neither mentioned nor the target": the only
// places the default rules name the user are .m.rule.invite_for_me (state_key) and
// .m.rule.is_user_mention (m.mentions.user_ids), so every such member with the default rules
// gets the outcome of this one evaluation.
const genericUser = id.UserID("@\x00:\x00")

// roomMembers is the membership of one room as the consumer has seen it, up to pos.
type roomMembers struct {
	pos    int64
	joined map[id.UserID]bool     // every joined user, of every server
	local  map[id.UserID]struct{} // the joined local users
}

// Process evaluates one event the sync consumer is storing, in its transaction tx: the push
// rules of every local member of the room but the sender (and of a local user it invites)
// decide who is notified (client-server API, "Push Notifications: Server behaviour"). An event
// of a local sender marks the sender's earlier notifications of its thread read ("Marking
// notifications as read": "by sending an event").
func (p *Push) Process(ctx context.Context, tx *storage.Tx, oe roomserver.OutputEvent, clientJSON []byte) error {
	ev := oe.Event
	room := ev.RoomID()
	members, err := p.members(ctx, tx, room, oe.Pos)
	if err != nil {
		return err
	}
	sender := ev.Sender()
	var target id.UserID
	membership := ""
	if ev.Type() == "m.room.member" && ev.StateKey() != nil {
		target = id.UserID(*ev.StateKey())
		membership = roomserver.MembershipOf(ev)
	}
	candidates := make([]id.UserID, 0, len(members.local))
	for u := range members.local {
		if u != sender {
			candidates = append(candidates, u)
		}
	}
	if membership == "invite" && p.local(target) && target != sender && !members.joined[target] {
		candidates = append(candidates, target)
	}
	memberCount := len(members.joined)
	// The event's own membership change counts from the next event on.
	if target != "" {
		p.applyMembership(members, target, membership, oe.Pos)
	}

	var thread string
	threadKnown := false
	threadOf := func() (string, error) {
		if !threadKnown {
			var err error
			thread, err = p.threadOf(ctx, tx, clientJSON)
			if err != nil {
				return "", err
			}
			threadKnown = true
		}
		return thread, nil
	}
	if p.local(sender) {
		t, err := threadOf()
		if err != nil {
			return err
		}
		if err := p.store.MarkRead(ctx, tx, string(sender), string(room), t, oe.Pos); err != nil {
			return err
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	res, err := p.evaluate(ctx, oe, clientJSON, candidates, target, memberCount)
	if err != nil || (res.generic == nil && len(res.groups) == 0) {
		return err
	}
	t, err := threadOf()
	if err != nil {
		return err
	}
	e := pushstore.Event{EventPos: oe.Pos, RoomID: string(room), EventID: string(ev.EventID()), ThreadID: t,
		Sender: string(sender), TS: p.now()}
	if res.generic != nil {
		ge := e
		ge.Highlight, ge.Actions = res.generic.highlight, res.generic.actions
		if err := p.store.InsertEvent(ctx, tx, ge); err != nil {
			return err
		}
	}
	for _, g := range res.groups {
		b := pushstore.Batch{Event: e, Users: g.users, Notify: g.notify}
		b.Highlight, b.Actions = g.highlight, g.actions
		if err := p.store.Insert(ctx, tx, b); err != nil {
			return err
		}
	}
	return nil
}

// group is the users whose outcome of one event is the same: notified with actions, or (notify
// false) not notified although the default outcome is.
type group struct {
	notify    bool
	highlight bool
	actions   json.RawMessage
	users     []string
}

// decision is who an event notifies: generic, when it is not nil, is the outcome of every local
// member with the default rules whom the event neither mentions nor targets (stored once for the
// event); groups are the members whose own outcome differs from it.
type decision struct {
	generic *group
	groups  []*group
}

// evaluate decides who the event notifies. Members with the default rules share one evaluation
// unless the event mentions or targets them; the others evaluate their own rules, and only
// those whose outcome differs from the shared one are recorded one by one.
func (p *Push) evaluate(ctx context.Context, oe roomserver.OutputEvent, clientJSON []byte, candidates []id.UserID,
	target id.UserID, memberCount int) (decision, error) {
	var res decision
	pe, err := userapi.NewPushEvent(clientJSON)
	if err != nil {
		return res, nil // not an event the rules can read: nobody is notified
	}
	custom, err := p.users.CustomPushRules(ctx, candidates)
	if err != nil {
		return res, err
	}
	mentioned := mentionedUsers(oe.Event.Content())
	// Those who ignore the sender get none of their events but state ("Ignoring Users"), and no
	// invites from them.
	var ignoring map[id.UserID]bool
	if oe.Event.StateKey() == nil || oe.Event.Type() == "m.room.member" {
		if ignoring, err = p.users.IgnoredBy(ctx, oe.Event.Sender()); err != nil {
			return res, err
		}
	}
	pc := &userapi.PushContext{MemberCount: memberCount}
	if err := p.fillPowerLevels(ctx, oe, custom, pc); err != nil {
		return res, err
	}

	groupOf := func(rule *userapi.PushRule) (*group, error) {
		if rule == nil {
			return nil, nil
		}
		o := userapi.OutcomeOf(rule.Actions)
		if !o.Notify {
			return nil, nil
		}
		actions, err := json.Marshal(rule.Actions)
		if err != nil {
			return nil, err
		}
		return &group{notify: true, highlight: o.Highlight, actions: actions}, nil
	}
	genericRules := userapi.DefaultPushRules(genericUser)
	if res.generic, err = groupOf(genericRules.Evaluate(pe, pc)); err != nil {
		return res, err
	}

	byKey := map[string]*group{}
	for _, u := range candidates {
		var rule *userapi.PushRule
		switch rs, ok := custom[u]; {
		case ignoring[u] && (oe.Event.StateKey() == nil || u == target):
			// no notification
		case ok:
			upc := pc
			if needsDisplayName(rs) {
				c := *pc
				if c.DisplayName, err = p.displayName(ctx, oe.Event.RoomID(), u); err != nil {
					return res, err
				}
				upc = &c
			}
			rule = rs.Evaluate(pe, upc)
		case mentioned[u] || u == target:
			rs := userapi.DefaultPushRules(u)
			rule = rs.Evaluate(pe, pc)
		default:
			continue // the generic outcome
		}
		g, err := groupOf(rule)
		if err != nil {
			return res, err
		}
		switch {
		case g == nil && res.generic == nil:
			continue
		case g == nil:
			g = &group{notify: false, actions: json.RawMessage("[]")}
		case res.generic != nil && g.highlight == res.generic.highlight && string(g.actions) == string(res.generic.actions):
			continue
		}
		key := fmt.Sprint(g.notify, g.highlight, string(g.actions))
		if have := byKey[key]; have != nil {
			g = have
		} else {
			byKey[key] = g
			res.groups = append(res.groups, g)
		}
		g.users = append(g.users, string(u))
	}
	return res, nil
}

// mentionedUsers reads content["m.mentions"].user_ids (client-server API, "User and room
// mentions").
func mentionedUsers(content []byte) map[id.UserID]bool {
	var c struct {
		Mentions struct {
			UserIDs []json.RawMessage `json:"user_ids"`
		} `json:"m.mentions"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.Mentions.UserIDs) == 0 {
		return nil
	}
	out := make(map[id.UserID]bool, len(c.Mentions.UserIDs))
	for _, raw := range c.Mentions.UserIDs {
		var u string
		if json.Unmarshal(raw, &u) == nil {
			out[id.UserID(u)] = true
		}
	}
	return out
}

// notificationKeys returns the keys of sender_notification_permission conditions the rules
// that may apply use: "room" for the default .m.rule.is_room_mention when the event mentions
// the room, and those of custom rules.
func notificationKeys(content []byte, custom map[id.UserID]*userapi.PushRuleset) []string {
	var keys []string
	var c struct {
		Mentions struct {
			Room bool `json:"room"`
		} `json:"m.mentions"`
	}
	if json.Unmarshal(content, &c) == nil && c.Mentions.Room {
		keys = append(keys, "room")
	}
	for _, rs := range custom {
		for _, k := range userapi.PushRuleKinds() {
			for _, r := range rs.Rules(k) {
				for _, cond := range r.Conditions {
					if cond.Kind == userapi.CondSenderNotificationPermission && !slices.Contains(keys, cond.Key) {
						keys = append(keys, cond.Key)
					}
				}
			}
		}
	}
	return keys
}

// fillPowerLevels puts the sender's power level and the notification levels into pc when a
// rule may read them; reading the room's state before the event costs enough to skip otherwise.
func (p *Push) fillPowerLevels(ctx context.Context, oe roomserver.OutputEvent, custom map[id.UserID]*userapi.PushRuleset, pc *userapi.PushContext) error {
	keys := notificationKeys(oe.Event.Content(), custom)
	if len(keys) == 0 {
		return nil
	}
	state, err := p.rooms.StateBefore(ctx, oe.Event.EventID())
	if err != nil {
		return fmt.Errorf("push: state before %s: %w", oe.Event.EventID(), err)
	}
	pl := auth.LoadPowerLevels(roomserver.StateOf(state))
	pc.SenderPowerLevel = pl.User(oe.Event.Sender())
	pc.NotificationPowerLevels = make(map[string]int64, len(keys))
	for _, k := range keys {
		pc.NotificationPowerLevels[k] = pl.Notification(k)
	}
	return nil
}

// needsDisplayName reports whether a ruleset has a contains_display_name condition.
func needsDisplayName(rs *userapi.PushRuleset) bool {
	for _, k := range []userapi.PushRuleKind{userapi.PushOverride, userapi.PushUnderride} {
		for _, r := range rs.Rules(k) {
			if !r.Enabled {
				continue
			}
			for _, c := range r.Conditions {
				if c.Kind == userapi.CondContainsDisplayName {
					return true
				}
			}
		}
	}
	return false
}

// displayName returns the user's display name in the room's current state, "" if none.
func (p *Push) displayName(ctx context.Context, room id.RoomID, user id.UserID) (string, error) {
	ev, err := p.rooms.StateEvent(ctx, room, "m.room.member", string(user))
	if err != nil || ev == nil {
		return "", err
	}
	var c struct {
		DisplayName string `json:"displayname"`
	}
	json.Unmarshal(ev.Content(), &c)
	return c.DisplayName, nil
}

// maxThreadHops bounds the walk from an event to its thread root ("Marking notifications as
// read": "implementations are encouraged to do a maximum of 3 hops").
const maxThreadHops = 3

// threadOf returns the thread root of an event ("" for the main timeline): the target of an
// m.thread relation, followed through other relations (a reaction to a threaded message is in
// its thread) for up to three hops.
func (p *Push) threadOf(ctx context.Context, q storage.Querier, clientJSON []byte) (string, error) {
	relType, target := relation(clientJSON)
	for range maxThreadHops {
		switch {
		case relType == "m.thread":
			return target, nil
		case target == "":
			return "", nil
		}
		ev, err := p.events.EventByID(ctx, q, target)
		if err != nil || ev == nil {
			return "", err
		}
		relType, target = ev.RelType, ev.RelTarget
	}
	if relType == "m.thread" {
		return target, nil
	}
	return "", nil
}

// relation reads content["m.relates_to"] of an event's JSON.
func relation(eventJSON []byte) (relType, target string) {
	var e struct {
		Content struct {
			RelatesTo *struct {
				RelType string `json:"rel_type"`
				EventID string `json:"event_id"`
			} `json:"m.relates_to"`
		} `json:"content"`
	}
	if json.Unmarshal(eventJSON, &e) != nil || e.Content.RelatesTo == nil {
		return "", ""
	}
	return e.Content.RelatesTo.RelType, e.Content.RelatesTo.EventID
}

// members returns the room's membership just before position pos, from the cache or the sync
// tables (read in tx, which holds the memberships of this batch's earlier events).
func (p *Push) members(ctx context.Context, tx *storage.Tx, room id.RoomID, pos int64) (*roomMembers, error) {
	p.mu.Lock()
	rm := p.roomsCache[room]
	p.mu.Unlock()
	if rm != nil && rm.pos < pos {
		return rm, nil
	}
	all, err := p.events.RoomMembers(ctx, tx, string(room), pos-1)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	rm = &roomMembers{pos: pos - 1, joined: make(map[id.UserID]bool, len(all)), local: map[id.UserID]struct{}{}}
	for u, m := range all {
		if m == "join" {
			rm.joined[id.UserID(u)] = true
			if p.local(id.UserID(u)) {
				rm.local[id.UserID(u)] = struct{}{}
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cachedSize+len(rm.joined) > maxCachedMembers {
		p.roomsCache, p.cachedSize = map[id.RoomID]*roomMembers{}, 0
	}
	if old := p.roomsCache[room]; old != nil {
		p.cachedSize -= len(old.joined)
	}
	p.roomsCache[room] = rm
	p.cachedSize += len(rm.joined)
	return rm, nil
}

// applyMembership records a membership change at pos in the cached room.
func (p *Push) applyMembership(rm *roomMembers, user id.UserID, membership string, pos int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rm.pos = pos
	was := rm.joined[user]
	switch {
	case membership == "join" && !was:
		rm.joined[user] = true
		if p.local(user) {
			rm.local[user] = struct{}{}
		}
		p.cachedSize++
	case membership != "join" && was:
		delete(rm.joined, user)
		delete(rm.local, user)
		p.cachedSize--
	}
}

// Reset forgets the room cache: the consumer calls it when a transaction failed after Process
// changed the cache for events that were not stored.
func (p *Push) Reset() {
	p.mu.Lock()
	p.roomsCache, p.cachedSize = map[id.RoomID]*roomMembers{}, 0
	p.mu.Unlock()
}
