package userapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
)

// Refusals of cross-signing uploads (client-server API, "POST
// /_matrix/client/v3/keys/device_signing/upload"); callers map them to the spec's codes.
var (
	ErrInvalidSignature = errors.New("invalid signature")       // 400 M_INVALID_SIGNATURE
	ErrNoMasterKey      = errors.New("no master signing key")   // 400 M_MISSING_PARAM
	ErrKeyIDInUse       = errors.New("key ID used by a device") // 403 M_FORBIDDEN
)

// The cross-signing key types, as the usage of each key and the column that stores it.
const (
	KeyMaster      = "master"
	KeySelfSigning = "self_signing"
	KeyUserSigning = "user_signing"
)

// crossSigningMigrations create the cross-signing tables, as version 2 of the key component.
var crossSigningMigrations = []storage.Migration{{
	Version: 2,
	Name:    "cross-signing keys and signatures",
	// Signatures uploaded through /keys/signatures/upload are kept apart from the keys they sign
	// so that a key re-uploaded by its owner keeps them, and so that a signature of another user's
	// master key can be shown to its signer only.
	SQL: `CREATE TABLE e2e_cross_signing_keys (
		user_id  TEXT NOT NULL,
		key_type TEXT NOT NULL,
		key_json TEXT NOT NULL,
		PRIMARY KEY (user_id, key_type)
	);
	CREATE TABLE e2e_signatures (
		target_user_id TEXT NOT NULL,
		target_key_id  TEXT NOT NULL,
		signer_user_id TEXT NOT NULL,
		signer_key_id  TEXT NOT NULL,
		signature      TEXT NOT NULL,
		PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
	);`,
}}

// crossSigningKey is a CrossSigningKey object.
type crossSigningKey struct {
	UserID id.UserID         `json:"user_id"`
	Usage  []string          `json:"usage"`
	Keys   map[string]string `json:"keys"`
}

// checkCrossSigningKey validates a cross-signing key of user with usage typ and returns its
// object, its public key and its canonical JSON without unsigned.
func checkCrossSigningKey(raw json.RawMessage, user id.UserID, typ string) (map[string]json.RawMessage, string, string, error) {
	var obj map[string]json.RawMessage
	var k crossSigningKey
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, "", "", invalidKeys("%s key must be an object", typ)
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, "", "", invalidKeys("%s key is malformed: %v", typ, err)
	}
	if k.UserID != user {
		return nil, "", "", invalidKeys("%s key is for %s, not %s", typ, k.UserID, user)
	}
	if !slices.Contains(k.Usage, typ) {
		return nil, "", "", invalidKeys("%s key has usage %v", typ, k.Usage)
	}
	if len(k.Keys) != 1 {
		return nil, "", "", invalidKeys("%s key must hold exactly one key", typ)
	}
	var pub string
	for keyID, key := range k.Keys {
		if keyID != "ed25519:"+key {
			return nil, "", "", invalidKeys("%s key ID %q is not ed25519:<public key>", typ, keyID)
		}
		if b, err := decodeBase64(key); err != nil || len(b) != 32 {
			return nil, "", "", invalidKeys("%s key is not an ed25519 public key", typ)
		}
		pub = key
	}
	delete(obj, "unsigned")
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, "", "", err
	}
	c, err := pdu.CanonicalJSON(b)
	if err != nil {
		return nil, "", "", invalidKeys("%s key: %v", typ, err)
	}
	return obj, pub, string(c), nil
}

// publicKey returns the public key of a stored cross-signing key.
func publicKey(keyJSON string) string {
	var k crossSigningKey
	_ = json.Unmarshal([]byte(keyJSON), &k)
	for _, key := range k.Keys {
		return key
	}
	return ""
}

