package search

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
)

// Orderings of room_events results (client-server API, "Server Side Search", Ordering).
const (
	orderRank   = "rank"
	orderRecent = "recent"
)

// Group keys (client-server API, "Server Side Search", Groups).
const (
	groupRoom   = "room_id"
	groupSender = "sender"
)

// batchToken is what a next_batch token carries: where the next page starts and, for a token
// handed out inside a group, the group it stays in ("Pagination"). Ranked results page by
// offset, since a rank is no stable key; recent results page by stream position, which stays
// right however many events arrive in between.
type batchToken struct {
	Order  string `json:"o"`
	Offset int    `json:"n,omitempty"` // rank: results already returned
	Before int64  `json:"b,omitempty"` // recent: the next results are before this position
	Key    string `json:"k,omitempty"` // group key and value, for a group's token
	Value  string `json:"v,omitempty"`
}

var errBadToken = errors.New("invalid next_batch")

func (t batchToken) String() string {
	js, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(js)
}

// parseBatch reads a next_batch token; anything Lattice did not hand out is errBadToken.
func parseBatch(s string) (batchToken, error) {
	var t batchToken
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(s) > 2048 {
		return t, errBadToken
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil || dec.More() {
		return t, errBadToken
	}
	switch {
	case t.Order != orderRank && t.Order != orderRecent,
		t.Offset < 0 || t.Offset > maxRanked || t.Before < 0,
		t.Order == orderRank && t.Before != 0, t.Order == orderRecent && (t.Offset != 0 || t.Before == 0),
		t.Key != "" && t.Key != groupRoom && t.Key != groupSender,
		(t.Key == "") != (t.Value == ""):
		return t, errBadToken
	}
	return t, nil
}
