package pdu

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestRedact has one case per rule of the redaction algorithms (rooms/v1.md, v6, v8, v9 and
// v11 "Redactions"); v12 uses v11's.
func TestRedact(t *testing.T) {
	const top = `"auth_events":[],"depth":1,"event_id":"$e:a","hashes":{"sha256":"h"},"membership":"join",` +
		`"origin":"a","origin_server_ts":1,"prev_events":[],"prev_state":[],"redacts":"$r","room_id":"!r:a",` +
		`"sender":"@u:a","signatures":{"a":{"ed25519:1":"s"}},"state_key":"","unknown":1,"unsigned":{"age":1}`
	// What survives at the top level: v1-v10 keep origin, membership and prev_state; v11 drops
	// them. Everyone drops unknown keys, unsigned and the top-level redacts.
	const keptOld = `"auth_events":[],"depth":1,"event_id":"$e:a","hashes":{"sha256":"h"},"membership":"join",` +
		`"origin":"a","origin_server_ts":1,"prev_events":[],"prev_state":[],"room_id":"!r:a",` +
		`"sender":"@u:a","signatures":{"a":{"ed25519:1":"s"}},"state_key":""`
	const keptNew = `"auth_events":[],"depth":1,"event_id":"$e:a","hashes":{"sha256":"h"},` +
		`"origin_server_ts":1,"prev_events":[],"room_id":"!r:a",` +
		`"sender":"@u:a","signatures":{"a":{"ed25519:1":"s"}},"state_key":""`
	member := `{"membership":"join","displayname":"U","avatar_url":"mxc://a/b","join_authorised_via_users_server":"@v:b","third_party_invite":{"display_name":"x","signed":{"mxid":"@u:a","token":"t"}}}`
	create := `{"creator":"@u:a","room_version":"1","m.federate":false,"predecessor":{"room_id":"!o:a"}}`
	joinRules := `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!o:a"}],"other":1}`
	power := `{"ban":50,"events":{"m.room.name":50},"events_default":0,"invite":0,"kick":50,"notifications":{"room":50},"redact":50,"state_default":50,"users":{"@u:a":100},"users_default":0,"other":1}`
	tests := []struct {
		name     string
		typ      string
		content  string
		versions []id.RoomVersion
		want     string // content after redaction
	}{
		{"message", "m.room.message", `{"body":"x","msgtype":"m.text"}`, allVersions, `{}`},
		{"member v1-v8", "m.room.member", member, allVersions[:8], `{"membership":"join"}`},
		{"member v9-v10 keep join_authorised_via_users_server", "m.room.member", member, allVersions[8:10],
			`{"join_authorised_via_users_server":"@v:b","membership":"join"}`},
		{"member v11+ keep third_party_invite.signed", "m.room.member", member, allVersions[10:],
			`{"join_authorised_via_users_server":"@v:b","membership":"join","third_party_invite":{"signed":{"mxid":"@u:a","token":"t"}}}`},
		{"member v11+ third_party_invite without signed", "m.room.member", `{"membership":"invite","third_party_invite":{"display_name":"x"}}`,
			allVersions[10:], `{"membership":"invite"}`},
		{"create v1-v10 keep creator", "m.room.create", create, allVersions[:10], `{"creator":"@u:a"}`},
		{"create v11+ keep everything", "m.room.create", create, allVersions[10:],
			`{"creator":"@u:a","m.federate":false,"predecessor":{"room_id":"!o:a"},"room_version":"1"}`},
		{"join_rules v1-v7", "m.room.join_rules", joinRules, allVersions[:7], `{"join_rule":"restricted"}`},
		{"join_rules v8+ keep allow", "m.room.join_rules", joinRules, allVersions[7:],
			`{"allow":[{"room_id":"!o:a","type":"m.room_membership"}],"join_rule":"restricted"}`},
		{"power_levels v1-v10", "m.room.power_levels", power, allVersions[:10],
			`{"ban":50,"events":{"m.room.name":50},"events_default":0,"kick":50,"redact":50,"state_default":50,"users":{"@u:a":100},"users_default":0}`},
		{"power_levels v11+ keep invite", "m.room.power_levels", power, allVersions[10:],
			`{"ban":50,"events":{"m.room.name":50},"events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"users":{"@u:a":100},"users_default":0}`},
		{"aliases v1-v5 keep aliases", "m.room.aliases", `{"aliases":["#a:a"],"other":1}`, allVersions[:5], `{"aliases":["#a:a"]}`},
		{"aliases v6+", "m.room.aliases", `{"aliases":["#a:a"],"other":1}`, allVersions[5:], `{}`},
		{"history_visibility", "m.room.history_visibility", `{"history_visibility":"shared","other":1}`, allVersions, `{"history_visibility":"shared"}`},
		{"redaction v1-v10", "m.room.redaction", `{"redacts":"$x","reason":"r"}`, allVersions[:10], `{}`},
		{"redaction v11+ keep content.redacts", "m.room.redaction", `{"redacts":"$x","reason":"r"}`, allVersions[10:], `{"redacts":"$x"}`},
		{"name", "m.room.name", `{"name":"n"}`, allVersions, `{}`},
		{"topic", "m.room.topic", `{"topic":"t"}`, allVersions, `{}`},
		{"guest_access", "m.room.guest_access", `{"guest_access":"can_join"}`, allVersions, `{}`},
	}
	for _, tt := range tests {
		for _, version := range tt.versions {
			raw := fmt.Sprintf(`{%s,"type":%q,"content":%s}`, top, tt.typ, tt.content)
			got, err := Redact(version, []byte(raw))
			if err != nil {
				t.Fatalf("%s, v%s: %v", tt.name, version, err)
			}
			kept := keptOld
			if version.UpdatedRedactionRules() {
				kept = keptNew
			}
			if version.EventIDFormat() != id.EventIDFormatCustom {
				kept = kept[len(`"auth_events":[],"depth":1,"event_id":"$e:a",`):]
				kept = `"auth_events":[],"depth":1,` + kept
			}
			want := fmt.Sprintf(`{%s,"type":%q}`, insertContent(kept, tt.want), tt.typ)
			if string(got) != want {
				t.Errorf("%s, v%s:\n got %s\nwant %s", tt.name, version, got, want)
			}
		}
	}
}

// insertContent puts "content" into its sorted place among the kept keys.
func insertContent(kept, content string) string {
	const before = `"depth":1,`
	for i := 0; i+len(before) <= len(kept); i++ {
		if kept[i:i+len(before)] == before {
			return kept[:i] + `"content":` + content + "," + kept[i:]
		}
	}
	return kept
}

func TestRedactRefuses(t *testing.T) {
	if _, err := Redact("99", []byte(`{}`)); !errors.Is(err, id.ErrUnknownRoomVersion) {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := Redact(id.RoomV10, []byte(`[]`)); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("array: %v", err)
	}
	if _, err := Redact(id.RoomV10, []byte(`{"a":1.5}`)); !errors.Is(err, ErrBadJSON) {
		t.Errorf("float in v10: %v", err)
	}
	if got, err := Redact(id.RoomV10, []byte(`{"type":"m.room.member"}`)); err != nil || string(got) != `{"content":{},"type":"m.room.member"}` {
		t.Errorf("no content: %s, %v", got, err)
	}
}

// TestRedacted: a redacted event keeps its ID and signatures, and still verifies.
func TestRedacted(t *testing.T) {
	for _, version := range allVersions {
		ev := message(t, version, "secret")
		r := ev.Redacted()
		if r.EventID() != ev.EventID() || r.RoomID() != ev.RoomID() || string(r.Content()) != "{}" || r.Unsigned() != nil {
			t.Errorf("v%s: redacted %s %s", version, r.EventID(), r.JSON())
		}
		if err := VerifySignatures(context.Background(), r, defaultRing()); err != nil {
			t.Errorf("v%s: redacted event does not verify: %v", version, err)
		}
		if r.CheckContentHash() {
			t.Errorf("v%s: redacted message passes the content hash check", version)
		}
		again := r.Redacted()
		if string(again.JSON()) != string(r.JSON()) {
			t.Errorf("v%s: redaction is not idempotent", version)
		}
	}
}
