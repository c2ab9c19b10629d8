package userapi

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
)

// ErrInvalidKeys wraps every refusal of uploaded keys; the message says what is wrong, and
// clients see it as 400 M_INVALID_PARAM.
var ErrInvalidKeys = errors.New("invalid keys")

// invalidKeys returns an ErrInvalidKeys error with a reason.
func invalidKeys(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidKeys, fmt.Sprintf(format, args...))
}

// StreamKeyCounts is the stream that moves when a claim takes one of a device's one-time keys
// or marks its fallback key used, so that the device's /sync long-poll wakes with its new counts.
// The notifier is woken with UserKey(owner).
const StreamKeyCounts = "key_counts"

// keyMigrations create the end-to-end key tables. They are their own migration component so
// that the key store evolves without renumbering the userapi schema.
var keyMigrations = []storage.Migration{{
	Version: 1,
	Name:    "device, one-time and fallback keys",
	SQL: `CREATE TABLE e2e_device_keys (
		user_id   TEXT NOT NULL,
		device_id TEXT NOT NULL,
		key_json  TEXT NOT NULL,
		PRIMARY KEY (user_id, device_id)
	);
	CREATE TABLE e2e_one_time_keys (
		user_id   TEXT NOT NULL,
		device_id TEXT NOT NULL,
		algorithm TEXT NOT NULL,
		key_id    TEXT NOT NULL,
		key_json  TEXT NOT NULL,
		PRIMARY KEY (user_id, device_id, algorithm, key_id)
	);
	CREATE TABLE e2e_fallback_keys (
		user_id   TEXT    NOT NULL,
		device_id TEXT    NOT NULL,
		algorithm TEXT    NOT NULL,
		key_id    TEXT    NOT NULL,
		key_json  TEXT    NOT NULL,
		used      BOOLEAN NOT NULL,
		PRIMARY KEY (user_id, device_id, algorithm)
	);`,
}}

// migrateKeys applies keyMigrations.
func migrateKeys(ctx context.Context, db *storage.DB) error {
	return db.Migrate(ctx, "userapi_keys", slices.Concat(keyMigrations, crossSigningMigrations, backupMigrations, keyOwnerMigrations))
}

// KeyUpload is the body of POST /keys/upload: each part is optional.
type KeyUpload struct {
	DeviceKeys   json.RawMessage            // a DeviceKeys object, or nil
	OneTimeKeys  map[string]json.RawMessage // "algorithm:key_id" to a key (string or object)
	FallbackKeys map[string]json.RawMessage // "algorithm:key_id" to a key; at most one per algorithm
}