// crossSigningKeys loads a user's stored cross-signing keys by type.
func crossSigningKeys(ctx context.Context, q queryer, user id.UserID) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = $1`, user)
	if err != nil {
		return nil, fmt.Errorf("cross-signing keys of %s: %w", user, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var typ, key string
		if err := rows.Scan(&typ, &key); err != nil {
			return nil, fmt.Errorf("cross-signing keys of %s: %w", user, err)
		}
		out[typ] = key
	}
	return out, rows.Err()
}

// SameCrossSigningKeys reports whether the user has a master key and every key given equals the
// stored one: the case in which uploading them needs no user-interactive auth. It also reports
// whether the user has a master key at all.
func (u *Users) SameCrossSigningKeys(ctx context.Context, user id.UserID, keys map[string]json.RawMessage) (same, hasMaster bool, err error) {
	stored, err := crossSigningKeys(ctx, u.db, user)
	if err != nil {
		return false, false, fmt.Errorf("userapi: %w", err)
	}
	if stored[KeyMaster] == "" {
		return false, false, nil
	}
	for typ, raw := range keys {
		_, _, c, err := checkCrossSigningKey(raw, user, typ)
		if err != nil || stored[typ] != c {
			return false, true, nil
		}
	}
	return true, true, nil
}

// UploadCrossSigningKeys stores a user's cross-signing keys (keys by KeyMaster, KeySelfSigning,
// KeyUserSigning; each optional). The self-signing and user-signing keys must be signed by the
// master key uploaded with them, else by the stored one (ErrNoMasterKey if there is none,
// ErrInvalidSignature if the signature fails); no public key may equal one of the user's device
// IDs (ErrKeyIDInUse). A new master key drops the stored self- and user-signing keys it does not
// come with, as they are no longer signed by the master key. A change is a device-list change.
func (u *Users) UploadCrossSigningKeys(ctx context.Context, user id.UserID, keys map[string]json.RawMessage) error {
	return u.crossSigningKeys(ctx, user, keys, true)
}

// CheckCrossSigningKeys validates cross-signing keys as UploadCrossSigningKeys does, without
// storing them: the endpoint checks them before asking for user-interactive auth.
func (u *Users) CheckCrossSigningKeys(ctx context.Context, user id.UserID, keys map[string]json.RawMessage) error {
	return u.crossSigningKeys(ctx, user, keys, false)
}

// crossSigningKeys validates cross-signing keys and, with write, stores them.
func (u *Users) crossSigningKeys(ctx context.Context, user id.UserID, keys map[string]json.RawMessage, write bool) error {
	type checked struct {
		obj  map[string]json.RawMessage
		pub  string
		json string
	}
	in := map[string]checked{}
	for typ, raw := range keys {
		if typ != KeyMaster && typ != KeySelfSigning && typ != KeyUserSigning {
			return invalidKeys("unknown cross-signing key type %q", typ)
		}
		obj, pub, c, err := checkCrossSigningKey(raw, user, typ)
		if err != nil {
			return err
		}
		in[typ] = checked{obj, pub, c}
	}
	if len(in) == 0 {
		return nil
	}
	var listPos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		listPos = 0
		stored, err := crossSigningKeys(ctx, tx, user)
		if err != nil {
			return err
		}
		master := publicKey(stored[KeyMaster])
		if m, ok := in[KeyMaster]; ok {
			master = m.pub
		}
		changed := false
		for _, typ := range []string{KeyMaster, KeySelfSigning, KeyUserSigning} {
			k, ok := in[typ]
			if !ok {
				continue
			}
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2`, user, k.pub).Scan(&one)
			if err == nil {
				return fmt.Errorf("%w: %s", ErrKeyIDInUse, k.pub)
			} else if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if typ != KeyMaster {
				if master == "" {
					return ErrNoMasterKey
				}
				if err := verifySignature(k.obj, user, "ed25519:"+master, master); err != nil {
					return fmt.Errorf("%w: %s key is not signed by the master key", ErrInvalidSignature, typ)
				}
			}
			if !write || stored[typ] == k.json {
				continue
			}
			changed = true
			if _, err := tx.Exec(ctx, `INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
				ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json`, user, typ, k.json); err != nil {
				return fmt.Errorf("store %s key: %w", typ, err)
			}
		}
		if !write {
			return nil
		}
		if m, ok := in[KeyMaster]; ok && stored[KeyMaster] != "" && publicKey(stored[KeyMaster]) != m.pub {
			for _, typ := range []string{KeySelfSigning, KeyUserSigning} {
				if _, ok := in[typ]; !ok {
					if _, err := tx.Exec(ctx, `DELETE FROM e2e_cross_signing_keys WHERE user_id = $1 AND key_type = $2`, user, typ); err != nil {
						return fmt.Errorf("drop %s key: %w", typ, err)
					}
				}
			}
		}
		if !changed {
			return nil
		}
		listPos, err = RecordDeviceListChange(ctx, tx, user, nil, false)
		return err
	})
	if errors.Is(err, ErrInvalidKeys) || errors.Is(err, ErrInvalidSignature) || errors.Is(err, ErrNoMasterKey) || errors.Is(err, ErrKeyIDInUse) {
		return err
	}
	if err != nil {
		return fmt.Errorf("userapi: upload cross-signing keys of %s: %w", user, err)
	}
	u.deviceListChanged(user, listPos)
	return nil
}

