package userapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Push rule evaluation (client-server API, "Push Rules", "Conditions", "Actions"): which rule of
// a user's ruleset decides an event, and what its actions ask for. An event is flattened once
// into a PushEvent and then evaluated against the ruleset of every user it may notify.
//
// Globs are matched straight from the pattern text (case folding and wildcards on the fly), so
// nothing is compiled and there is no compiled form to cache or bound: a match allocates nothing
// and costs about as much as comparing the strings.

// Limits of evaluation.
const (
	// maxPushEventSize bounds the JSON that NewPushEvent reads: far above an event's 64 KiB with
	// its unsigned data, it only keeps a malformed one from costing unbounded work.
	maxPushEventSize = 1 << 20
	// maxPushEventDepth is how deep NewPushEvent flattens objects; properties below it are absent
	// to conditions. Real paths, such as content.m\.relates_to.m\.in_reply_to.event_id, are four
	// levels deep.
	maxPushEventDepth = 32
	// maxGlobLen bounds patterns and display names: a longer one never matches. A match costs up
	// to the value's length times the pattern's, so the bound keeps the worst case near 32 Mi
	// steps on the largest event, where real patterns (words, user and room IDs) are far shorter.
	maxGlobLen = 512
)

// valueKind is the JSON type of a flattened property.
type valueKind uint8

const (
	kindNone   valueKind = iota // absent, or a value no condition reads (object, fraction, large number)
	kindString                  // s
	kindInt                     // n, within ±(2**53-1)
	kindBool                    // n: 1 for true, 0 for false
	kindNull
	kindArray // arr
)

// pushValue is a non-compound JSON value: a string, an integer, a boolean or null.
type pushValue struct {
	kind valueKind
	s    string
	n    int64
}

// pushProp is a flattened property: a non-compound value, or an array of the non-compound values
// in it (others are ignored, as event_property_contains says).
type pushProp struct {
	pushValue
	arr []pushValue
}

// PushEvent is an event prepared for push rule evaluation: its properties by dot-separated path
// ("Dot-separated property paths"). It is read-only once built and safe for concurrent use.
type PushEvent struct {
	props map[string]pushProp // by canonical path: every '.' and '\' in a key escaped
	// The properties the implied conditions of content, room and sender rules read, and type,
	// which most rules match first.
	body, roomID, sender, typ pushValue
	bodyMode                  globMode // how content.body is searched
}

// NewPushEvent flattens an event in client or federation format (a JSON object with type,
// sender, room_id, content, …) for evaluation.
func NewPushEvent(eventJSON []byte) (*PushEvent, error) {
	if len(eventJSON) > maxPushEventSize {
		return nil, fmt.Errorf("push event: %d bytes, over the limit of %d", len(eventJSON), maxPushEventSize)
	}
	dec := json.NewDecoder(bytes.NewReader(eventJSON))
	dec.UseNumber() // integers are compared exactly
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("push event: %w", err)
	}
	if top == nil {
		return nil, errors.New("push event: not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("push event: data after the event object")
	}
	ev := &PushEvent{props: make(map[string]pushProp, 16)}
	ev.flatten("", top, 0)
	ev.body = ev.props["content.body"].pushValue
	ev.roomID = ev.props["room_id"].pushValue
	ev.sender = ev.props["sender"].pushValue
	ev.typ = ev.props["type"].pushValue
	ev.bodyMode = globWords
	if isASCII(ev.body.s) {
		ev.bodyMode |= globASCII
	}
	return ev, nil
}

// flatten records the properties of obj, whose path is prefix (the event itself at depth 0).
func (ev *PushEvent) flatten(prefix string, obj map[string]any, depth int) {
	for k, v := range obj {
		path := escapePathKey(k)
		if depth > 0 {
			path = prefix + "." + path
		}
		switch v := v.(type) {
		case map[string]any:
			if depth+1 < maxPushEventDepth {
				ev.flatten(path, v, depth+1)
			}
		case []any:
			arr := make([]pushValue, 0, len(v))
			for _, x := range v {
				if pv := scalarValue(x); pv.kind != kindNone {
					arr = append(arr, pv)
				}
			}
			ev.props[path] = pushProp{pushValue: pushValue{kind: kindArray}, arr: arr}
		default:
			if pv := scalarValue(v); pv.kind != kindNone {
				ev.props[path] = pushProp{pushValue: pv}
			}
		}
	}
}

// scalarValue converts a decoded non-compound JSON value; anything else is kindNone.
func scalarValue(v any) pushValue {
	switch v := v.(type) {
	case string:
		return pushValue{kind: kindString, s: v}
	case bool:
		if v {
			return pushValue{kind: kindBool, n: 1}
		}
		return pushValue{kind: kindBool}
	case nil:
		return pushValue{kind: kindNull}
	case json.Number:
		if n, ok := safeInteger(string(v)); ok {
			return pushValue{kind: kindInt, n: n}
		}
	}
	return pushValue{}
}

