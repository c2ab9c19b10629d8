package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"
)

// InfinitePowerLevel stands for the "infinitely high" power level of room creators in room
// version 12 and later. No level written in an m.room.power_levels event reaches it: from v6 on
// levels are canonical JSON integers within ±(2^53−1).
const InfinitePowerLevel int64 = math.MaxInt64

// maxCanonicalInt bounds integers in canonical JSON (appendices, "Canonical JSON").
const maxCanonicalInt = 1<<53 - 1

// The integer-valued properties of m.room.power_levels content and their defaults
// (client-server API, m.room.power_levels).
var namedLevels = [...]string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}

var namedDefaults = [...]int64{0, 0, 50, 50, 50, 50, 0}

const (
	iUsersDefault = iota
	iEventsDefault
	iStateDefault
	iBan
	iRedact
	iKick
	iInvite
)

const (
	defaultCreatorLevel      = 100 // the creator when there is no m.room.power_levels (v1–v11)
	defaultNotificationLevel = 50  // notifications.room
)

var (
	errNotInteger = errors.New("not an integer")
	errOutOfRange = errors.New("outside the range of a double")
)

// parseLevel reads one power level value under the version's rules: integers everywhere;
// strings holding an integer up to v9 and floats (truncated) up to v5, per the "Deprecated event
// content schemas" of those versions. errOutOfRange marks a v1–v5 number a double cannot hold,
// which rejects the power levels event.
func parseLevel(raw []byte, v id.RoomVersion) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0, errNotInteger
	}
	switch c := raw[0]; {
	case c == '"':
		if v.ValidatePowerLevelInts() {
			return 0, errNotInteger
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, errNotInteger
		}
		return parseStringLevel(s)
	case c == '-' || (c >= '0' && c <= '9'):
		return parseNumberLevel(raw, v)
	default:
		return 0, errNotInteger
	}
}

func parseNumberLevel(raw []byte, v id.RoomVersion) (int64, error) {
	s := string(raw)
	if !strings.ContainsAny(s, ".eE") {
		n, err := strconv.ParseInt(s, 10, 64)
		if err == nil {
			if v.ForbidFloatsAndBigInts() && (n > maxCanonicalInt || n < -maxCanonicalInt) {
				return 0, errNotInteger
			}
			return n, nil
		}
		if v.ForbidFloatsAndBigInts() || !errors.Is(err, strconv.ErrRange) {
			return 0, errNotInteger
		}
	} else if v.ForbidFloatsAndBigInts() {
		return 0, errNotInteger
	}
	// v1–v5 "m.room.power_levels events accept values as floats": expand the exponent, then
	// truncate at the decimal point; beyond a double's range the event is rejected.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		if errors.Is(err, strconv.ErrRange) && f == 0 {
			return 0, nil // underflow: a tiny value truncates to 0
		}
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, errNotInteger
		}
		return 0, errOutOfRange
	}
	return clampFloat(math.Trunc(f)), nil
}

func clampFloat(f float64) int64 {
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

// parseStringLevel accepts the v1–v9 string form: optional surrounding whitespace, an optional
// sign, then base 10 digits (leading zeroes allowed).
func parseStringLevel(s string) (int64, error) {
	s = strings.TrimSpace(s)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, errNotInteger
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errNotInteger
		}
	}
	u, err := strconv.ParseUint(s, 10, 64)
	switch {
	case err != nil || (!neg && u > math.MaxInt64):
		if neg {
			return math.MinInt64, nil
		}
		return math.MaxInt64, nil
	case neg && u > math.MaxInt64:
		return math.MinInt64, nil
	case neg:
		return -int64(u), nil
	}
	return int64(u), nil
}

// plContent is the content of an m.room.power_levels event with every value read as a level.
type plContent struct {
	v      id.RoomVersion
	named  [len(namedLevels)]int64
	has    [len(namedLevels)]bool
	events map[string]int64
	notifs map[string]int64
	users  map[string]int64
	// In parseLazy mode users stays nil: usersRaw is the users object, found holds the levels
	// of the users in wanted (those without an entry are absent from it), and anyone else is
	// looked up by scanning usersRaw.
	usersRaw []byte
	found    map[string]int64
	wanted   []id.UserID
}

// plProblem is why a new power levels event fails validation: the index of the power levels
// sub-rule within the version's text and a reason.
type plProblem struct {
	sub    int
	reason string
}

type parseMode int

const (
	parseStrict parseMode = iota // the event being authorised: validate, report the first problem
	parseFull                    // state: drop values that are not levels, as if absent
	parseLazy                    // like parseFull, but leave users to be scanned per lookup
)

