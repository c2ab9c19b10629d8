package auth

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

var fuzzTypes = []string{"m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.third_party_invite", "m.room.aliases", "m.room.redaction", "m.room.message"}

// FuzzCheck feeds random content to the event and to the power levels, join rules and create
// events of the state; nothing may panic, and reading one user's level must agree with reading
// them all.
func FuzzCheck(f *testing.F) {
	seeds := []string{
		`{}`, `null`, `[]`, `"x"`, `5`, `{"membership":"join"}`, `{"membership":"invite","third_party_invite":{"signed":{"mxid":"@dave:d.test","token":"tok","signatures":{"x":{"ed25519:0":"AAAA"}}}}}`,
		`{"users":{"@bob:b.test":"50"},"ban":1e400,"events":{"a":"+1"}}`, `{"users":{"@bob:b.test":-9223372036854775808}}`,
		`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":5}]}`, `{"additional_creators":[1,"@x:y"],"m.federate":false}`,
		`{"membership":"join","join_authorised_via_users_server":"@bob:b.test"}`, `{"membership":"knock"}`, `{"users":{"@a:b":"99999999999999999999999"}}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), uint8(i*7), s, seeds[(i+3)%len(seeds)], "@dave:d.test")
	}
	f.Fuzz(func(t *testing.T, typ, ver uint8, content, stateContent, stateKey string) {
		v := allVersions[int(ver)%len(allVersions)]
		r := newRoom(t, v)
		if json.Valid([]byte(stateContent)) {
			for _, typ := range []string{"m.room.power_levels", "m.room.join_rules", "m.room.third_party_invite"} {
				sk := ""
				if typ == "m.room.third_party_invite" {
					sk = "tok"
				}
				r.state[StateKey{typ, sk}] = &testEvent{id: "$s:a.test", room: r.id, typ: typ, sk: &sk, sender: bob, content: json.RawMessage(stateContent), version: v}
			}
			if ver&0x80 != 0 {
				r.create.content = json.RawMessage(stateContent)
			}
		}
		sk := stateKey
		e := &testEvent{id: "$e:d.test", room: r.id, typ: fuzzTypes[int(typ)%len(fuzzTypes)], sender: dave, content: json.RawMessage(content), prev: []id.EventID{r.create.id}, version: v, redacts: id.EventID(stateKey)}
		if typ&0x80 == 0 {
			e.sk = &sk
		}
		if typ&0x40 != 0 {
			e.sender = bob
		}
		_ = Check(e, r.state)
		_ = CheckAuthEvents(e, []Event{r.create, r.state.Get("m.room.power_levels", ""), e})
		_ = Selection(e)
		_ = RequiredSigners(e)
		pl := LoadPowerLevels(r.state)
		for _, u := range []id.UserID{id.UserID(stateKey), bob, alice} {
			if full, lazy := pl.User(u), UserPowerLevel(r.state, u); full != lazy {
				t.Fatalf("power level of %q: full %d, lazy %d", u, full, lazy)
			}
		}
		_ = pl.Required(stateKey, true)
		_ = pl.Notification("room")
		_ = Creators(r.state)
		_ = LoadJoinRules(r.state)
		_ = Membership(r.state, id.UserID(stateKey))
	})
}

// BenchmarkCheckMessage authorises a message in a room whose power levels name 10 000 users:
// parsing those levels on every check, and with a State that caches them (CachedPowerLevels).
func BenchmarkCheckMessage(b *testing.B) {
	r := newRoom(b, "11")
	var users strings.Builder
	users.WriteString(`{"users":{"` + alice + `":100,"` + bob + `":50`)
	for i := range 10000 {
		fmt.Fprintf(&users, `,"@user%d:server%d.test":%d`, i, i%50, i%100)
	}
	users.WriteString(`}}`)
	r.set(plEvent(alice, users.String()))
	msg := r.ev(message(carol))
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := Check(msg, r.state); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		cs := cachedState{r.state, LoadPowerLevels(r.state)}
		b.ReportAllocs()
		for b.Loop() {
			if err := Check(msg, cs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzEachMember checks the scanner against encoding/json on valid objects: the same members,
// the last duplicate winning.
func FuzzEachMember(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":[1,{"c":"}"}],"a":"x\"y"}`, ` { "k\u0041" : null } `, `{"a":{"b":{}}}`, `[1]`, `{"a":}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := map[string]string{}
		ok := eachMember([]byte(s), func(k jkey, v []byte) { got[k.String()] = string(v) })
		var want map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &want) != nil || want == nil || !strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{") {
			return // malformed input may give any answer, but no panic
		}
		if !ok {
			t.Fatalf("valid object %s not walked", s)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %v, want %v", s, got, want)
		}
		for k, v := range want {
			if got[k] != string(v) {
				t.Fatalf("%s: member %q = %s, want %s", s, k, got[k], v)
			}
		}
	})
}