// SignatureFailure is why one signed object of /keys/signatures/upload was refused.
type SignatureFailure struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

// UploadSignatures stores signatures that signer made of keys (client-server API, "POST
// /_matrix/client/v3/keys/signatures/upload"): objects maps each user to key IDs (a device ID,
// or the public key of a cross-signing key) and the signed key object. The signatures accepted
// are the signer's self-signing key over the signer's own devices, a device of the signer over
// the signer's master key, and the signer's user-signing key over another user's master key; the
// object must be the stored key. Each refused object is answered under its user and key ID.
func (u *Users) UploadSignatures(ctx context.Context, signer id.UserID, objects map[id.UserID]map[string]json.RawMessage) (map[id.UserID]map[string]SignatureFailure, error) {
	failures := map[id.UserID]map[string]SignatureFailure{}
	fail := func(user id.UserID, keyID, code, format string, args ...any) {
		if failures[user] == nil {
			failures[user] = map[string]SignatureFailure{}
		}
		failures[user][keyID] = SignatureFailure{ErrCode: code, Error: fmt.Sprintf(format, args...)}
	}
	var positions []struct {
		user id.UserID
		pos  int64
	}
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		clear(failures)
		positions = positions[:0]
		own, err := crossSigningKeys(ctx, tx, signer)
		if err != nil {
			return err
		}
		for target, keys := range objects {
			for keyID, raw := range keys {
				var obj map[string]json.RawMessage
				if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
					fail(target, keyID, "M_BAD_JSON", "not an object")
					continue
				}
				var sigs map[string]map[string]string
				_ = json.Unmarshal(obj["signatures"], &sigs)
				stored, verifyKey, device, err := signatureTarget(ctx, tx, signer, own, target, keyID, sigs[string(signer)])
				if err != nil {
					return err
				}
				if stored == "" {
					fail(target, keyID, "M_NOT_FOUND", "no key %s of %s that %s may sign", keyID, target, signer)
					continue
				}
				msg, err := signedJSON(obj)
				if err != nil {
					fail(target, keyID, "M_BAD_JSON", "not canonical JSON")
					continue
				}
				var storedObj map[string]json.RawMessage
				_ = json.Unmarshal([]byte(stored), &storedObj)
				if storedMsg, err := signedJSON(storedObj); err != nil || string(storedMsg) != string(msg) {
					fail(target, keyID, "M_INVALID_SIGNATURE", "the signed object is not the stored key")
					continue
				}
				sigKeyID := "ed25519:" + verifyKey.id
				sig, ok := sigs[string(signer)][sigKeyID]
				if !ok {
					fail(target, keyID, "M_INVALID_SIGNATURE", "no signature by %s", sigKeyID)
					continue
				}
				if err := verifySignature(obj, signer, sigKeyID, verifyKey.pub); err != nil {
					fail(target, keyID, "M_INVALID_SIGNATURE", "%v", err)
					continue
				}
				if _, err := tx.Exec(ctx, `INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
					VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)
					DO UPDATE SET signature = excluded.signature`, target, keyID, signer, sigKeyID, sig); err != nil {
					return fmt.Errorf("store signature of %s %s: %w", target, keyID, err)
				}
				// Others learn of a signature of a device or of the master key as a change of
				// the owner's device list; a user-signing signature concerns its signer only.
				var devices []id.DeviceID
				if device != "" {
					devices = []id.DeviceID{device}
				}
				pos, err := RecordDeviceListChange(ctx, tx, signer, devices, false)
				if err != nil {
					return err
				}
				positions = append(positions, struct {
					user id.UserID
					pos  int64
				}{signer, pos})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("userapi: upload signatures of %s: %w", signer, err)
	}
	for _, p := range positions {
		u.deviceListChanged(p.user, p.pos)
	}
	return failures, nil
}

