package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// testEvent is an Event built from a JSON literal in PDU shape.
type testEvent struct {
	id      id.EventID
	room    id.RoomID
	typ     string
	sk      *string
	sender  id.UserID
	content json.RawMessage
	prev    []id.EventID
	auth    []id.EventID
	depth   int64
	ts      int64
	redacts id.EventID
	version id.RoomVersion
}

func (e *testEvent) EventID() id.EventID        { return e.id }
func (e *testEvent) RoomID() id.RoomID          { return e.room }
func (e *testEvent) Type() string               { return e.typ }
func (e *testEvent) StateKey() *string          { return e.sk }
func (e *testEvent) Sender() id.UserID          { return e.sender }
func (e *testEvent) Content() json.RawMessage   { return e.content }
func (e *testEvent) PrevEventIDs() []id.EventID { return e.prev }
func (e *testEvent) AuthEventIDs() []id.EventID { return e.auth }
func (e *testEvent) Depth() int64               { return e.depth }
func (e *testEvent) OriginServerTS() int64      { return e.ts }
func (e *testEvent) Redacts() id.EventID        { return e.redacts }
func (e *testEvent) Version() id.RoomVersion    { return e.version }

// parseEvent reads a PDU-shaped JSON literal.
func parseEvent(t testing.TB, v id.RoomVersion, js string) *testEvent {
	t.Helper()
	var p struct {
		EventID  id.EventID      `json:"event_id"`
		RoomID   id.RoomID       `json:"room_id"`
		Type     string          `json:"type"`
		StateKey *string         `json:"state_key"`
		Sender   id.UserID       `json:"sender"`
		Content  json.RawMessage `json:"content"`
		Prev     []id.EventID    `json:"prev_events"`
		Auth     []id.EventID    `json:"auth_events"`
		Depth    int64           `json:"depth"`
		TS       int64           `json:"origin_server_ts"`
		Redacts  id.EventID      `json:"redacts"`
	}
	if err := json.Unmarshal([]byte(js), &p); err != nil {
		t.Fatalf("bad test event %s: %v", js, err)
	}
	if p.Content == nil {
		p.Content = json.RawMessage(`{}`)
	}
	return &testEvent{p.EventID, p.RoomID, p.Type, p.StateKey, p.Sender, p.Content, p.Prev, p.Auth, p.Depth, p.TS, p.Redacts, v}
}

var allVersions = []id.RoomVersion{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}

func vnum(v id.RoomVersion) int { n, _ := strconv.Atoi(string(v)); return n }

// Users of the test room: alice created it; bob is a moderator (50), carol a plain member, dave
// is not in the room, eve is banned, ivan invited, kim knocking. zed is an additional creator
// in v12 rooms that list one.
const (
	alice = "@alice:a.test"
	bob   = "@bob:b.test"
	carol = "@carol:c.test"
	dave  = "@dave:d.test"
	eve   = "@eve:e.test"
	ivan  = "@ivan:i.test"
	kim   = "@kim:k.test"
	zed   = "@zed:z.test"
)

// room is a test room of one version with its current state.
type room struct {
	t      testing.TB
	v      id.RoomVersion
	id     id.RoomID
	create *testEvent
	state  StateMap
	n      int
}

// newBareRoom makes a room holding only its create event, sent by alice, with extra content
// fields (a JSON object body without braces, may be empty).
func newBareRoom(t testing.TB, v id.RoomVersion, createExtra string) *room {
	r := &room{t: t, v: v, state: StateMap{}}
	content := `{`
	if vnum(v) <= 10 {
		content += `"creator":"` + alice + `",`
	}
	content += `"room_version":"` + string(v) + `"`
	if createExtra != "" {
		content += "," + createExtra
	}
	content += `}`
	if v.RoomIDIsCreateEventID() {
		r.create = parseEvent(t, v, `{"event_id":"$create","type":"m.room.create","state_key":"","sender":"`+alice+`","content":`+content+`}`)
		r.id = "!create"
	} else {
		r.id = "!room:a.test"
		r.create = parseEvent(t, v, `{"event_id":"$create:a.test","room_id":"!room:a.test","type":"m.room.create","state_key":"","sender":"`+alice+`","content":`+content+`}`)
	}
	r.state[StateKey{"m.room.create", ""}] = r.create
	return r
}

