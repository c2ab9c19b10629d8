package pdu

import (
	"bytes"
	"testing"

	"maunium.net/go/mautrix/id"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts parses again from
// its JSON to the same event, and can be redacted, hashed and checked.
func FuzzParse(f *testing.F) {
	for i, version := range allVersions {
		ev := message(f, version, "seed")
		f.Add(uint8(i), ev.JSON())
		f.Add(uint8(i), ev.Redacted().JSON())
		f.Add(uint8(i), []byte(pduFor(version, map[string]string{"content": `{"a":[1.5,1e2,-0,{"b":"\u00e9\ud83d\ude00"}],"a":2}`})))
	}
	vectors, _ := loadSigningVectors(f)
	for _, c := range vectors.EventSigning {
		f.Add(uint8(0), []byte(c.Signed))
	}
	f.Add(uint8(11), []byte(`{"type":"m.room.create","state_key":"","sender":"@a:b","content":{},"depth":1,"origin_server_ts":1,"hashes":{"sha256":""},"signatures":{},"prev_events":[],"auth_events":[]}`))
	f.Fuzz(func(t *testing.T, v uint8, raw []byte) {
		version := allVersions[int(v)%len(allVersions)]
		ev, err := Parse(version, raw)
		if err != nil {
			return
		}
		again, err := Parse(version, ev.JSON())
		if err != nil {
			t.Fatalf("v%s: JSON() of an accepted event does not parse: %v\n%s", version, err, ev.JSON())
		}
		if again.EventID() != ev.EventID() || again.RoomID() != ev.RoomID() || !bytes.Equal(again.JSON(), ev.JSON()) {
			t.Fatalf("v%s: re-parse changed the event: %s -> %s", version, ev.EventID(), again.EventID())
		}
		r := ev.Redacted()
		if r.EventID() != ev.EventID() {
			t.Fatalf("v%s: redaction changed the event ID", version)
		}
		ev.CheckContentHash()
		if version.EventIDFormat() != id.EventIDFormatCustom {
			want, err := EventIDFromReferenceHash(version, ev.ReferenceHash())
			if err != nil || want != ev.EventID() {
				t.Fatalf("v%s: event ID %s is not from its reference hash %s", version, ev.EventID(), want)
			}
		}
		if canon, err := CanonicalJSON(ev.Content()); err == nil && version.ForbidFloatsAndBigInts() && !bytes.Equal(canon, ev.Content()) {
			t.Fatalf("v%s: content is not canonical: %s vs %s", version, ev.Content(), canon)
		}
	})
}

// FuzzCanonicalJSON checks that canonical JSON is a fixed point and agrees with the strict
// event parser.
func FuzzCanonicalJSON(f *testing.F) {
	f.Add([]byte(`{"b":[1,-0,1e2,{"d":null,"c":true}],"a":"\u00e9\"\\\n\u0001"}`))
	f.Add([]byte(`[1.0, 9007199254740991, "\ud83d\ude00"]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := CanonicalJSON(raw)
		if err != nil {
			return
		}
		again, err := CanonicalJSON(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not a fixed point: %s -> %s (%v)", out, again, err)
		}
		strict, err := parseJSON(out, numStrict)
		if err != nil || !bytes.Equal(strict.encode(), out) {
			t.Fatalf("strict parse of canonical output %s: %v", out, err)
		}
		lenient, err := parseJSON(raw, numLenient)
		if err != nil {
			t.Fatalf("lenient parse refused what canonical accepted: %v", err)
		}
		_ = lenient
	})
}