// verifyKey is the key a signature must be made with: its ID part and public key.
type verifyKey struct{ id, pub string }

// signatureTarget finds what signer may sign as target's keyID: the stored key object, the key
// the signature must verify with, and the device ID when the target is a device. stored is ""
// when signer may sign no such key. sigs are the signer's signatures on the uploaded object.
func signatureTarget(ctx context.Context, tx *storage.Tx, signer id.UserID, own map[string]string, target id.UserID, keyID string, sigs map[string]string) (stored string, key verifyKey, device id.DeviceID, err error) {
	if target != signer {
		// Another user's master key, with the signer's user-signing key.
		usk := publicKey(own[KeyUserSigning])
		theirs, err := crossSigningKeys(ctx, tx, target)
		if err != nil || usk == "" || theirs[KeyMaster] == "" || publicKey(theirs[KeyMaster]) != keyID {
			return "", verifyKey{}, "", err
		}
		return theirs[KeyMaster], verifyKey{usk, usk}, "", nil
	}
	if master := own[KeyMaster]; master != "" && publicKey(master) == keyID {
		// The signer's own master key, with the device key of one of the signer's devices.
		ids := make([]string, 0, len(sigs))
		for sigKeyID := range sigs {
			ids = append(ids, sigKeyID)
		}
		slices.Sort(ids)
		for _, sigKeyID := range ids {
			dev, ok := strings.CutPrefix(sigKeyID, "ed25519:")
			if !ok || dev == keyID {
				continue
			}
			pub, err := deviceKeyOf(ctx, tx, signer, dev)
			if err != nil {
				return "", verifyKey{}, "", err
			}
			if pub != "" {
				return master, verifyKey{dev, pub}, "", nil
			}
		}
		return master, verifyKey{"", ""}, "", nil
	}
	// One of the signer's devices, with the self-signing key.
	ssk := publicKey(own[KeySelfSigning])
	var keyJSON string
	err = tx.QueryRow(ctx, `SELECT k.key_json FROM e2e_device_keys k`+currentDeviceJoin+
		`WHERE k.user_id = $1 AND k.device_id = $2`, signer, keyID).Scan(&keyJSON)
	if errors.Is(err, sql.ErrNoRows) || ssk == "" {
		return "", verifyKey{}, "", nil
	} else if err != nil {
		return "", verifyKey{}, "", fmt.Errorf("device keys of %s %s: %w", signer, keyID, err)
	}
	return keyJSON, verifyKey{ssk, ssk}, id.DeviceID(keyID), nil
}

// deviceKeyOf returns the ed25519 key of one of user's devices, "" if it has none.
func deviceKeyOf(ctx context.Context, tx *storage.Tx, user id.UserID, device string) (string, error) {
	var keyJSON string
	err := tx.QueryRow(ctx, `SELECT k.key_json FROM e2e_device_keys k`+currentDeviceJoin+
		`WHERE k.user_id = $1 AND k.device_id = $2`, user, device).Scan(&keyJSON)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	var dk deviceKeys
	_ = json.Unmarshal([]byte(keyJSON), &dk)
	return dk.Keys["ed25519:"+device], nil
}

