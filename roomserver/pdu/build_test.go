package pdu

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

var (
	customID = regexp.MustCompile(`^\$[^:]+:a\.example$`)
	stdID    = regexp.MustCompile(`^\$[A-Za-z0-9+/]{43}$`)
	urlID    = regexp.MustCompile(`^\$[A-Za-z0-9_-]{43}$`)
)

// TestBuildParseRoundTrip builds events of every kind Build writes differently, in every room
// version, and checks that they parse back to the same event and verify.
func TestBuildParseRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, version := range allVersions {
		t.Run("v"+string(version), func(t *testing.T) {
			create, err := Build(version, Template{
				Type:           "m.room.create",
				StateKey:       strPtr(""),
				Sender:         "@alice:" + serverA,
				Content:        json.RawMessage(`{"room_version":"` + string(version) + `"}`),
				RoomID:         roomFor(version),
				Depth:          1,
				OriginServerTS: testTS,
			}, serverA, testKey(serverA))
			if err != nil {
				t.Fatal(err)
			}
			roomID := roomFor(version)
			if version.RoomIDIsCreateEventID() {
				roomID = id.RoomID("!" + strings.TrimPrefix(string(create.EventID()), "$"))
			}
			if create.RoomID() != roomID {
				t.Errorf("create room ID %s, want %s", create.RoomID(), roomID)
			}
			var refs map[id.EventID][]byte
			if version.EventIDFormat() == id.EventIDFormatCustom {
				refs = map[id.EventID][]byte{create.EventID(): create.ReferenceHash()}
			}
			member, err := Build(version, Template{
				Type:           "m.room.member",
				StateKey:       strPtr("@alice:" + serverA),
				Sender:         "@alice:" + serverA,
				Content:        json.RawMessage(`{"membership":"join","displayname":"Alice"}`),
				RoomID:         roomID,
				PrevEvents:     []id.EventID{create.EventID()},
				AuthEvents:     authFor(version, create.EventID()),
				Depth:          2,
				OriginServerTS: testTS + 1,
				RefHashes:      refs,
			}, serverA, testKey(serverA))
			if err != nil {
				t.Fatal(err)
			}
			redaction, err := Build(version, Template{
				Type:           "m.room.redaction",
				Sender:         "@alice:" + serverA,
				Content:        json.RawMessage(`{"reason":"spam"}`),
				RoomID:         roomID,
				PrevEvents:     []id.EventID{member.EventID()},
				AuthEvents:     append(authFor(version, create.EventID()), member.EventID()),
				Depth:          3,
				OriginServerTS: testTS + 2,
				Redacts:        member.EventID(),
			}, serverA, testKey(serverA))
			if err != nil {
				t.Fatal(err)
			}

			for _, ev := range []*Event{create, member, redaction} {
				checkIDFormat(t, version, ev)
				again, err := Parse(version, ev.JSON())
				if err != nil {
					t.Fatalf("Parse(Build %s): %v", ev.Type(), err)
				}
				if again.EventID() != ev.EventID() || !bytes.Equal(again.JSON(), ev.JSON()) || again.RoomID() != ev.RoomID() {
					t.Errorf("%s does not round-trip: %s vs %s", ev.Type(), again.EventID(), ev.EventID())
				}
				if err := VerifySignatures(ctx, ev, defaultRing()); err != nil {
					t.Errorf("VerifySignatures(%s): %v", ev.Type(), err)
				}
				if !ev.CheckContentHash() {
					t.Errorf("%s: content hash does not match", ev.Type())
				}
				if ev.Version() != version || ev.Origin() != serverA || ev.Sender() != "@alice:"+serverA {
					t.Errorf("%s: wrong version, origin or sender", ev.Type())
				}
			}

			// Accessors.
			if member.StateKey() == nil || *member.StateKey() != "@alice:"+serverA || redaction.StateKey() != nil {
				t.Error("wrong state keys")
			}
			if got := member.PrevEventIDs(); len(got) != 1 || got[0] != create.EventID() {
				t.Errorf("PrevEventIDs = %v", got)
			}
			if member.Depth() != 2 || member.OriginServerTS() != testTS+1 || member.Type() != "m.room.member" {
				t.Error("wrong depth, timestamp or type")
			}
			if string(member.Content()) != `{"displayname":"Alice","membership":"join"}` {
				t.Errorf("Content = %s", member.Content())
			}
			if member.Unsigned() != nil {
				t.Errorf("Unsigned = %s", member.Unsigned())
			}
			if redaction.Redacts() != member.EventID() {
				t.Errorf("Redacts = %q, want %s", redaction.Redacts(), member.EventID())
			}
			inContent := strings.Contains(string(redaction.Content()), `"redacts"`)
			if inContent != version.RedactsInContent() {
				t.Errorf("redacts in content = %v, want %v", inContent, version.RedactsInContent())
			}
			if version.EventIDFormat() == id.EventIDFormatCustom {
				want := `[["` + string(create.EventID()) + `",{"sha256":"` + base64.RawStdEncoding.EncodeToString(create.ReferenceHash()) + `"}]]`
				if !strings.Contains(string(member.JSON()), `"prev_events":`+want) {
					t.Errorf("v1 prev_events not written as pairs with hashes: %s", member.JSON())
				}
				if !strings.Contains(string(redaction.JSON()), `"prev_events":[["`+string(member.EventID())+`",{}]]`) {
					t.Errorf("v1 prev_events without a known hash not written with {}: %s", redaction.JSON())
				}
			}
		})
	}
}