// safeInteger parses a JSON number that is an integer within ±(2**53-1), the only numbers
// canonical JSON and so the property conditions know; fractions and exponents are not.
func safeInteger(s string) (int64, bool) {
	if s == "" || s[0] == '+' || strings.ContainsAny(s, ".eE") {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= -maxSafeInteger && n <= maxSafeInteger
}

// escapePathKey escapes one property name for a dot-separated path: '\' and '.' get a backslash.
func escapePathKey(k string) string {
	if strings.IndexByte(k, '.') < 0 && strings.IndexByte(k, '\\') < 0 {
		return k
	}
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] == '.' || k[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(k[i])
	}
	return b.String()
}

// canonicalPath rewrites a condition's key into the form flatten records. "Other escape
// sequences are left as-is, e.g. a \x would be treated as a literal backslash followed by 'x'"
// ("Dot-separated property paths"), so such a backslash is escaped; a key without one is already
// canonical and returned as it is.
func canonicalPath(key string) string {
	i := strings.IndexByte(key, '\\')
	if i < 0 {
		return key
	}
	for ; i < len(key); i++ {
		if key[i] != '\\' {
			continue
		}
		if i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\') {
			i++
			continue
		}
		var b strings.Builder
		b.WriteString(key[:i])
		for ; i < len(key); i++ {
			if key[i] == '\\' {
				if i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\') {
					b.WriteString(key[i : i+2])
					i++
					continue
				}
				b.WriteByte('\\') // a literal backslash, escaped
			}
			b.WriteByte(key[i])
		}
		return b.String()
	}
	return key
}

// PushContext holds the facts about the room, at the event, that conditions read besides the
// event: for room_member_count, sender_notification_permission and contains_display_name.
type PushContext struct {
	MemberCount             int              // joined members
	SenderPowerLevel        int64            // the sender's power level
	NotificationPowerLevels map[string]int64 // the power levels' notifications object
	DisplayName             string           // the evaluated user's display name in the room; "" never matches
}

// defaultRoomNotificationLevel is the level of notifications.room when the power levels do not
// set it ("Defaults to 50 if unspecified", m.room.power_levels).
const defaultRoomNotificationLevel = 50

// Evaluate returns the rule of rs that decides ev: the first enabled rule, in the order of kinds
// override, content, room, sender, underride, whose conditions all hold (for content, room and
// sender rules those of ImpliedConditions), or nil when none does ("Push Rules"). The rule is one
// of rs's own, which the caller must not modify. pc may be nil for a room about which nothing is
// known. Whether the user sent ev, which never notifies, is for the caller to check.
func (rs *PushRuleset) Evaluate(ev *PushEvent, pc *PushContext) *PushRule {
	if rs == nil || ev == nil {
		return nil
	}
	if pc == nil {
		pc = &PushContext{}
	}
	for i := range rs.Override {
		if r := &rs.Override[i]; r.Enabled && ev.holdAll(r.Conditions, pc) {
			return r
		}
	}
	// The implied conditions, without building them: content.body against the pattern at word
	// boundaries, and room_id or sender equal to the rule ID.
	for i := range rs.Content {
		if r := &rs.Content[i]; r.Enabled && ev.body.kind == kindString && matchGlob(r.Pattern, ev.body.s, ev.bodyMode) {
			return r
		}
	}
	for i := range rs.Room {
		if r := &rs.Room[i]; r.Enabled && ev.roomID.kind == kindString && ev.roomID.s == r.RuleID {
			return r
		}
	}
	for i := range rs.Sender {
		if r := &rs.Sender[i]; r.Enabled && ev.sender.kind == kindString && ev.sender.s == r.RuleID {
			return r
		}
	}
	for i := range rs.Underride {
		if r := &rs.Underride[i]; r.Enabled && ev.holdAll(r.Conditions, pc) {
			return r
		}
	}
	return nil
}

// holdAll reports whether every condition holds; none always does.
func (ev *PushEvent) holdAll(conds []PushCondition, pc *PushContext) bool {
	for i := range conds {
		if !ev.holds(&conds[i], pc) {
			return false
		}
	}
	return true
}

// holds evaluates one condition ("Conditions"). Unknown kinds never hold: "Unrecognised
// conditions MUST NOT match any events".
func (ev *PushEvent) holds(c *PushCondition, pc *PushContext) bool {
	switch c.Kind {
	case CondEventMatch:
		var p pushValue
		switch key := canonicalPath(c.Key); key {
		case "type":
			p = ev.typ
		case "content.body":
			return ev.body.kind == kindString && matchGlob(c.Pattern, ev.body.s, ev.bodyMode)
		default:
			p = ev.props[key].pushValue
		}
		// "If the property ... is completely absent ... or does not have a string value, then
		// the condition will not match, even if pattern is *."
		return p.kind == kindString && matchGlob(c.Pattern, p.s, 0)
	case CondEventPropertyIs:
		p := ev.props[canonicalPath(c.Key)]
		return p.kind != kindNone && p.kind != kindArray && parseWanted(c.Value).equals(p.pushValue)
	case CondEventPropertyContains:
		p := ev.props[canonicalPath(c.Key)]
		if p.kind != kindArray {
			return false
		}
		want := parseWanted(c.Value)
		for _, v := range p.arr {
			if want.equals(v) {
				return true
			}
		}
		return false
	case CondContainsDisplayName:
		// The display name is text, not a glob: matched literally, at word boundaries.
		return pc.DisplayName != "" && ev.body.kind == kindString && matchGlob(pc.DisplayName, ev.body.s, ev.bodyMode|globLiteral)
	case CondRoomMemberCount:
		return memberCountIs(c.Is, pc.MemberCount)
	case CondSenderNotificationPermission:
		level, ok := pc.NotificationPowerLevels[c.Key]
		if !ok {
			// The schema gives a default for room only; for another key nothing shows that the
			// sender may notify, so the condition does not hold.
			if c.Key != "room" {
				return false
			}
			level = defaultRoomNotificationLevel
		}
		return pc.SenderPowerLevel >= level
	}
	return false
}