// deviceKeys is the part of a DeviceKeys object the server checks.
type deviceKeys struct {
	UserID     id.UserID                    `json:"user_id"`
	DeviceID   id.DeviceID                  `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// decodeBase64 decodes unpadded (or padded) standard base64, as the spec's keys and signatures
// use (appendices.md "Unpadded Base64").
func decodeBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// signedJSON returns the canonical JSON of obj without its signatures and unsigned members: the
// bytes a signature covers (appendices.md "Signing JSON").
func signedJSON(obj map[string]json.RawMessage) ([]byte, error) {
	rest := make(map[string]json.RawMessage, len(obj))
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			rest[k] = v
		}
	}
	raw, err := json.Marshal(rest)
	if err != nil {
		return nil, err
	}
	return pdu.CanonicalJSON(raw)
}

// verifySignature checks the signature of signer's key keyID (e.g. "ed25519:DEVICE") on obj,
// made with the ed25519 public key pub (unpadded base64).
func verifySignature(obj map[string]json.RawMessage, signer id.UserID, keyID, pub string) error {
	var sigs map[string]map[string]string
	if err := json.Unmarshal(obj["signatures"], &sigs); err != nil {
		return invalidKeys("signatures must be an object of objects of strings")
	}
	sig, ok := sigs[string(signer)][keyID]
	if !ok {
		return invalidKeys("no signature by %s %s", signer, keyID)
	}
	key, err := decodeBase64(pub)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return invalidKeys("%s is not an ed25519 public key", keyID)
	}
	s, err := decodeBase64(sig)
	if err != nil || len(s) != ed25519.SignatureSize {
		return invalidKeys("signature by %s is malformed", keyID)
	}
	msg, err := signedJSON(obj)
	if err != nil {
		return invalidKeys("not canonical JSON: %v", err)
	}
	if !ed25519.Verify(key, msg, s) {
		return invalidKeys("signature by %s %s does not verify", signer, keyID)
	}
	return nil
}

// checkDeviceKeys validates a DeviceKeys object uploaded by user's device and returns it in
// canonical JSON without unsigned, as it is stored (end-to-end encryption module, "Uploading
// keys"): it must name the device, list its algorithms, hold an ed25519 key of the device, and
// be signed by that key.
func checkDeviceKeys(raw json.RawMessage, user id.UserID, device id.DeviceID) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, invalidKeys("device_keys must be an object")
	}
	var dk deviceKeys
	if err := json.Unmarshal(raw, &dk); err != nil {
		return nil, invalidKeys("device_keys is malformed: %v", err)
	}
	if dk.UserID != user || dk.DeviceID != device {
		return nil, invalidKeys("device_keys are for %s %s, not the caller's device %s %s", dk.UserID, dk.DeviceID, user, device)
	}
	if len(dk.Algorithms) == 0 {
		return nil, invalidKeys("device_keys.algorithms is empty")
	}
	if len(dk.Keys) == 0 {
		return nil, invalidKeys("device_keys.keys is empty")
	}
	for keyID, key := range dk.Keys {
		alg, dev, ok := strings.Cut(keyID, ":")
		if !ok || alg == "" || id.DeviceID(dev) != device {
			return nil, invalidKeys("key ID %q is not <algorithm>:%s", keyID, device)
		}
		if _, err := decodeBase64(key); err != nil || key == "" {
			return nil, invalidKeys("key %s is not unpadded base64", keyID)
		}
	}
	edID := "ed25519:" + string(device)
	edKey, ok := dk.Keys[edID]
	if !ok {
		return nil, invalidKeys("device_keys.keys has no %s", edID)
	}
	if err := verifySignature(obj, user, edID, edKey); err != nil {
		return nil, err
	}
	delete(obj, "unsigned")
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return pdu.CanonicalJSON(b)
}

// splitKeyID splits "algorithm:key_id" of a one-time or fallback key.
func splitKeyID(full string) (alg, keyID string, err error) {
	alg, keyID, ok := strings.Cut(full, ":")
	if !ok || alg == "" || keyID == "" {
		return "", "", invalidKeys("key ID %q is not <algorithm>:<key_id>", full)
	}
	return alg, keyID, nil
}

// canonicalKey returns a one-time or fallback key (a string or an object) in canonical JSON.
func canonicalKey(full string, raw json.RawMessage) (string, error) {
	c, err := pdu.CanonicalJSON(raw)
	if err != nil || len(c) == 0 || (c[0] != '"' && c[0] != '{') {
		return "", invalidKeys("key %s must be a string or an object", full)
	}
	return string(c), nil
}

// UploadKeys stores a device's keys (client-server API, "POST /_matrix/client/v3/keys/upload"):
// device keys (validated by checkDeviceKeys; a change is a device-list change), one-time keys (a
// key ID already stored with other content is refused) and fallback keys (replacing the stored
// one of the algorithm). It returns the device's unclaimed one-time key counts per algorithm.
func (u *Users) UploadKeys(ctx context.Context, user id.UserID, device id.DeviceID, up KeyUpload) (map[string]int, error) {
	var dk []byte
	if len(up.DeviceKeys) > 0 && string(up.DeviceKeys) != "null" {
		var err error
		if dk, err = checkDeviceKeys(up.DeviceKeys, user, device); err != nil {
			return nil, err
		}
	}
	type key struct{ full, alg, id, json string }
	parse := func(m map[string]json.RawMessage) ([]key, error) {
		var out []key
		for full, raw := range m {
			alg, kid, err := splitKeyID(full)
			if err != nil {
				return nil, err
			}
			c, err := canonicalKey(full, raw)
			if err != nil {
				return nil, err
			}
			out = append(out, key{full, alg, kid, c})
		}
		slices.SortFunc(out, func(a, b key) int { return strings.Compare(a.full, b.full) })
		return out, nil
	}
	otks, err := parse(up.OneTimeKeys)
	if err != nil {
		return nil, err
	}
	fbks, err := parse(up.FallbackKeys)
	if err != nil {
		return nil, err
	}
	for i := 1; i < len(fbks); i++ {
		if fbks[i].alg == fbks[i-1].alg {
			return nil, invalidKeys("more than one fallback key of algorithm %s", fbks[i].alg)
		}
	}
	var listPos int64
	var counts map[string]int
	err = u.db.WithTx(ctx, func(tx *storage.Tx) error {
		listPos = 0
		if ok, err := ownKeys(ctx, tx, user, device); err != nil {
			return err
		} else if !ok {
			return ErrNotFound
		}
		for _, k := range otks {
			var old string
			err := tx.QueryRow(ctx, `SELECT key_json FROM e2e_one_time_keys
				WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4`, user, device, k.alg, k.id).Scan(&old)
			switch {
			case err == nil && old != k.json:
				return invalidKeys("one-time key %s already exists with other content", k.full)
			case err == nil:
				continue
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
				VALUES ($1, $2, $3, $4, $5)`, user, device, k.alg, k.id, k.json); err != nil {
				return fmt.Errorf("store one-time key %s: %w", k.full, err)
			}
		}
		for _, k := range fbks {
			// The same key uploaded again keeps its used flag; another key starts unused.
			if _, err := tx.Exec(ctx, `INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
				VALUES ($1, $2, $3, $4, $5, FALSE)
				ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json,
					used = e2e_fallback_keys.used AND e2e_fallback_keys.key_id = excluded.key_id AND e2e_fallback_keys.key_json = excluded.key_json`,
				user, device, k.alg, k.id, k.json); err != nil {
				return fmt.Errorf("store fallback key %s: %w", k.full, err)
			}
		}
		if counts, err = keyCounts(ctx, tx, user, device); err != nil {
			return err
		}
		if dk == nil {
			return nil
		}
		var old string
		err = tx.QueryRow(ctx, `SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2`, user, device).Scan(&old)
		if err == nil && old == string(dk) {
			return nil // the same keys again: nothing others see has changed
		} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Signatures of the old keys do not sign the new ones.
		if _, err := tx.Exec(ctx, `DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_key_id = $2`, user, device); err != nil {
			return fmt.Errorf("drop signatures of old device keys: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`, user, device, string(dk)); err != nil {
			return fmt.Errorf("store device keys: %w", err)
		}
		listPos, err = RecordDeviceListChange(ctx, tx, user, []id.DeviceID{device}, false)
		return err
	})
	if errors.Is(err, ErrInvalidKeys) || errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: upload keys of %s %s: %w", user, device, err)
	}
	u.deviceListChanged(user, listPos)
	return counts, nil
}

