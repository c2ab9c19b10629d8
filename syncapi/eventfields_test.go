package syncapi

import (
	"encoding/json"
	"testing"
)

func TestKeepFields(t *testing.T) {
	raw := json.RawMessage(`{"type":"m.room.message","content":{"body":"hi","msgtype":"m.text","m.x":{"a.b":1}},"sender":"@a:x"}`)
	for _, c := range []struct {
		fields []string
		want   string
	}{
		{nil, string(raw)},
		{[]string{"type"}, `{"type":"m.room.message"}`},
		{[]string{"content.body", "sender"}, `{"content":{"body":"hi"},"sender":"@a:x"}`},
		{[]string{`content.m\.x.a\.b`}, `{"content":{"m.x":{"a.b":1}}}`},
		{[]string{"content.missing", "nope"}, `{}`},
	} {
		got := keepFields(raw, c.fields)
		var g, w any
		json.Unmarshal(got, &g)
		json.Unmarshal([]byte(c.want), &w)
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		if string(gj) != string(wj) {
			t.Errorf("fields %v: got %s, want %s", c.fields, got, c.want)
		}
	}
}