// withSignatures merges into a stored key of target (keyID: a device ID or a cross-signing
// public key) the signatures uploaded for it by target itself and by viewer: a user-signing
// key's signature of another user's master key is shown to its signer only.
func withSignatures(ctx context.Context, q queryer, keyJSON string, target id.UserID, keyID string, viewer id.UserID) (string, error) {
	rows, err := q.Query(ctx, `SELECT signer_user_id, signer_key_id, signature FROM e2e_signatures
		WHERE target_user_id = $1 AND target_key_id = $2 AND (signer_user_id = $1 OR signer_user_id = $3)`, target, keyID, viewer)
	if err != nil {
		return "", fmt.Errorf("signatures of %s %s: %w", target, keyID, err)
	}
	defer rows.Close()
	var obj map[string]json.RawMessage
	var sigs map[string]map[string]string
	for rows.Next() {
		var signer, signerKey, sig string
		if err := rows.Scan(&signer, &signerKey, &sig); err != nil {
			return "", fmt.Errorf("signatures of %s %s: %w", target, keyID, err)
		}
		if obj == nil {
			if err := json.Unmarshal([]byte(keyJSON), &obj); err != nil {
				return "", err
			}
			_ = json.Unmarshal(obj["signatures"], &sigs)
			if sigs == nil {
				sigs = map[string]map[string]string{}
			}
		}
		if sigs[signer] == nil {
			sigs[signer] = map[string]string{}
		}
		sigs[signer][signerKey] = sig
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("signatures of %s %s: %w", target, keyID, err)
	}
	if obj == nil {
		return keyJSON, nil
	}
	raw, err := json.Marshal(sigs)
	if err != nil {
		return "", err
	}
	obj["signatures"] = raw
	out, err := json.Marshal(obj)
	return string(out), err
}

// CrossSigningKeysFor are the cross-signing keys /keys/query answers.
type CrossSigningKeysFor struct {
	Master      map[id.UserID]json.RawMessage
	SelfSigning map[id.UserID]json.RawMessage
	UserSigning map[id.UserID]json.RawMessage
}

// QueryCrossSigningKeys returns the cross-signing keys of local users as viewer sees them: master
// and self-signing keys of everyone, the user-signing key of viewer only, with the signatures
// viewer may see (withSignatures). Deactivated accounts have none.
func (u *Users) QueryCrossSigningKeys(ctx context.Context, viewer id.UserID, users []id.UserID) (*CrossSigningKeysFor, error) {
	out := &CrossSigningKeysFor{Master: map[id.UserID]json.RawMessage{}, SelfSigning: map[id.UserID]json.RawMessage{},
		UserSigning: map[id.UserID]json.RawMessage{}}
	for _, user := range users {
		// A deactivated account has no identity any more; its keys are not served.
		var deactivated bool
		err := u.db.QueryRow(ctx, `SELECT deactivated FROM accounts WHERE user_id = $1`, user).Scan(&deactivated)
		if errors.Is(err, sql.ErrNoRows) || err == nil && deactivated {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("userapi: account %s: %w", user, err)
		}
		keys, err := crossSigningKeys(ctx, u.db, user)
		if err != nil {
			return nil, fmt.Errorf("userapi: %w", err)
		}
		for typ, keyJSON := range keys {
			if typ == KeyUserSigning && user != viewer {
				continue
			}
			withSigs, err := withSignatures(ctx, u.db, keyJSON, user, publicKey(keyJSON), viewer)
			if err != nil {
				return nil, fmt.Errorf("userapi: %w", err)
			}
			switch typ {
			case KeyMaster:
				out.Master[user] = json.RawMessage(withSigs)
			case KeySelfSigning:
				out.SelfSigning[user] = json.RawMessage(withSigs)
			case KeyUserSigning:
				out.UserSigning[user] = json.RawMessage(withSigs)
			}
		}
	}
	return out, nil
}