// parsePowerLevels reads m.room.power_levels content; in parseLazy mode the levels of the users
// in want are picked up on the way. Duplicate keys: the last one counts, as in encoding/json.
func parsePowerLevels(content []byte, v id.RoomVersion, mode parseMode, want ...id.UserID) (*plContent, *plProblem) {
	ints := v.ValidatePowerLevelInts() // v10 text sub-rules 1 and 2
	usersRule := 1
	if ints {
		usersRule = 3
	}
	pc := &plContent{v: v}
	var named [len(namedLevels)][]byte
	var events, notifs, users []byte
	sc := scanner{b: content}
	sc.ws()
	ok := sc.object(func(k jkey) bool {
		start := sc.i
		name := k.String()
		if name == "users" && mode == parseLazy && sc.i < len(sc.b) && sc.b[sc.i] == '{' {
			// Pick the wanted users' levels while passing over the object.
			found := make(map[string]int64, len(want))
			if !sc.object(func(uk jkey) bool {
				vs := sc.i
				if !sc.value() {
					return false
				}
				for _, u := range want {
					if uk.equals(string(u)) {
						if l, err := parseLevel(sc.b[vs:sc.i], v); err == nil {
							found[string(u)] = l
						} else {
							delete(found, string(u))
						}
					}
				}
				return true
			}) {
				return false
			}
			users, pc.found = sc.b[start:sc.i], found
			return true
		}
		if !sc.value() {
			return false
		}
		val := sc.b[start:sc.i]
		switch name {
		case "events":
			events = val
		case "notifications":
			notifs = val
		case "users":
			users, pc.found = val, nil
		default:
			for i, n := range namedLevels {
				if n == name {
					named[i] = val
				}
			}
		}
		return true
	})
	sc.ws()
	if !ok || sc.i != len(sc.b) {
		return &plContent{v: v}, &plProblem{usersRule, "content is not a JSON object"}
	}
	var prob *plProblem
	note := func(sub int, reason string) {
		if prob == nil && mode == parseStrict {
			prob = &plProblem{sub, reason}
		}
	}
	for i, raw := range named {
		if raw == nil {
			continue
		}
		l, err := parseLevel(raw, v)
		switch {
		case err == nil:
			pc.named[i], pc.has[i] = l, true
		case err == errOutOfRange:
			note(usersRule, namedLevels[i]+" is outside the range of a double")
		case ints:
			note(1, namedLevels[i]+" is not an integer")
		}
	}
	pc.events = parseLevelMap(events, "events", v, ints, note)
	pc.notifs = parseLevelMap(notifs, "notifications", v, ints, note)
	switch {
	case users == nil:
	case mode == parseLazy && pc.found != nil:
		pc.usersRaw, pc.wanted = users, want
	default:
		pc.users = make(map[string]int64)
		if !eachMember(users, func(k jkey, val []byte) {
			l, err := parseLevel(val, v)
			if err != nil {
				note(usersRule, "users entry "+string(k.raw)+" is not an integer")
				return
			}
			key := k.String()
			if mode == parseStrict && !validUserID(key) {
				note(usersRule, "users key "+string(k.raw)+" is not a valid user ID")
				return
			}
			pc.users[key] = l
		}) {
			note(usersRule, "users is not an object")
		}
	}
	return pc, prob
}

func parseLevelMap(raw []byte, key string, v id.RoomVersion, ints bool, note func(int, string)) map[string]int64 {
	if raw == nil {
		return nil
	}
	out := make(map[string]int64)
	if !eachMember(raw, func(k jkey, val []byte) {
		l, err := parseLevel(val, v)
		switch {
		case err == nil:
			out[k.String()] = l
		case err == errOutOfRange:
			note(1, key+" entry "+string(k.raw)+" is outside the range of a double")
		case ints:
			note(2, key+" entry "+string(k.raw)+" is not an integer")
		}
	}) && ints {
		note(2, key+" is not an object")
	}
	return out
}

// user looks up one user's level.
func (c *plContent) user(user string) (int64, bool) {
	if c.usersRaw == nil {
		l, ok := c.users[user]
		return l, ok
	}
	if l, ok := c.found[user]; ok {
		return l, true
	}
	if slices.Contains(c.wanted, id.UserID(user)) {
		return 0, false
	}
	var found []byte
	eachMember(c.usersRaw, func(k jkey, val []byte) {
		if k.equals(user) {
			found = val // the last duplicate counts
		}
	})
	if found == nil {
		return 0, false
	}
	l, err := parseLevel(found, c.v)
	return l, err == nil
}