// queryer is what keyCounts reads through: the database or a transaction.
type queryer interface {
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// keyCounts counts a device's unclaimed one-time keys per algorithm. signed_curve25519 is always
// present, as clients decide from it whether to upload more.
func keyCounts(ctx context.Context, q queryer, user id.UserID, device id.DeviceID) (map[string]int, error) {
	rows, err := q.Query(ctx, `SELECT algorithm, COUNT(*) FROM e2e_one_time_keys
		WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm`, user, device)
	if err != nil {
		return nil, fmt.Errorf("count one-time keys: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{"signed_curve25519": 0}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, fmt.Errorf("count one-time keys: %w", err)
		}
		counts[alg] = n
	}
	return counts, rows.Err()
}

// KeyCounts returns a device's unclaimed one-time key counts per algorithm and the algorithms
// of its unused fallback keys, sorted: what /sync reports to the device.
func (u *Users) KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, []string, error) {
	var one int
	err := u.db.QueryRow(ctx, `SELECT 1 FROM devices k`+currentDeviceJoin+`WHERE k.user_id = $1 AND k.device_id = $2`, user, device).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return map[string]int{"signed_curve25519": 0}, []string{}, nil // no keys of this device yet
	} else if err != nil {
		return nil, nil, fmt.Errorf("userapi: key counts of %s %s: %w", user, device, err)
	}
	counts, err := keyCounts(ctx, u.db, user, device)
	if err != nil {
		return nil, nil, fmt.Errorf("userapi: key counts of %s %s: %w", user, device, err)
	}
	rows, err := u.db.Query(ctx, `SELECT algorithm FROM e2e_fallback_keys
		WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm`, user, device)
	if err != nil {
		return nil, nil, fmt.Errorf("userapi: fallback keys of %s %s: %w", user, device, err)
	}
	defer rows.Close()
	algs := []string{}
	for rows.Next() {
		var alg string
		if err := rows.Scan(&alg); err != nil {
			return nil, nil, fmt.Errorf("userapi: fallback keys of %s %s: %w", user, device, err)
		}
		algs = append(algs, alg)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("userapi: fallback keys of %s %s: %w", user, device, err)
	}
	return counts, algs, nil
}

