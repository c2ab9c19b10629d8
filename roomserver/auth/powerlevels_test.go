package auth

import (
	"math"
	"testing"

	"maunium.net/go/mautrix/id"
)

func plEvent(sender, content string) string {
	return `{"type":"m.room.power_levels","sender":"` + sender + `","state_key":"","content":` + content + `}`
}

// Power levels sub-rules by text: v1–v9 users 1, no previous 2, named 3, events changed 4,
// events added 5, users changed 6, users added 7; v10/v11 add two validation rules in front
// (+2); v12 adds the creators rule 4 (+3).
func TestPowerLevelsChanges(t *testing.T) {
	const (
		base  = `"users":{{alice100,}"` + bob + `":50}`
		users = "1:10.7.1 6:9.7.1 10:9.9.1 12:10.10.1"
	)
	namedRule := func(sub string) string {
		return "1:10.3." + sub + " 6:9.3." + sub + " 10:9.5." + sub + " 12:10.6." + sub
	}
	runCheckCases(t, []checkCase{
		{name: "unchanged", event: plEvent(bob, `{`+base+`}`)},
		{name: "lower own level", event: plEvent(bob, `{"users":{{alice100,}"`+bob+`":40}}`)},
		{name: "raise other to own level", event: plEvent(bob, `{"users":{{alice100,}"`+bob+`":50,"`+carol+`":50}}`)},
		{name: "raise other above own level", event: plEvent(bob, `{"users":{{alice100,}"`+bob+`":50,"`+carol+`":51}}`), rule: users},
		{name: "raise own level", event: plEvent(bob, `{"users":{{alice100,}"`+bob+`":51}}`), rule: users},
		{name: "change higher user", only: versionsUpTo(11), event: plEvent(bob, `{"users":{"`+alice+`":40,"`+bob+`":50}}`), rule: "1:10.6.1 6:9.6.1 10:9.8.1"},
		{name: "remove higher user", only: versionsUpTo(11), event: plEvent(bob, `{"users":{"`+bob+`":50}}`), rule: "1:10.6.1 6:9.6.1 10:9.8.1"},
		{name: "change equal user", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50,"` + carol + `":50}}`), event: plEvent(bob, `{`+base+`}`), rule: "1:10.6.1 6:9.6.1 10:9.8.1 12:10.9.1"},
		{name: "demote lower user", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50,"` + carol + `":49}}`), event: plEvent(bob, `{`+base+`}`)},
		{name: "lower ban", event: plEvent(bob, `{`+base+`,"ban":40}`)},
		{name: "set ban to own level", event: plEvent(bob, `{`+base+`,"ban":50}`)},
		{name: "raise invite above own level", event: plEvent(bob, `{`+base+`,"invite":51}`), rule: namedRule("2")},
		{name: "change a level above own", setup: powerLevels(`{` + base + `,"kick":100}`), event: plEvent(bob, `{`+base+`,"kick":50}`), rule: namedRule("1")},
		{name: "remove a level above own", setup: powerLevels(`{` + base + `,"users_default":60}`), event: plEvent(bob, `{`+base+`}`), rule: namedRule("1")},
		{name: "same value in another form", setup: powerLevels(`{` + base + `,"redact":"100"}`), event: plEvent(bob, `{`+base+`,"redact":" 100"}`), rule: "1: 10:9.1 12:10.1"},
		{name: "add event level at own level", event: plEvent(bob, `{`+base+`,"events":{"m.room.name":50}}`)},
		{name: "add event level above own", event: plEvent(bob, `{`+base+`,"events":{"m.room.name":51}}`), rule: "1:10.5.1 6:9.5.1 10:9.7.1 12:10.8.1"},
		{name: "remove event level above own", setup: powerLevels(`{` + base + `,"events":{"m.room.tombstone":100}}`), event: plEvent(bob, `{`+base+`}`), rule: "1:10.4.1 6:9.4.1 10:9.6.1 12:10.7.1"},
		{name: "keep event level above own", setup: powerLevels(`{` + base + `,"events":{"m.room.tombstone":100}}`), event: plEvent(bob, `{`+base+`,"events":{"m.room.tombstone":100,"m.room.name":10}}`)},
		{name: "change notification level above own", setup: powerLevels(`{` + base + `,"notifications":{"room":100}}`), event: plEvent(bob, `{`+base+`,"notifications":{"room":50}}`), rule: "1: 6:9.4.1 10:9.6.1 12:10.7.1"},
		{name: "add notification level above own", event: plEvent(bob, `{`+base+`,"notifications":{"room":51}}`), rule: "1: 6:9.5.1 10:9.7.1 12:10.8.1"},
		{name: "power levels below state_default", event: plEvent(carol, `{`+base+`}`), rule: "1:8 6:7 12:8"},
		{name: "power levels with a level for them", setup: powerLevels(`{` + base + `,"events":{"m.room.power_levels":100}}`), event: plEvent(bob, `{`+base+`}`), rule: "1:8 6:7 12:8"},

		// validation of the new content
		{name: "string named level", event: plEvent(alice, `{`+base+`,"ban":"50"}`), rule: "1: 10:9.1 12:10.1"},
		{name: "float named level", event: plEvent(alice, `{`+base+`,"ban":50.0}`), rule: "1: 10:9.1 12:10.1"},
		{name: "boolean named level", event: plEvent(alice, `{`+base+`,"kick":true}`), rule: "1: 10:9.1 12:10.1"},
		{name: "named level out of double range", event: plEvent(alice, `{`+base+`,"ban":1e400}`), rule: "1:10.1 6: 10:9.1 12:10.1"},
		{name: "big integer", event: plEvent(alice, `{`+base+`,"ban":9007199254740992}`), rule: "1:10.3.2 6: 10:9.1 12:10.1"},
		{name: "events not an object", event: plEvent(alice, `{`+base+`,"events":5}`), rule: "1: 10:9.2 12:10.2"},
		{name: "events null", event: plEvent(alice, `{`+base+`,"events":null}`), rule: "1: 10:9.2 12:10.2"},
		{name: "string event level", event: plEvent(alice, `{`+base+`,"events":{"m.room.name":"50"}}`), rule: "1: 10:9.2 12:10.2"},
		{name: "string notification level", event: plEvent(alice, `{`+base+`,"notifications":{"room":"50"}}`), rule: "1: 10:9.2 12:10.2"},
		{name: "string user level", event: plEvent(alice, `{"users":{{alice100,}"`+bob+`":"50"}}`), rule: "1: 10:9.3 12:10.3"},
		{name: "string user level with spaces and zeroes", event: plEvent(alice, `{"users":{{alice100,}"`+bob+`":" +0050 "}}`), rule: "1: 10:9.3 12:10.3"},
		{name: "string user level not an integer", event: plEvent(alice, `{"users":{{alice100,}"`+bob+`":"5O"}}`), rule: "1:10.1 6:9.1 10:9.3 12:10.3"},
		{name: "float user level", event: plEvent(alice, `{"users":{{alice100,}"`+bob+`":50.7}}`), rule: "1: 6:9.1 10:9.3 12:10.3"},
		{name: "user level out of double range", event: plEvent(alice, `{"users":{{alice100,}"`+bob+`":-1e999}}`), rule: "1:10.1 6:9.1 10:9.3 12:10.3"},
		{name: "users key not a user ID", event: plEvent(alice, `{"users":{{alice100,}"bob":50}}`), rule: "1:10.1 6:9.1 10:9.3 12:10.3"},
		{name: "users key with bad server", event: plEvent(alice, `{"users":{{alice100,}"@bob:b_test!":50}}`), rule: "1:10.1 6:9.1 10:9.3 12:10.3"},
		{name: "historical user ID", event: plEvent(alice, `{"users":{{alice100,}"@Bob Smith:b.test":50}}`)},
		{name: "users null", event: plEvent(alice, `{"users":null}`), rule: "1:10.1 6:9.1 10:9.3 12:10.3"},
		{name: "users a list", event: plEvent(alice, `{"users":[]}`), rule: "1:10.1 6:9.1 10:9.3 12:10.3"},
		{name: "users absent", event: plEvent(alice, `{}`)},
		{name: "content with case-different keys", setup: powerLevels(`{` + base + `,"ban":100}`), event: plEvent(bob, `{`+base+`,"Ban":100}`), rule: namedRule("1")},

		// no previous power levels: only validation applies
		{name: "first power levels", setup: func(r *room) { r.del("m.room.power_levels", "") }, event: plEvent(alice, `{"users":{"`+carol+`":1000},"ban":1000}`)},
		{name: "first power levels by member", setup: func(r *room) { r.del("m.room.power_levels", "") }, event: plEvent(carol, `{}`), rule: "1:8 6:7 12:8"},

		// v12: creators are infinitely powerful and may not be listed
		{name: "creator listed", event: plEvent(alice, `{"users":{"`+alice+`":100,"`+bob+`":50}}`), rule: "1: 12:10.4"},
		{name: "creator listed without previous power levels", setup: func(r *room) { r.del("m.room.power_levels", "") }, event: plEvent(alice, `{"users":{"`+alice+`":100}}`), rule: "1: 12:10.4"},
		{name: "creator raises above 100", event: plEvent(alice, `{"users":{{alice100,}"`+bob+`":1000}}`), rule: "1:10.7.1 6:9.7.1 10:9.9.1 12:"},
		{name: "additional creator listed", only: versionsFrom(12), setup: func(r *room) { r.setCreate(`"additional_creators":["` + zed + `"]`) }, event: plEvent(alice, `{"users":{"`+zed+`":0}}`), rule: "12:10.4"},
		{name: "additional creator sends", only: versionsFrom(12), setup: func(r *room) {
			r.setCreate(`"additional_creators":["` + zed + `"]`)
			r.set(member(zed, zed, joinC))
		}, event: plEvent(zed, `{"users":{"`+bob+`":99},"state_default":1000}`)},
		{name: "bob cannot demote creator by users_default", only: versionsFrom(12), event: plEvent(bob, `{"users":{"`+bob+`":50},"users_default":-10}`)},
	})
}

