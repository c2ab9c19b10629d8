package pdu

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// pduFor returns a valid, unsigned PDU of the version with extra top-level keys set or, for
// a value of "", removed.
func pduFor(version id.RoomVersion, set map[string]string) string {
	fields := map[string]string{
		"type":             `"m.room.message"`,
		"sender":           `"@alice:a.example"`,
		"room_id":          fmt.Sprintf("%q", roomFor(version)),
		"content":          `{"body":"hi"}`,
		"depth":            `5`,
		"origin_server_ts": fmt.Sprint(testTS),
		"hashes":           `{"sha256":"AAAA"}`,
		"signatures":       `{}`,
		"prev_events":      `[]`,
		"auth_events":      `[]`,
	}
	if version.EventIDFormat() == id.EventIDFormatCustom {
		fields["event_id"] = `"$e:a.example"`
		fields["prev_events"] = `[["$p:a.example",{"sha256":"AAAA"}]]`
	} else {
		fields["prev_events"] = fmt.Sprintf(`[%q]`, prevFor(version, 1))
	}
	for k, v := range set {
		fields[k] = v
	}
	var b strings.Builder
	b.WriteString("{")
	first := true
	for k, v := range fields {
		if v == "" {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		fmt.Fprintf(&b, "%q:%s", k, v)
	}
	b.WriteString("}")
	return b.String()
}

// TestEventIDFormats parses one PDU in every version and checks its ID: the event_id field
// in v1 and v2, the reference hash in standard unpadded base64 in v3, URL-safe from v4.
func TestEventIDFormats(t *testing.T) {
	// This event's reference hash contains both '+' and '/' in standard base64, so the v3
	// and v4 IDs differ.
	raw := func(version id.RoomVersion) string {
		return pduFor(version, map[string]string{"room_id": `"!r:a.example"`, "prev_events": `["$p"]`, "depth": "7"})
	}
	for _, version := range allVersions[2:11] {
		ev, err := Parse(version, []byte(raw(version)))
		if err != nil {
			t.Fatalf("v%s: %v", version, err)
		}
		hash, err := ReferenceHash(version, []byte(raw(version)))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := EventIDFromReferenceHash(version, hash)
		if ev.EventID() != want {
			t.Errorf("v%s: ID %s, want %s", version, ev.EventID(), want)
		}
		checkIDFormat(t, version, ev)
	}
	v3, _ := Parse(id.RoomV3, []byte(raw(id.RoomV3)))
	v4, _ := Parse(id.RoomV4, []byte(raw(id.RoomV4)))
	std := "$" + base64.RawStdEncoding.EncodeToString(v3.ReferenceHash())
	url := "$" + base64.RawURLEncoding.EncodeToString(v3.ReferenceHash())
	if string(v3.EventID()) != std || string(v4.EventID()) != url {
		t.Errorf("v3 %s (want %s), v4 %s (want %s)", v3.EventID(), std, v4.EventID(), url)
	}
	if std == url {
		t.Error("test event's hash has no + or /, so v3 and v4 IDs coincide: change its depth")
	}
	for _, version := range []id.RoomVersion{id.RoomV1, id.RoomV2} {
		ev, err := Parse(version, []byte(pduFor(version, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if ev.EventID() != "$e:a.example" {
			t.Errorf("v%s: ID %s, want the event_id field", version, ev.EventID())
		}
		if got := ev.PrevEventIDs(); len(got) != 1 || got[0] != "$p:a.example" {
			t.Errorf("v%s: prev_events %v", version, got)
		}
	}
	// An event_id sent along with a v3+ event is dropped and does not change the ID.
	withID, err := Parse(id.RoomV10, []byte(pduFor(id.RoomV10, map[string]string{"event_id": `"$forged:b.example"`})))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := Parse(id.RoomV10, []byte(pduFor(id.RoomV10, nil)))
	if withID.EventID() != plain.EventID() || strings.Contains(string(withID.JSON()), "forged") {
		t.Errorf("event_id not dropped in v10: %s", withID.JSON())
	}
	if _, err := EventIDFromReferenceHash(id.RoomV1, make([]byte, 32)); err == nil {
		t.Error("EventIDFromReferenceHash accepted v1")
	}
	if _, err := EventIDFromReferenceHash(id.RoomV4, make([]byte, 31)); err == nil {
		t.Error("EventIDFromReferenceHash accepted a short hash")
	}
}

// TestV12RoomID: the room ID of room version 12 is the create event's ID with '!' for '$'.
func TestV12RoomID(t *testing.T) {
	create := `{"type":"m.room.create","state_key":"","sender":"@alice:a.example","content":{"room_version":"12"},` +
		`"depth":1,"origin_server_ts":1700000000000,"hashes":{"sha256":"AAAA"},"signatures":{},"prev_events":[],"auth_events":[]}`
	ev, err := Parse(id.RoomV12, []byte(create))
	if err != nil {
		t.Fatal(err)
	}
	want := "!" + base64.RawURLEncoding.EncodeToString(ev.ReferenceHash())
	if string(ev.RoomID()) != want || string(ev.RoomID())[1:] != string(ev.EventID())[1:] {
		t.Errorf("RoomID %s, EventID %s, want room %s", ev.RoomID(), ev.EventID(), want)
	}
	// Other events of the room carry that room ID.
	member := pduFor(id.RoomV12, map[string]string{"room_id": fmt.Sprintf("%q", ev.RoomID()), "type": `"m.room.member"`,
		"state_key": `"@alice:a.example"`, "content": `{"membership":"join"}`, "prev_events": fmt.Sprintf("[%q]", ev.EventID())})
	if m, err := Parse(id.RoomV12, []byte(member)); err != nil || m.RoomID() != ev.RoomID() {
		t.Errorf("member of the v12 room: %v", err)
	}
	bad := []struct {
		name, raw string
	}{
		{"create with room_id", strings.Replace(create, `"depth"`, `"room_id":"`+string(ev.RoomID())+`","depth"`, 1)},
		{"create with prev_events", strings.Replace(create, `"prev_events":[]`, `"prev_events":["$x"]`, 1)},
		{"create with auth_events", strings.Replace(create, `"auth_events":[]`, `"auth_events":["$x"]`, 1)},
		{"domain room ID", pduFor(id.RoomV12, map[string]string{"room_id": `"!r:a.example"`})},
		{"short room ID", pduFor(id.RoomV12, map[string]string{"room_id": `"!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpY"`})},
		{"standard base64 room ID", pduFor(id.RoomV12, map[string]string{"room_id": `"!Nhcu5BS+UMnFX7hBVfVSoXiD7OgH6iRT/xyIuqDnpYQ"`})},
		{"missing room ID", pduFor(id.RoomV12, map[string]string{"room_id": ""})},
	}
	for _, b := range bad {
		if _, err := Parse(id.RoomV12, []byte(b.raw)); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: %v, want ErrInvalidEvent", b.name, err)
		}
	}
	// Before v12 a create event needs a room_id like any other.
	if _, err := Parse(id.RoomV11, []byte(create)); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("v11 create without room_id: %v", err)
	}
}

// TestStrictJSON: room versions 6+ refuse what canonical JSON forbids; 1-5 accept it.
func TestStrictJSON(t *testing.T) {
	tests := []struct {
		name    string
		content string
		lenient string // canonical content in v1-v5
	}{
		{"float", `{"a":1.5}`, `{"a":1.5}`},
		{"float-looking 1.0", `{"a":1.0}`, `{"a":1.0}`},
		{"float-looking 1e2", `{"a":1e2}`, `{"a":100.0}`},
		{"2^53", `{"a":9007199254740992}`, `{"a":9007199254740992}`},
		{"-2^53", `{"a":-9007199254740992}`, `{"a":-9007199254740992}`},
		{"huge", `{"a":[123456789012345678901234567890]}`, `{"a":[123456789012345678901234567890]}`},
		{"duplicate key", `{"a":1,"a":2}`, `{"a":2}`},
		{"nested duplicate key", `{"a":{"b":[{"c":1,"c":2}]}}`, `{"a":{"b":[{"c":2}]}}`},
	}
	for _, tt := range tests {
		for _, version := range allVersions {
			raw := pduFor(version, map[string]string{"content": tt.content})
			ev, err := Parse(version, []byte(raw))
			if version.ForbidFloatsAndBigInts() {
				if !errors.Is(err, ErrBadJSON) {
					t.Errorf("%s, v%s: %v, want ErrBadJSON", tt.name, version, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s, v%s: %v", tt.name, version, err)
				continue
			}
			if string(ev.Content()) != tt.lenient {
				t.Errorf("%s, v%s: content %s, want %s", tt.name, version, ev.Content(), tt.lenient)
			}
		}
	}
	// Strictness covers the whole event, unsigned and top-level keys included.
	for _, set := range []map[string]string{
		{"unsigned": `{"age":1.5}`},
		{"extra": `1e3`},
		{"type": `"a"`, "hashes": `{"sha256":"AAAA","sha256":"AAAA"}`},
	} {
		if _, err := Parse(id.RoomV6, []byte(pduFor(id.RoomV6, set))); !errors.Is(err, ErrBadJSON) {
			t.Errorf("v6 %v: %v, want ErrBadJSON", set, err)
		}
		if _, err := Parse(id.RoomV5, []byte(pduFor(id.RoomV5, set))); err != nil {
			t.Errorf("v5 %v: %v", set, err)
		}
	}
}

func TestParseFormat(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name     string
		versions []id.RoomVersion // nil means all
		set      map[string]string
		want     error
	}{
		{"not an object", nil, nil, nil},
		{"missing type", nil, map[string]string{"type": ""}, ErrInvalidEvent},
		{"missing sender", nil, map[string]string{"sender": ""}, ErrInvalidEvent},
		{"missing content", nil, map[string]string{"content": ""}, ErrInvalidEvent},
		{"missing depth", nil, map[string]string{"depth": ""}, ErrInvalidEvent},
		{"missing origin_server_ts", nil, map[string]string{"origin_server_ts": ""}, ErrInvalidEvent},
		{"missing hashes", nil, map[string]string{"hashes": ""}, ErrInvalidEvent},
		{"missing signatures", nil, map[string]string{"signatures": ""}, ErrInvalidEvent},
		{"missing prev_events", nil, map[string]string{"prev_events": ""}, ErrInvalidEvent},
		{"missing auth_events", nil, map[string]string{"auth_events": ""}, ErrInvalidEvent},
		{"missing room_id", nil, map[string]string{"room_id": ""}, ErrInvalidEvent},
		{"missing event_id", []id.RoomVersion{id.RoomV1, id.RoomV2}, map[string]string{"event_id": ""}, ErrInvalidEvent},
		{"type not a string", nil, map[string]string{"type": `1`}, ErrInvalidEvent},
		{"content not an object", nil, map[string]string{"content": `"x"`}, ErrInvalidEvent},
		{"content null", nil, map[string]string{"content": `null`}, ErrInvalidEvent},
		{"depth a string", nil, map[string]string{"depth": `"5"`}, ErrInvalidEvent},
		{"depth negative", nil, map[string]string{"depth": `-1`}, ErrInvalidEvent},
		{"depth float in v1", []id.RoomVersion{id.RoomV1}, map[string]string{"depth": `5.0`}, ErrInvalidEvent},
		{"depth over 2^63-1", []id.RoomVersion{id.RoomV5}, map[string]string{"depth": `9223372036854775808`}, ErrInvalidEvent},
		{"depth over 2^53-1", []id.RoomVersion{id.RoomV6, id.RoomV12}, map[string]string{"depth": `9007199254740992`}, ErrBadJSON},
		{"timestamp a string", nil, map[string]string{"origin_server_ts": `"1"`}, ErrInvalidEvent},
		{"hashes without sha256", nil, map[string]string{"hashes": `{}`}, ErrInvalidEvent},
		{"hashes sha256 not a string", nil, map[string]string{"hashes": `{"sha256":1}`}, ErrInvalidEvent},
		{"signatures not an object", nil, map[string]string{"signatures": `[]`}, ErrInvalidEvent},
		{"server signatures not an object", nil, map[string]string{"signatures": `{"a.example":"x"}`}, ErrInvalidEvent},
		{"signature not a string", nil, map[string]string{"signatures": `{"a.example":{"ed25519:1":1}}`}, ErrInvalidEvent},
		{"unsigned not an object", nil, map[string]string{"unsigned": `[]`}, ErrInvalidEvent},
		{"state_key not a string", nil, map[string]string{"state_key": `null`}, ErrInvalidEvent},
		{"redacts not a string", allVersions[:10], map[string]string{"redacts": `1`}, ErrInvalidEvent},
		{"sender not a user ID", nil, map[string]string{"sender": `"alice"`}, ErrInvalidEvent},
		{"sender without server", nil, map[string]string{"sender": `"@alice:"`}, ErrInvalidEvent},
		{"sender with bad server", nil, map[string]string{"sender": `"@alice:a b"`}, ErrInvalidEvent},
		{"sender with NUL", nil, map[string]string{"sender": `"@al\u0000ice:a.example"`}, ErrInvalidEvent},
		{"room ID without domain", allVersions[:11], map[string]string{"room_id": `"!room"`}, ErrInvalidEvent},
		{"room ID without sigil", nil, map[string]string{"room_id": `"room:a.example"`}, ErrInvalidEvent},
		{"event_id without domain", []id.RoomVersion{id.RoomV1}, map[string]string{"event_id": `"$e"`}, ErrInvalidEvent},
		{"prev_events not an array", nil, map[string]string{"prev_events": `{}`}, ErrInvalidEvent},
		{"prev_event not an event ID", allVersions[2:], map[string]string{"prev_events": `["e"]`}, ErrInvalidEvent},
		{"prev_event a pair after v2", allVersions[2:], map[string]string{"prev_events": `[["$e",{}]]`}, ErrInvalidEvent},
		{"prev_event a string in v1", []id.RoomVersion{id.RoomV1}, map[string]string{"prev_events": `["$e:a.example"]`}, ErrInvalidEvent},
		{"prev_event pair of three in v1", []id.RoomVersion{id.RoomV1}, map[string]string{"prev_events": `[["$e:a.example",{},{}]]`}, ErrInvalidEvent},
		{"prev_event hash not an object in v2", []id.RoomVersion{id.RoomV2}, map[string]string{"prev_events": `[["$e:a.example","x"]]`}, ErrInvalidEvent},
		{"21 prev_events", allVersions[2:], map[string]string{"prev_events": refs(21)}, ErrInvalidEvent},
		{"11 auth_events", allVersions[2:], map[string]string{"auth_events": refs(11)}, ErrInvalidEvent},
		{"type over 255 bytes", nil, map[string]string{"type": `"` + long + `"`}, ErrTooLarge},
		{"state_key over 255 bytes", nil, map[string]string{"state_key": `"` + long + `"`}, ErrTooLarge},
		{"sender over 255 bytes", nil, map[string]string{"sender": `"@` + long[:250] + `:a.example"`}, ErrTooLarge},
		{"room_id over 255 bytes", allVersions[:11], map[string]string{"room_id": `"!` + long[:250] + `:a.example"`}, ErrTooLarge},
		{"event_id over 255 bytes", []id.RoomVersion{id.RoomV1}, map[string]string{"event_id": `"$` + long[:250] + `:a.example"`}, ErrTooLarge},
		{"prev_event over 255 bytes", allVersions[2:], map[string]string{"prev_events": `["$` + long + `"]`}, ErrTooLarge},
		{"event over 64 KiB", nil, map[string]string{"content": `{"body":"` + strings.Repeat("x", MaxPDUSize) + `"}`}, ErrTooLarge},
	}
	for _, tt := range tests {
		versions := tt.versions
		if versions == nil {
			versions = allVersions
		}
		for _, version := range versions {
			raw := pduFor(version, tt.set)
			if tt.want == nil {
				raw = `["not", "an", "object"]`
			}
			ev, err := Parse(version, []byte(raw))
			if err == nil {
				t.Errorf("%s, v%s: accepted: %s", tt.name, version, ev.JSON())
				continue
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("%s, v%s: %v, want %v", tt.name, version, err, tt.want)
			}
		}
	}
	// The limits themselves are allowed.
	ok := map[string]string{
		"type":        `"` + long[:255] + `"`,
		"state_key":   `"` + long[:255] + `"`,
		"depth":       `9007199254740991`,
		"auth_events": refs(10),
		"prev_events": refs(20),
		"sender":      `"@:a.example"`, // historical user IDs may have empty localparts
	}
	if _, err := Parse(id.RoomV10, []byte(pduFor(id.RoomV10, ok))); err != nil {
		t.Errorf("limits: %v", err)
	}
	if _, err := Parse(id.RoomV5, []byte(pduFor(id.RoomV5, map[string]string{"depth": `9223372036854775807`}))); err != nil {
		t.Errorf("v5 depth 2^63-1: %v", err)
	}
	for _, v := range []id.RoomVersion{"", "13", "1.2-beta"} {
		if _, err := Parse(v, []byte(pduFor(id.RoomV10, nil))); !errors.Is(err, id.ErrUnknownRoomVersion) {
			t.Errorf("version %q: %v", v, err)
		}
	}
	if _, err := Parse(id.RoomV10, []byte("{")); !errors.Is(err, ErrNotJSON) {
		t.Errorf("truncated: %v", err)
	}
}

// TestSizeLimit checks the 65536-byte limit on the canonical PDU, whitespace not counted.
func TestSizeLimit(t *testing.T) {
	base := pduFor(id.RoomV10, map[string]string{"content": `{"body":""}`})
	ev, err := Parse(id.RoomV10, []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	pad := MaxPDUSize - len(ev.JSON())
	at := strings.Replace(base, `"body":""`, `"body":"`+strings.Repeat("x", pad)+`"`, 1)
	if ev, err := Parse(id.RoomV10, []byte(at)); err != nil || len(ev.JSON()) != MaxPDUSize {
		t.Errorf("event of exactly %d bytes: %v", MaxPDUSize, err)
	}
	over := strings.Replace(base, `"body":""`, `"body":"`+strings.Repeat("x", pad+1)+`"`, 1)
	if _, err := Parse(id.RoomV10, []byte(over)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("event of %d bytes: %v", MaxPDUSize+1, err)
	}
	spaced := strings.Replace(at, ",", ",         ", -1)
	if _, err := Parse(id.RoomV10, []byte(spaced)); err != nil {
		t.Errorf("whitespace counted towards the limit: %v", err)
	}
}

func TestRedactsField(t *testing.T) {
	for _, version := range allVersions {
		raw := pduFor(version, map[string]string{"type": `"m.room.redaction"`, "redacts": `"$top"`, "content": `{"redacts":"$inner"}`})
		ev, err := Parse(version, []byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		want := id.EventID("$top")
		if version.RedactsInContent() {
			want = "$inner"
		}
		if ev.Redacts() != want {
			t.Errorf("v%s: Redacts = %s, want %s", version, ev.Redacts(), want)
		}
	}
}

func refs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf(`"$e%d"`, i)
	}
	return "[" + strings.Join(ids, ",") + "]"
}

// TestValidServerName: appendices.md "Server Name", with the spec's examples.
func TestValidServerName(t *testing.T) {
	valid := []string{"matrix.org", "matrix.org:8888", "1.2.3.4", "1.2.3.4:1234", "[1234:5678::abcd]",
		"[1234:5678::abcd]:5678", "localhost", "MATRIX.ORG", "a-b.c", "[::1]:8448"}
	invalid := []string{"", "a b", "a:", "a:123456", "a:8x", "[::1", "::1", "[]", "[zz]", "ex_ample.com",
		"a.example/", "é.example", ":8448", strings.Repeat("a", 256)}
	for _, s := range valid {
		if !validServerName(s) {
			t.Errorf("%q refused", s)
		}
	}
	for _, s := range invalid {
		if validServerName(s) {
			t.Errorf("%q accepted", s)
		}
	}
}