// authFor gives the create event as an auth event where the room version selects it.
func authFor(version id.RoomVersion, create id.EventID) []id.EventID {
	if version.RoomIDIsCreateEventID() {
		return nil
	}
	return []id.EventID{create}
}

func checkIDFormat(t *testing.T, version id.RoomVersion, ev *Event) {
	t.Helper()
	got := string(ev.EventID())
	switch version.EventIDFormat() {
	case id.EventIDFormatCustom:
		if !customID.MatchString(got) {
			t.Errorf("v%s event ID %s is not $opaque:a.example", version, got)
		}
	case id.EventIDFormatBase64:
		if !stdID.MatchString(got) || got != "$"+base64.RawStdEncoding.EncodeToString(ev.ReferenceHash()) {
			t.Errorf("v%s event ID %s is not the unpadded base64 reference hash", version, got)
		}
	default:
		if !urlID.MatchString(got) || got != "$"+base64.RawURLEncoding.EncodeToString(ev.ReferenceHash()) {
			t.Errorf("v%s event ID %s is not the URL-safe base64 reference hash", version, got)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	key := testKey(serverA)
	ok := Template{Type: "m.room.message", Sender: "@alice:" + serverA, RoomID: roomFor(id.RoomV10), Depth: 1, OriginServerTS: testTS}
	tests := []struct {
		name    string
		version id.RoomVersion
		edit    func(*Template)
		want    error
	}{
		{"unknown version", "13", func(*Template) {}, id.ErrUnknownRoomVersion},
		{"empty version", "", func(*Template) {}, id.ErrUnknownRoomVersion},
		{"foreign sender", id.RoomV10, func(t *Template) { t.Sender = "@bob:" + serverB }, nil},
		{"content not an object", id.RoomV10, func(t *Template) { t.Content = json.RawMessage(`[]`) }, ErrInvalidEvent},
		{"float content in v10", id.RoomV10, func(t *Template) { t.Content = json.RawMessage(`{"a":1.5}`) }, ErrBadJSON},
		{"depth too large in v10", id.RoomV10, func(t *Template) { t.Depth = 1 << 53 }, ErrBadJSON},
		{"negative depth", id.RoomV10, func(t *Template) { t.Depth = -1 }, ErrInvalidEvent},
		{"bad room ID", id.RoomV10, func(t *Template) { t.RoomID = "room" }, ErrInvalidEvent},
		{"v1 room ID in v12", id.RoomV12, func(t *Template) {}, ErrInvalidEvent},
		{"invalid UTF-8 type", id.RoomV10, func(t *Template) { t.Type = "\xff" }, ErrNotJSON},
		{"too big", id.RoomV10, func(t *Template) {
			t.Content = json.RawMessage(`{"body":"` + strings.Repeat("x", MaxPDUSize) + `"}`)
		}, ErrTooLarge},
		{"conflicting redacts", id.RoomV11, func(t *Template) {
			t.Redacts = "$a"
			t.Content = json.RawMessage(`{"redacts":"$b"}`)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := ok
			tt.edit(&tmpl)
			ev, err := Build(tt.version, tmpl, serverA, key)
			if err == nil {
				t.Fatalf("Build succeeded: %s", ev.JSON())
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Build(id.RoomV10, ok, serverA, nil); err == nil {
		t.Error("Build without a key succeeded")
	}
}