// QueryDeviceKeys returns the device keys of local users' devices (client-server API, "POST
// /_matrix/client/v3/keys/query"): for each user the devices asked for, or all when none are
// named. Devices without keys, deleted devices and unknown users are left out. Each key object
// carries unsigned.device_display_name.
func (u *Users) QueryDeviceKeys(ctx context.Context, want map[id.UserID][]id.DeviceID) (map[id.UserID]map[id.DeviceID]json.RawMessage, error) {
	out := make(map[id.UserID]map[id.DeviceID]json.RawMessage, len(want))
	for user, devices := range want {
		rows, err := u.db.Query(ctx, `SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k`+currentDeviceJoin+
			`WHERE k.user_id = $1`, user)
		if err != nil {
			return nil, fmt.Errorf("userapi: device keys of %s: %w", user, err)
		}
		m := map[id.DeviceID]json.RawMessage{}
		for rows.Next() {
			var dev id.DeviceID
			var keyJSON, name string
			if err := rows.Scan(&dev, &keyJSON, &name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("userapi: device keys of %s: %w", user, err)
			}
			if len(devices) > 0 && !slices.Contains(devices, dev) {
				continue
			}
			withSigs, err := withSignatures(ctx, u.db, keyJSON, user, string(dev), user)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("userapi: device keys of %s %s: %w", user, dev, err)
			}
			withName, err := withDisplayName(withSigs, name)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("userapi: device keys of %s %s: %w", user, dev, err)
			}
			m[dev] = withName
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("userapi: device keys of %s: %w", user, err)
		}
		out[user] = m
	}
	return out, nil
}

// withDisplayName adds unsigned.device_display_name to stored device keys when the device has
// a name.
func withDisplayName(keyJSON, name string) (json.RawMessage, error) {
	if name == "" {
		return json.RawMessage(keyJSON), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(keyJSON), &obj); err != nil {
		return nil, err
	}
	unsigned, err := json.Marshal(map[string]string{"device_display_name": name})
	if err != nil {
		return nil, err
	}
	obj["unsigned"] = unsigned
	return json.Marshal(obj)
}