func TestParseLevel(t *testing.T) {
	const bad = math.MinInt32 // marks "not a level" in the table
	cases := []struct {
		raw            string
		v1, v6, v10    int64
		v1OutOfRange   bool
		stringsInV6Fmt bool
	}{
		{raw: `50`, v1: 50, v6: 50, v10: 50},
		{raw: `-50`, v1: -50, v6: -50, v10: -50},
		{raw: `"50"`, v1: 50, v6: 50, v10: bad},
		{raw: `"000100"`, v1: 100, v6: 100, v10: bad},
		{raw: `" +100 "`, v1: 100, v6: 100, v10: bad},
		{raw: `" -100 "`, v1: -100, v6: -100, v10: bad},
		{raw: `"\t100\n"`, v1: 100, v6: 100, v10: bad},
		{raw: `"1 00"`, v1: bad, v6: bad, v10: bad},
		{raw: `"50.5"`, v1: bad, v6: bad, v10: bad},
		{raw: `"+-5"`, v1: bad, v6: bad, v10: bad},
		{raw: `""`, v1: bad, v6: bad, v10: bad},
		{raw: `"99999999999999999999"`, v1: math.MaxInt64, v6: math.MaxInt64, v10: bad},
		{raw: `5.114698E4`, v1: 51146, v6: bad, v10: bad},
		{raw: `50.57`, v1: 50, v6: bad, v10: bad},
		{raw: `-50.57`, v1: -50, v6: bad, v10: bad},
		{raw: `1e-999`, v1: 0, v6: bad, v10: bad},
		{raw: `1e999`, v1: bad, v1OutOfRange: true, v6: bad, v10: bad},
		{raw: `99999999999999999999`, v1: math.MaxInt64, v6: bad, v10: bad},
		{raw: `9007199254740991`, v1: 9007199254740991, v6: 9007199254740991, v10: 9007199254740991},
		{raw: `9007199254740992`, v1: 9007199254740992, v6: bad, v10: bad},
		{raw: `true`, v1: bad, v6: bad, v10: bad},
		{raw: `null`, v1: bad, v6: bad, v10: bad},
		{raw: `{}`, v1: bad, v6: bad, v10: bad},
	}
	for _, c := range cases {
		for v, want := range map[id.RoomVersion]int64{"1": c.v1, "6": c.v6, "10": c.v10} {
			got, err := parseLevel([]byte(c.raw), v)
			switch {
			case want == bad && err == nil:
				t.Errorf("v%s %s: got %d, want not a level", v, c.raw, got)
			case want == bad && v == "1" && c.v1OutOfRange != (err == errOutOfRange):
				t.Errorf("v%s %s: got %v, want out of range %v", v, c.raw, err, c.v1OutOfRange)
			case want != bad && (err != nil || got != want):
				t.Errorf("v%s %s: got %d, %v, want %d", v, c.raw, got, err, want)
			}
		}
	}
}

