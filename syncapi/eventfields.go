package syncapi

import (
	"context"
	"encoding/json"
	"strings"

	"maunium.net/go/mautrix/id"
)

// splitPath splits a dot-separated property path, where \. is a literal dot and \\ a
// backslash (appendices, "Dot-separated property paths").
func splitPath(p string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && (p[i+1] == '.' || p[i+1] == '\\'):
			cur.WriteByte(p[i+1])
			i++
		case p[i] == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(parts, cur.String())
}

// keepFields returns raw, an event, with only the properties fields name (a filter's
// event_fields); raw as it is when fields is empty or raw is not an object.
func keepFields(raw json.RawMessage, fields []string) json.RawMessage {
	if len(fields) == 0 {
		return raw
	}
	var src map[string]any
	if json.Unmarshal(raw, &src) != nil {
		return raw
	}
	dst := map[string]any{}
	for _, f := range fields {
		path := splitPath(f)
		var v any = src
		ok := true
		for _, k := range path {
			m, isMap := v.(map[string]any)
			if !isMap {
				ok = false
				break
			}
			if v, ok = m[k]; !ok {
				break
			}
		}
		if !ok {
			continue
		}
		// Copy the value to the same path in dst.
		d := dst
		for _, k := range path[:len(path)-1] {
			next, isMap := d[k].(map[string]any)
			if !isMap {
				next = map[string]any{}
				d[k] = next
			}
			d = next
		}
		d[path[len(path)-1]] = v
	}
	out, err := json.Marshal(dst)
	if err != nil {
		return raw
	}
	return out
}

// formatEvents applies the filter's event_format and event_fields to the room events of a
// response: with "federation" each event is the PDU as the roomserver holds it, with its
// event_id.
func (b *roomsBuilder) formatEvents(ctx context.Context) error {
	fields, federation := b.p.filter.EventFields, b.p.filter.EventFormat == "federation"
	if len(fields) == 0 && !federation {
		return nil
	}
	apply := func(evs []json.RawMessage) error {
		for i, raw := range evs {
			if federation {
				var head struct {
					EventID id.EventID `json:"event_id"`
				}
				if json.Unmarshal(raw, &head) == nil && head.EventID != "" {
					ev, err := b.a.rooms.Event(ctx, head.EventID)
					if err != nil {
						return err
					}
					if ev != nil {
						// PDUs of room versions 3 and later carry no event_id; clients still
						// need it to refer to the event.
						raw = withField(ev.JSON(), "event_id", head.EventID)
					}
				}
			}
			evs[i] = keepFields(raw, fields)
		}
		return nil
	}
	for _, jr := range b.resp.Rooms.Join {
		if err := apply(jr.Timeline.Events); err != nil {
			return err
		}
		if err := apply(jr.State.Events); err != nil {
			return err
		}
	}
	for _, lr := range b.resp.Rooms.Leave {
		if err := apply(lr.Timeline.Events); err != nil {
			return err
		}
		if err := apply(lr.State.Events); err != nil {
			return err
		}
	}
	return nil
}
