package pdu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"
)

// storedCases returns events of the room version in every shape ParseStored reads differently:
// built ones, state and message events, redactions, unsigned, escapes, numbers Parse rewrites,
// whitespace and an event_id key Parse drops.
func storedCases(t testing.TB, version id.RoomVersion) map[string][]byte {
	t.Helper()
	build := func(tmpl Template) []byte {
		ev, err := Build(version, tmpl, serverA, testKey(serverA))
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		return ev.JSON()
	}
	create := build(Template{Type: "m.room.create", StateKey: strPtr(""), Sender: "@alice:" + serverA,
		Content: json.RawMessage(`{"room_version":"` + string(version) + `"}`), RoomID: roomFor(version), Depth: 1,
		OriginServerTS: testTS})
	redactsTop, redactsContent := `"$top"`, `{"redacts":"$inner","reason":"r"}`
	if version.EventIDFormat() == id.EventIDFormatCustom {
		redactsTop = `"$top:a.example"`
	}
	msg := benchTemplate()
	msg.RoomID, msg.PrevEvents = roomFor(version), []id.EventID{prevFor(version, 1)}
	msg.AuthEvents = []id.EventID{prevFor(version, 2), prevFor(version, 3), prevFor(version, 4)}
	big := "9223372036854775807" // room versions 1 to 5 allow the whole 64-bit range
	if version.ForbidFloatsAndBigInts() {
		big = "9007199254740991"
	}
	numbers := `{"n":[0,-0,9007199254740991,-9007199254740991]}`
	if !version.ForbidFloatsAndBigInts() {
		numbers = `{"n":[1.5,1e2,-0.0,123456789012345678901234567890,1E-7]}`
	}
	cases := map[string][]byte{
		"create":  create,
		"message": build(msg),
		"member": build(Template{Type: "m.room.member", StateKey: strPtr("@bob:" + serverA), Sender: "@alice:" + serverA,
			Content: json.RawMessage(`{"membership":"invite","displayname":"Bob"}`), RoomID: roomFor(version),
			PrevEvents: []id.EventID{prevFor(version, 1)}, AuthEvents: []id.EventID{prevFor(version, 2), prevFor(version, 3)},
			Depth: 7, OriginServerTS: testTS + 5}),
		"redaction": build(Template{Type: "m.room.redaction", Sender: "@alice:" + serverA, Content: json.RawMessage(`{"reason":"x"}`),
			RoomID: roomFor(version), PrevEvents: []id.EventID{prevFor(version, 1)}, Depth: 3, OriginServerTS: testTS,
			Redacts: prevFor(version, 4)}),
		"unsigned": []byte(pduFor(version, map[string]string{"unsigned": `{"age":5,"x":"\"q\\\\"}`})),
		"escapes": []byte(pduFor(version, map[string]string{"type": `"t\"y\\pe\u0001"`,
			"state_key": `"a\"b\\c\n\u001f\u00e9😀\ud83d\ude00"`, "content": `{"body":"\"}]\\\\","k\"":{"\\":[]}}`})),
		"numbers":                         []byte(pduFor(version, map[string]string{"content": numbers, "depth": "0", "origin_server_ts": "-1"})),
		"redacts":                         []byte(pduFor(version, map[string]string{"type": `"m.room.redaction"`, "redacts": redactsTop, "content": redactsContent})),
		"redacts not a string in content": []byte(pduFor(version, map[string]string{"content": `{"redacts":1}`})),
		"spaced":                          []byte(strings.ReplaceAll(pduFor(version, map[string]string{"content": `{"a": [1, {"b": null}], "c": true}`}), ",", " ,\n\t")),
		"event_id":                        []byte(pduFor(version, map[string]string{"event_id": `"$e:a.example"`})),
		"big numbers":                     []byte(pduFor(version, map[string]string{"depth": big, "origin_server_ts": "-" + big})),
	}
	if version.RoomIDIsCreateEventID() {
		cases["create, hand-made"] = []byte(`{"type":"m.room.create","state_key":"","sender":"@alice:a.example",` +
			`"content":{"room_version":"12"},"depth":1,"origin_server_ts":1,"hashes":{"sha256":"AAAA"},"signatures":{},` +
			`"prev_events":[],"auth_events":[]}`)
	}
	if version.EventIDFormat() == id.EventIDFormatCustom {
		cases["pairs"] = []byte(pduFor(version, map[string]string{
			"prev_events": `[["$p1:a.example",{"sha256":"AAAA"}],["$p2:a.example",{}]]`,
			"auth_events": `[["$a1:a.example",{"sha256":"\"]"}]]`}))
	}
	return cases
}