// TestCachedPowerLevels checks that a State offering parsed power levels is used.
func TestCachedPowerLevels(t *testing.T) {
	r := newRoom(t, "11")
	pl := LoadPowerLevels(r.state)
	cs := cachedState{r.state, pl}
	if err := Check(r.ev(stateEv("m.room.topic", bob, "")), cs); err != nil {
		t.Fatal(err)
	}
	// Swap in levels that lock bob out: the cached value must be the one consulted.
	r2 := newRoom(t, "11")
	r2.set(plEvent(alice, `{"users":{"`+alice+`":100}}`))
	cs.pl = LoadPowerLevels(r2.state)
	if err := Check(r.ev(stateEv("m.room.topic", bob, "")), cs); err == nil {
		t.Fatal("cached power levels were not used")
	}
}

type cachedState struct {
	StateMap
	pl *PowerLevels
}

func (c cachedState) PowerLevels() *PowerLevels { return c.pl }

// TestLazyPowerLevels checks that reading one user at a time (parseLazy, with and without the
// user named in advance) agrees with reading them all (parseFull), escapes and duplicate keys
// included.
func TestLazyPowerLevels(t *testing.T) {
	contents := []string{
		`{"users":{"@bob:b.test":50,"@carol:c.test":"7"}}`,
		`{"users":{"@bob\u003ab.test":60,"@\u00e9:x.test":3,"@é2:x.test":4}}`,
		`{"users":{"@bob:b.test":50,"@bob:b.test":10},"users_default":2}`,
		`{"users":{"@bob:b.test":50},"users":{"@carol:c.test":1}}`,
		`{"users":{"@bob:b.test":50},"users":null,"users_default":5}`,
		`{"users":{"@bob:b.test":true,"@carol:c.test":1.5}}`,
		`{"users":[1,2],"users_default":"9"}`,
		`{"users":{}}`,
	}
	who := []id.UserID{bob, carol, "@é:x.test", "@é2:x.test", dave}
	for _, v := range []id.RoomVersion{"1", "6", "10"} {
		for _, c := range contents {
			full, _ := parsePowerLevels([]byte(c), v, parseFull)
			for _, u := range who {
				want, wantOK := full.user(string(u))
				for _, named := range [][]id.UserID{{u}, nil, {dave, u}} {
					lazy, _ := parsePowerLevels([]byte(c), v, parseLazy, named...)
					if got, ok := lazy.user(string(u)); got != want || ok != wantOK {
						t.Errorf("v%s %s, %s (named %v): lazy %d %v, full %d %v", v, c, u, named, got, ok, want, wantOK)
					}
				}
			}
		}
	}
}

func TestNewStateMap(t *testing.T) {
	r := newRoom(t, "10")
	a := r.ev(stateEv("m.room.topic", bob, ""))
	b := r.ev(stateEv("m.room.topic", carol, ""))
	m := NewStateMap(a, r.ev(message(bob)), nil, b)
	if len(m) != 1 || m.Get("m.room.topic", "") != Event(b) || m.Get("m.room.name", "") != nil {
		t.Fatalf("NewStateMap = %v", m)
	}
}
