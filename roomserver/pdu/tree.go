package pdu

import (
	"cmp"
	"slices"
	"strconv"
)

// get returns the member key of object v, or nil if v is not an object or has no such key.
func (v *value) get(key string) *value {
	if v == nil || v.kind != kindObject {
		return nil
	}
	i, found := slices.BinarySearchFunc(v.obj, key, func(m member, k string) int { return cmp.Compare(m.key, k) })
	if !found {
		return nil
	}
	return &v.obj[i].val
}

// without returns a copy of object v lacking the given keys. Values are shared, not copied.
func (v *value) without(keys ...string) value {
	out := value{kind: kindObject, obj: make([]member, 0, len(v.obj))}
	for _, m := range v.obj {
		if !slices.Contains(keys, m.key) {
			out.obj = append(out.obj, m)
		}
	}
	return out
}

// keep returns a copy of object v holding only the members for which ok returns true.
func (v *value) keep(ok func(key string) bool) value {
	out := value{kind: kindObject, obj: make([]member, 0, len(v.obj))}
	for _, m := range v.obj {
		if ok(m.key) {
			out.obj = append(out.obj, m)
		}
	}
	return out
}

// with returns a copy of object v in which key is set to val.
func (v *value) with(key string, val value) value {
	out := value{kind: kindObject, obj: make([]member, 0, len(v.obj)+1)}
	out.obj = append(out.obj, v.obj...)
	i, found := slices.BinarySearchFunc(out.obj, key, func(m member, k string) int { return cmp.Compare(m.key, k) })
	if found {
		out.obj[i].val = val
	} else {
		out.obj = slices.Insert(out.obj, i, member{key: key, val: val})
	}
	return out
}

// objectOf makes an object of members with distinct keys, in canonical order.
func objectOf(ms ...member) value {
	slices.SortFunc(ms, func(a, b member) int { return cmp.Compare(a.key, b.key) })
	return value{kind: kindObject, obj: ms}
}

func stringValue(s string) value { return value{kind: kindString, str: s} }

func intValue(n int64) value {
	return value{kind: kindNumber, isInt: true, str: strconv.FormatInt(n, 10)}
}

// int64Value reads an integer that must fit in 64 bits.
func (v *value) int64Value() (int64, bool) {
	if v.kind != kindNumber || !v.isInt {
		return 0, false
	}
	n, err := strconv.ParseInt(v.str, 10, 64)
	return n, err == nil
}

// encode returns the canonical JSON of v.
func (v *value) encode() []byte {
	return appendCanonical(make([]byte, 0, 256), v)
}