// sameEvent checks that every accessor of got answers as want's does.
func sameEvent(t *testing.T, want, got *Event) {
	t.Helper()
	check := func(name string, a, b any) {
		t.Helper()
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: ParseStored gives %#v, Parse %#v", name, b, a)
		}
	}
	check("Version", want.Version(), got.Version())
	check("JSON", string(want.JSON()), string(got.JSON()))
	check("EventID", want.EventID(), got.EventID())
	check("RoomID", want.RoomID(), got.RoomID())
	check("Type", want.Type(), got.Type())
	check("StateKey", want.StateKey(), got.StateKey())
	check("Sender", want.Sender(), got.Sender())
	check("Origin", want.Origin(), got.Origin())
	check("Content", string(want.Content()), string(got.Content()))
	check("Unsigned", want.Unsigned() == nil, got.Unsigned() == nil)
	check("Unsigned", string(want.Unsigned()), string(got.Unsigned()))
	check("PrevEventIDs", want.PrevEventIDs(), got.PrevEventIDs())
	check("AuthEventIDs", want.AuthEventIDs(), got.AuthEventIDs())
	check("Depth", want.Depth(), got.Depth())
	check("OriginServerTS", want.OriginServerTS(), got.OriginServerTS())
	check("Redacts", want.Redacts(), got.Redacts())
	check("ReferenceHash", want.ReferenceHash(), got.ReferenceHash())
	check("CheckContentHash", want.CheckContentHash(), got.CheckContentHash())
	check("Redacted", string(want.Redacted().JSON()), string(got.Redacted().JSON()))
}

// TestParseStoredFields makes sure sameEvent keeps up with Event: a new field needs an
// accessor compared there.
func TestParseStoredFields(t *testing.T) {
	if n := reflect.TypeFor[Event]().NumField(); n != 17 {
		t.Errorf("Event has %d fields; compare the new ones in sameEvent and update this count", n)
	}
}

// TestParseStored: in every room version, ParseStored of an event's JSON and ID gives the
// event Parse gives, with and without the ID, and with the reference hash asked for first.
func TestParseStored(t *testing.T) {
	for _, version := range allVersions {
		for name, raw := range storedCases(t, version) {
			t.Run(fmt.Sprintf("v%s/%s", version, name), func(t *testing.T) {
				want, err := Parse(version, raw)
				if err != nil {
					t.Fatalf("Parse: %v\n%s", err, raw)
				}
				stored := bytes.Clone(want.JSON())
				got, err := ParseStored(version, stored, want.EventID())
				if err != nil {
					t.Fatalf("ParseStored: %v\n%s", err, stored)
				}
				if !got.lazyRef {
					t.Error("the reference hash was computed eagerly")
				}
				sameEvent(t, want, got)
				if &got.JSON()[0] != &stored[0] {
					t.Error("ParseStored copied the JSON")
				}
				if noID, err := ParseStored(version, stored, ""); err != nil {
					t.Errorf("ParseStored without the ID: %v", err)
				} else {
					sameEvent(t, want, noID)
				}
				// The hash first: a v12 create's room ID must not depend on the order of calls.
				hashFirst, err := ParseStored(version, stored, want.EventID())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(hashFirst.ReferenceHash(), want.ReferenceHash()) {
					t.Error("ReferenceHash differs when asked for first")
				}
				sameEvent(t, want, hashFirst)
			})
		}
	}
}

// TestParseStoredReferenceHashConcurrent asks for the lazy hash from many goroutines at
// once, for the race detector.
func TestParseStoredReferenceHashConcurrent(t *testing.T) {
	want := message(t, id.RoomV12, "race")
	got, err := ParseStored(id.RoomV12, want.JSON(), want.EventID())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if !bytes.Equal(got.ReferenceHash(), want.ReferenceHash()) {
				t.Error("wrong reference hash")
			}
		})
	}
	wg.Wait()
}