// ClaimKeys hands out one key per (user, device, algorithm) asked for (client-server API, "POST
// /_matrix/client/v3/keys/claim"): an unclaimed one-time key, deleted as it is handed out so
// that no two claims ever get the same one, else the device's fallback key, which is marked
// used and may be handed out again. Devices with neither, and deleted devices, are left out. The owners of the
// devices whose counts changed are woken on StreamKeyCounts.
func (u *Users) ClaimKeys(ctx context.Context, want map[id.UserID]map[id.DeviceID]string) (map[id.UserID]map[id.DeviceID]map[string]json.RawMessage, error) {
	type claim struct {
		user   id.UserID
		device id.DeviceID
		alg    string
	}
	var claims []claim
	for user, devices := range want {
		for device, alg := range devices {
			claims = append(claims, claim{user, device, alg})
		}
	}
	// A fixed order keeps concurrent claimers from deadlocking on PostgreSQL's row locks.
	slices.SortFunc(claims, func(a, b claim) int {
		if c := strings.Compare(string(a.user), string(b.user)); c != 0 {
			return c
		}
		return strings.Compare(string(a.device), string(b.device))
	})
	out := map[id.UserID]map[id.DeviceID]map[string]json.RawMessage{}
	var pos int64
	var woken []id.UserID
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		clear(out)
		pos, woken = 0, woken[:0]
		for _, c := range claims {
			keyID, keyJSON, changed, err := claimOne(ctx, tx, c.user, c.device, c.alg)
			if err != nil {
				return err
			}
			if keyID == "" {
				continue
			}
			if out[c.user] == nil {
				out[c.user] = map[id.DeviceID]map[string]json.RawMessage{}
			}
			out[c.user][c.device] = map[string]json.RawMessage{c.alg + ":" + keyID: json.RawMessage(keyJSON)}
			if changed && !slices.Contains(woken, c.user) {
				woken = append(woken, c.user)
			}
		}
		if len(woken) == 0 {
			return nil
		}
		var err error
		pos, err = tx.NextStreamPosition(ctx, StreamKeyCounts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("userapi: claim keys: %w", err)
	}
	for _, user := range woken {
		u.notify(StreamKeyCounts, pos, UserKey(user))
	}
	return out, nil
}

// claimOne takes one key of a device for alg inside tx: a one-time key (deleted), else the
// fallback key (marked used). changed reports whether the device's counts changed.
func claimOne(ctx context.Context, tx *storage.Tx, user id.UserID, device id.DeviceID, alg string) (keyID, keyJSON string, changed bool, err error) {
	// A deleted device's keys may still be stored; they must never start a new session.
	if ok, err := ownKeys(ctx, tx, user, device); err != nil || !ok {
		return "", "", false, err
	}
	// Under PostgreSQL's read committed, a concurrent claimer may delete the key picked here
	// between the SELECT and the DELETE: the DELETE then removes nothing and another is picked.
	for {
		err := tx.QueryRow(ctx, `SELECT key_id, key_json FROM e2e_one_time_keys
			WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY key_id LIMIT 1`, user, device, alg).Scan(&keyID, &keyJSON)
		if errors.Is(err, sql.ErrNoRows) {
			break
		} else if err != nil {
			return "", "", false, fmt.Errorf("claim one-time key of %s %s: %w", user, device, err)
		}
		res, err := tx.Exec(ctx, `DELETE FROM e2e_one_time_keys
			WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4`, user, device, alg, keyID)
		if err != nil {
			return "", "", false, fmt.Errorf("claim one-time key of %s %s: %w", user, device, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return "", "", false, fmt.Errorf("claim one-time key of %s %s: %w", user, device, err)
		} else if n == 1 {
			return keyID, keyJSON, true, nil
		}
	}
	var used bool
	err = tx.QueryRow(ctx, `SELECT key_id, key_json, used FROM e2e_fallback_keys
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`, user, device, alg).Scan(&keyID, &keyJSON, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	} else if err != nil {
		return "", "", false, fmt.Errorf("claim fallback key of %s %s: %w", user, device, err)
	}
	if used {
		return keyID, keyJSON, false, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE e2e_fallback_keys SET used = TRUE
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`, user, device, alg); err != nil {
		return "", "", false, fmt.Errorf("claim fallback key of %s %s: %w", user, device, err)
	}
	return keyID, keyJSON, true, nil
}