// PowerLevels is a room's power levels as the authorisation rules see them: the
// m.room.power_levels content with defaults filled in, plus the creators from m.room.create. It
// is read-only once loaded and safe for concurrent use.
type PowerLevels struct {
	c        *plContent
	exists   bool // the state holds an m.room.power_levels event
	creator  id.UserID
	creators []id.UserID
	infinite bool // creators have InfinitePowerLevel (v12+)
}

// CachedPowerLevels is an optional interface of a State that keeps the result of LoadPowerLevels
// for its own m.room.create and m.room.power_levels events (the roomserver's state cache), so
// that checks do not parse a large m.room.power_levels event again for every event.
type CachedPowerLevels interface {
	PowerLevels() *PowerLevels
}

// LoadPowerLevels reads the power levels of the room from state, using the room version of the
// create event (or else of the power levels event). The result indexes every user, to be kept
// (see CachedPowerLevels).
func LoadPowerLevels(state State) *PowerLevels {
	return loadFromState(state, parseFull)
}

func loadFromState(state State, mode parseMode) *PowerLevels {
	create := state.Get(typeCreate, "")
	v := id.RoomV1
	if create != nil && create.Version().IsKnown() {
		v = create.Version()
	} else if pl := state.Get(typePowerLevels, ""); pl != nil && pl.Version().IsKnown() {
		v = pl.Version()
	}
	return loadPowerLevels(v, state, parseCreate(create), mode)
}

// loadPowerLevels reads the power levels in state; mode parseLazy suits a State used for a
// single check that looks up the users in want.
func loadPowerLevels(v id.RoomVersion, state State, create *createInfo, mode parseMode, want ...id.UserID) *PowerLevels {
	if cs, ok := state.(CachedPowerLevels); ok {
		if p := cs.PowerLevels(); p != nil {
			return p
		}
	}
	p := &PowerLevels{creator: create.creator, creators: create.creators, infinite: create.infinite}
	if ev := state.Get(typePowerLevels, ""); ev != nil {
		p.exists = true
		p.c, _ = parsePowerLevels(ev.Content(), v, mode, want...)
	} else {
		p.c = &plContent{v: v}
	}
	return p
}

func (p *PowerLevels) named(i int) int64 {
	if p.c.has[i] {
		return p.c.named[i]
	}
	return namedDefaults[i]
}

// User returns the power level of user: InfinitePowerLevel for a v12+ creator, else users[user],
// else users_default; with no power levels event 100 for the (pre-v12) creator and 0 for others.
func (p *PowerLevels) User(user id.UserID) int64 {
	if p.infinite && slices.Contains(p.creators, user) {
		return InfinitePowerLevel
	}
	if !p.exists {
		if !p.infinite && user != "" && user == p.creator {
			return defaultCreatorLevel
		}
		return 0
	}
	if l, ok := p.c.user(string(user)); ok {
		return l
	}
	return p.named(iUsersDefault)
}

// Required returns the level needed to send an event of type typ: events[typ], else
// state_default (50) for state events or events_default (0) for others.
func (p *PowerLevels) Required(typ string, isState bool) int64 {
	if l, ok := p.c.events[typ]; ok {
		return l
	}
	if isState {
		return p.named(iStateDefault)
	}
	return p.named(iEventsDefault)
}

// Ban returns the ban level (default 50).
func (p *PowerLevels) Ban() int64 { return p.named(iBan) }

// Kick returns the kick level (default 50).
func (p *PowerLevels) Kick() int64 { return p.named(iKick) }

// Invite returns the invite level (default 0).
func (p *PowerLevels) Invite() int64 { return p.named(iInvite) }

// Redact returns the redact level (default 50), used for redactions of other users' events.
func (p *PowerLevels) Redact() int64 { return p.named(iRedact) }

// Notification returns the level for a notification key such as "room" (default 50).
func (p *PowerLevels) Notification(key string) int64 {
	if l, ok := p.c.notifs[key]; ok {
		return l
	}
	return defaultNotificationLevel
}

// UserPowerLevel returns the power level of user in state (see PowerLevels.User).
func UserPowerLevel(state State, user id.UserID) int64 {
	return loadOnce(state).User(user)
}

// RequiredPowerLevel returns the power level state requires to send an event of type typ.
func RequiredPowerLevel(state State, typ string, isState bool) int64 {
	return loadOnce(state).Required(typ, isState)
}

// loadOnce is LoadPowerLevels for a single lookup, which need not index every user.
func loadOnce(state State) *PowerLevels {
	return loadFromState(state, parseLazy)
}