// TestParseStoredDamaged: a damaged row is refused with an error, never a panic or an event
// that misreports itself.
func TestParseStoredDamaged(t *testing.T) {
	good := message(t, id.RoomV10, "damaged").JSON()
	v1 := message(t, id.RoomV1, "damaged")
	sub := func(old, new string) []byte { return []byte(strings.Replace(string(good), old, new, 1)) }
	tests := []struct {
		name    string
		version id.RoomVersion
		raw     []byte
		eventID id.EventID
		want    error
	}{
		{"empty", id.RoomV10, nil, "$x", ErrInvalidEvent},
		{"array", id.RoomV10, []byte(`[]`), "$x", ErrInvalidEvent},
		{"truncated", id.RoomV10, good[:len(good)/2], "$x", ErrNotJSON},
		{"unterminated string", id.RoomV10, []byte(`{"type":"m.room`), "$x", ErrNotJSON},
		{"trailing data", id.RoomV10, append(slices.Clone(good), '1'), "$x", ErrNotJSON},
		{"no type", id.RoomV10, sub(`,"type":"m.room.message"`, ""), "$x", ErrInvalidEvent},
		{"no room_id", id.RoomV10, sub(`"room_id"`, `"room_iX"`), "$x", ErrInvalidEvent},
		{"type not a string", id.RoomV10, sub(`"type":"m.room.message"`, `"type":1`), "$x", ErrInvalidEvent},
		{"depth a float", id.RoomV10, sub(`"depth":5`, `"depth":5.5`), "$x", ErrInvalidEvent},
		{"depth negative", id.RoomV10, sub(`"depth":5`, `"depth":-5`), "$x", ErrInvalidEvent},
		{"depth too big", id.RoomV10, sub(`"depth":5`, `"depth":9223372036854775808`), "$x", ErrInvalidEvent},
		{"content not an object", id.RoomV10, sub(`"content":{`, `"content":[{`), "$x", ErrInvalidEvent},
		{"prev_events not strings", id.RoomV10, sub(`"prev_events":["`, `"prev_events":[1,"`), "$x", ErrInvalidEvent},
		{"sender without server", id.RoomV10, sub(`"sender":"@alice:a.example"`, `"sender":"@alice"`), "$x", ErrInvalidEvent},
		{"unknown version", "99", good, "$x", id.ErrUnknownRoomVersion},
		{"too large", id.RoomV10, make([]byte, MaxPDUSize+1), "$x", ErrTooLarge},
		{"v1 ID differs", id.RoomV1, v1.JSON(), "$other:a.example", ErrInvalidEvent},
		{"unbalanced", id.RoomV10, []byte(`{"hashes":}}`), "$x", ErrNotJSON},
	}
	for _, tt := range tests {
		if _, err := ParseStored(tt.version, tt.raw, tt.eventID); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if ev, err := ParseStored(id.RoomV1, v1.JSON(), ""); err != nil || ev.EventID() != v1.EventID() {
		t.Errorf("v1 without the ID: %v", err)
	}
}

// FuzzParseStored checks the property ParseStored rests on: for whatever Parse accepts,
// ParseStored(Parse(x).JSON()) is Parse(x); and that no input makes ParseStored panic.
func FuzzParseStored(f *testing.F) {
	for i, version := range allVersions {
		for _, raw := range storedCases(f, version) {
			f.Add(uint8(i), raw)
		}
	}
	f.Fuzz(func(t *testing.T, v uint8, raw []byte) {
		version := allVersions[int(v)%len(allVersions)]
		want, err := Parse(version, raw)
		if err != nil {
			_, _ = ParseStored(version, raw, "$x:a.example") // must not panic
			return
		}
		got, err := ParseStored(version, bytes.Clone(want.JSON()), want.EventID())
		if err != nil {
			t.Fatalf("v%s: ParseStored of an accepted event: %v\n%s", version, err, want.JSON())
		}
		sameEvent(t, want, got)
	})
}