// wanted is the value of an event_property_is or event_property_contains condition, a string
// kept as the bytes of its JSON text when it has no escapes so that reading it allocates nothing.
type wanted struct {
	kind valueKind // kindNone for a value that is not a non-compound canonical JSON value
	str  []byte
	n    int64
}

// parseWanted reads a condition's value.
func parseWanted(raw json.RawMessage) wanted {
	v := bytes.TrimSpace(raw)
	if len(v) == 0 {
		return wanted{}
	}
	switch v[0] {
	case '"':
		if len(v) >= 2 && v[len(v)-1] == '"' && bytes.IndexByte(v[1:len(v)-1], '\\') < 0 &&
			bytes.IndexByte(v[1:len(v)-1], '"') < 0 {
			return wanted{kind: kindString, str: v[1 : len(v)-1]}
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return wanted{}
		}
		return wanted{kind: kindString, str: []byte(s)}
	case 't', 'f', 'n':
		switch string(v) {
		case "true":
			return wanted{kind: kindBool, n: 1}
		case "false":
			return wanted{kind: kindBool}
		case "null":
			return wanted{kind: kindNull}
		}
		return wanted{}
	}
	if n, ok := safeInteger(string(v)); ok {
		return wanted{kind: kindInt, n: n}
	}
	return wanted{}
}

// equals compares exactly, without casting types: "true" is not true, 1 is not true.
func (w wanted) equals(v pushValue) bool {
	if w.kind != v.kind {
		return false
	}
	switch w.kind {
	case kindString:
		return string(w.str) == v.s
	case kindInt, kindBool:
		return w.n == v.n
	case kindNull:
		return true
	}
	return false
}

// memberCountIs evaluates room_member_count: is holds a count with an optional ==, <, >, >= or
// <= prefix, == by default. An is that is not of that form never matches.
func memberCountIs(is string, count int) bool {
	var op string
	switch {
	case len(is) >= 2 && (is[:2] == "==" || is[:2] == "<=" || is[:2] == ">="):
		op, is = is[:2], is[2:]
	case len(is) >= 1 && (is[0] == '<' || is[0] == '>'):
		op, is = is[:1], is[1:]
	default:
		op = "=="
	}
	if is == "" {
		return false
	}
	var want int64
	for i := 0; i < len(is); i++ {
		if is[i] < '0' || is[i] > '9' {
			return false
		}
		if want < 1e17 {
			want = want*10 + int64(is[i]-'0')
		} else {
			want = 1e18 // more members than any room has: the comparison is the same
		}
	}
	c := int64(count)
	switch op {
	case "==":
		return c == want
	case "<":
		return c < want
	case ">":
		return c > want
	case ">=":
		return c >= want
	default: // "<="
		return c <= want
	}
}

// PushOutcome is what a matched rule's actions ask for ("Actions").
type PushOutcome struct {
	Notify    bool // the notify action: the event notifies
	Highlight bool // the highlight tweak
	// Tweaks holds every set_tweak by name, highlight included, for the push gateway's
	// devices[].tweaks; a tweak without a value is true. Nil when there are none. The values
	// share memory with the actions and must not be modified.
	Tweaks map[string]json.RawMessage
}

// OutcomeOf reads a rule's actions: notify, and set_tweak, of which a later one wins for the same
// tweak. "If a highlight tweak is given with no value, its value is defined to be true"; with any
// value but true it is false. Historical and unknown actions are ignored ("Historical Actions").
func OutcomeOf(actions []PushAction) PushOutcome {
	var o PushOutcome
	for _, a := range actions {
		switch a.Action {
		case ActionNotify:
			o.Notify = true
		case ActionSetTweak:
			if a.Tweak == "" {
				continue
			}
			v := json.RawMessage(bytes.TrimSpace(a.Value))
			if len(v) == 0 {
				v = json.RawMessage("true")
			}
			if a.Tweak == TweakHighlight {
				o.Highlight = string(v) == "true"
			}
			if o.Tweaks == nil {
				o.Tweaks = make(map[string]json.RawMessage, 2)
			}
			o.Tweaks[a.Tweak] = v
		}
	}
	return o
}