// newRoom makes the standard room: members, power levels (alice 100 unless she is a v12
// creator, bob 50) and a public join rule.
func newRoom(t testing.TB, v id.RoomVersion) *room {
	r := newBareRoom(t, v, "")
	users := `"` + bob + `":50`
	if !v.PrivilegedRoomCreators() {
		users = `"` + alice + `":100,` + users
	}
	r.set(`{"type":"m.room.power_levels","state_key":"","sender":"` + alice + `","content":{"users":{` + users + `}}}`)
	r.set(`{"type":"m.room.join_rules","state_key":"","sender":"` + alice + `","content":{"join_rule":"public"}}`)
	for user, m := range map[string]string{alice: "join", bob: "join", carol: "join", eve: "ban", ivan: "invite", kim: "knock"} {
		r.set(`{"type":"m.room.member","state_key":"` + user + `","sender":"` + alice + `","content":{"membership":"` + m + `"}}`)
	}
	return r
}

// ev builds an event of the room from a JSON literal: {room} and {create} are replaced by the
// room and create event IDs and {alice100,} by alice's users entry (none in v12); room_id, event_id (on the sender's server), prev_events and
// content get defaults when missing.
func (r *room) ev(js string) *testEvent {
	r.t.Helper()
	alice100 := `"` + alice + `":100,`
	if r.v.PrivilegedRoomCreators() {
		alice100 = ""
	}
	js = strings.NewReplacer("{room}", string(r.id), "{create}", string(r.create.id), "{alice100,}", alice100).Replace(js)
	e := parseEvent(r.t, r.v, js)
	r.n++
	if e.id == "" {
		e.id = id.EventID(fmt.Sprintf("$e%d:%s", r.n, serverOf(string(e.sender))))
	}
	if e.room == "" && !strings.Contains(js, `"room_id"`) {
		e.room = r.id
	}
	if e.prev == nil && !strings.Contains(js, `"prev_events"`) {
		e.prev = []id.EventID{"$prev:a.test"}
	}
	return e
}

// set puts a state event into the room's state, replacing what held its key.
func (r *room) set(js string) *testEvent {
	r.t.Helper()
	e := r.ev(js)
	if e.sk == nil {
		r.t.Fatalf("set needs a state event: %s", js)
	}
	r.state[StateKey{e.typ, *e.sk}] = e
	return e
}

// del removes a piece of state.
func (r *room) del(typ, sk string) { delete(r.state, StateKey{typ, sk}) }

// textOf returns which version's text of the authorisation rules v uses (the README table).
func textOf(v id.RoomVersion) int {
	switch n := vnum(v); {
	case n <= 2:
		return 1
	case n <= 5:
		return 3
	case n == 9:
		return 8
	default:
		return n
	}
}

// ruleFor picks the expected rule number for v from a compact spec such as
// "1:5.2.3 6:4.2.3 8:4.3.3 12:5.3.3": the entry with the highest text version not above v's.
func ruleFor(spec string, v id.RoomVersion) string {
	best, bestAt := "", -1
	for _, f := range strings.Fields(spec) {
		at, num, ok := strings.Cut(f, ":")
		if !ok {
			return f
		}
		n, _ := strconv.Atoi(at)
		if n <= textOf(v) && n > bestAt {
			best, bestAt = num, n
		}
	}
	return best
}

// expect checks err against a rule spec: "" means allowed, "-" rejected by any rule.
func expect(t testing.TB, v id.RoomVersion, err error, spec string) {
	t.Helper()
	want := ruleFor(spec, v)
	if want == "" {
		if err != nil {
			t.Fatalf("want allowed, got %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want rejection by rule %s, got allowed", want)
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("want *Error, got %v", err)
	}
	if want != "-" && ae.Rule != want {
		t.Fatalf("want rule %s, got %v", want, err)
	}
}

// versionsFrom and versionsUpTo select versions for a case.
func versionsFrom(n int) func(id.RoomVersion) bool {
	return func(v id.RoomVersion) bool { return vnum(v) >= n }
}

func versionsUpTo(n int) func(id.RoomVersion) bool {
	return func(v id.RoomVersion) bool { return vnum(v) <= n }
}

// checkCase is one row of a table run against every room version it applies to.
type checkCase struct {
	name  string
	only  func(id.RoomVersion) bool // nil: every version
	setup func(r *room)
	event string
	// rule is the expected outcome as a spec for ruleFor: "" allowed, otherwise the rule number
	// per text version ("-" for any rule), e.g. "1:5.2.3 6:4.2.3".
	rule string
}

func runCheckCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, v := range allVersions {
		for _, c := range cases {
			if c.only != nil && !c.only(v) {
				continue
			}
			t.Run("v"+string(v)+"/"+c.name, func(t *testing.T) {
				r := newRoom(t, v)
				if c.setup != nil {
					c.setup(r)
				}
				expect(t, v, Check(r.ev(c.event), r.state), c.rule)
			})
		}
	}
}

// setCreate rewrites the create event's content with extra fields, as newBareRoom does.
func (r *room) setCreate(extra string) {
	fresh := newBareRoom(r.t, r.v, extra)
	r.create.content = fresh.create.content
}
