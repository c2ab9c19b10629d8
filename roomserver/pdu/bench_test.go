package pdu

import (
	"context"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/id"
)

// benchTemplate is a typical message: a few hundred bytes of content, three auth events.
func benchTemplate() Template {
	return Template{
		Type:   "m.room.message",
		Sender: "@alice:" + serverA,
		Content: json.RawMessage(`{"msgtype":"m.text","body":"Hello, this is a fairly ordinary chat message with some text.",` +
			`"format":"org.matrix.custom.html","formatted_body":"<p>Hello, this is a <b>fairly</b> ordinary chat message with some text.</p>",` +
			`"m.mentions":{"user_ids":["@bob:b.example"]}}`),
		RoomID:         roomFor(id.RoomV12),
		PrevEvents:     []id.EventID{prevFor(id.RoomV12, 1)},
		AuthEvents:     []id.EventID{prevFor(id.RoomV12, 2), prevFor(id.RoomV12, 3), prevFor(id.RoomV12, 4)},
		Depth:          1234,
		OriginServerTS: testTS,
	}
}

func BenchmarkParse(b *testing.B) {
	ev, err := Build(id.RoomV12, benchTemplate(), serverA, testKey(serverA))
	if err != nil {
		b.Fatal(err)
	}
	raw := ev.JSON()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(id.RoomV12, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	t := benchTemplate()
	key := testKey(serverA)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(id.RoomV12, t, serverA, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	ev, err := Build(id.RoomV12, benchTemplate(), serverA, testKey(serverA))
	if err != nil {
		b.Fatal(err)
	}
	ring := defaultRing()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifySignatures(ctx, ev, ring); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckContentHash(b *testing.B) {
	ev, err := Build(id.RoomV12, benchTemplate(), serverA, testKey(serverA))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ev.CheckContentHash() {
			b.Fatal("hash mismatch")
		}
	}
}

// BenchmarkParseStored reads the same event as BenchmarkParse the way stored events are read.
func BenchmarkParseStored(b *testing.B) {
	ev, err := Build(id.RoomV12, benchTemplate(), serverA, testKey(serverA))
	if err != nil {
		b.Fatal(err)
	}
	raw := ev.JSON()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseStored(id.RoomV12, raw, ev.EventID()); err != nil {
			b.Fatal(err)
		}
	}
}
