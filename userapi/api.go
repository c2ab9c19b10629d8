// Package userapi owns accounts, devices, access and refresh tokens, profiles, account data,
// filters, user-interactive auth sessions, login tokens and registration tokens.
package userapi

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"maunium.net/go/mautrix/id"
)

// Errors the API answers with; callers map them to Matrix error codes.
var (
	ErrNotFound         = errors.New("userapi: not found")
	ErrUserInUse        = errors.New("userapi: user ID already taken")
	ErrWrongPassword    = errors.New("userapi: wrong password")
	ErrDeactivated      = errors.New("userapi: account deactivated")
	ErrUnknownToken     = errors.New("userapi: unknown token")
	ErrTokenExpired     = errors.New("userapi: token expired") // soft logout: the device still exists
	ErrTokenExhausted   = errors.New("userapi: registration token used up or expired")
	ErrExists           = errors.New("userapi: already exists")
	ErrProfileTooLarge  = errors.New("userapi: profile over 64 KiB")
	ErrNoPasswordForAcc = errors.New("userapi: account has no password")
)

// StreamAccountData is the stream that account data changes are written to; the notifier is
// woken with key UserKey(user) for each change.
const StreamAccountData = "account_data"

// UserKey is the notifier key for events that concern one user.
func UserKey(u id.UserID) string { return "user:" + string(u) }

// Account is one local user.
type Account struct {
	UserID       id.UserID
	IsAdmin      bool
	IsGuest      bool
	Deactivated  bool
	CreatedAt    time.Time
	AppServiceID string // the appservice that owns the account, or ""
}

// NewAccount describes an account to create.
type NewAccount struct {
	Localpart    string
	Password     string // "" creates an account that cannot log in with a password
	Admin        bool
	Guest        bool
	AppServiceID string
	DisplayName  string // initial profile displayname; "" means the localpart
}

// Device is one login session of a user, as seen through the access token that was presented.
type Device struct {
	UserID      id.UserID
	DeviceID    id.DeviceID
	DisplayName string
	LastSeenTS  int64 // milliseconds; 0 if never seen
	LastSeenIP  string
	LastSeenUA  string
	IsGuest     bool
	IsAdmin     bool
	// AppServiceID is set when the token is an appservice's own (later issue); "" otherwise.
	AppServiceID string
}

// NewDevice describes a login.
type NewDevice struct {
	UserID      id.UserID
	DeviceID    id.DeviceID // "" generates one; an existing ID of this user is reused and its old tokens revoked
	DisplayName string      // used when the device is new, or to rename a reused one if not empty
	IP          string
	UserAgent   string
	// WithRefresh asks for a refresh token and an expiring access token (spec v1.3), given
	// the server has an access token lifetime configured.
	WithRefresh bool
}

// Tokens are the credentials of a login.
type Tokens struct {
	AccessToken  string
	RefreshToken string        // "" when the access token does not expire
	ExpiresIn    time.Duration // 0 when the access token does not expire
}

// AccountFilter selects accounts for the admin listing.
type AccountFilter struct {
	From        int    // offset
	Limit       int    // at most this many (0 means 100)
	Name        string // substring of the user ID, case-insensitive; "" means any
	Guests      bool   // include guests
	Deactivated bool   // include deactivated accounts
}

// AccountData is one account data entry.
type AccountData struct {
	RoomID   id.RoomID // "" for global account data
	Type     string
	Content  json.RawMessage
	Position int64 // stream position of its last change
}

// RegistrationToken is an admin-managed token that lets someone register (spec v1.2,
// m.login.registration_token).
type RegistrationToken struct {
	Token       string
	UsesAllowed *int   // nil: unlimited
	Pending     int    // registrations that completed the stage but not yet the registration
	Completed   int    // registrations that used it
	ExpiryTime  *int64 // milliseconds since the epoch; nil: never
}

// Valid reports whether the token may still be used at now.
func (t *RegistrationToken) Valid(now time.Time) bool {
	if t.ExpiryTime != nil && now.UnixMilli() >= *t.ExpiryTime {
		return false
	}
	return t.UsesAllowed == nil || t.Pending+t.Completed < *t.UsesAllowed
}

// API is what the user component offers the rest of Lattice.
type API interface {
	// CreateAccount creates a local account (ErrUserInUse if the localpart is taken, in any
	// letter case) with its initial profile.
	CreateAccount(ctx context.Context, req NewAccount) (*Account, error)
	// Account returns a local account, ErrNotFound if there is none.
	Account(ctx context.Context, userID id.UserID) (*Account, error)
	// LookupLocalpart finds the account of a localpart typed at login: exactly, else folded
	// to lower case. ErrNotFound if none.
	LookupLocalpart(ctx context.Context, localpart string) (*Account, error)
	// CheckPassword verifies a password: ErrWrongPassword, ErrDeactivated or ErrNotFound.
	CheckPassword(ctx context.Context, userID id.UserID, password string) (*Account, error)
	// SetPassword replaces the password; with logoutDevices, every device but keep is deleted.
	SetPassword(ctx context.Context, userID id.UserID, password string, logoutDevices bool, keep id.DeviceID) error
	// SetAdmin grants or revokes server admin.
	SetAdmin(ctx context.Context, userID id.UserID, admin bool) error
	// UpgradeGuest turns a guest account into a full one with the password: ErrNotFound for
	// an account that is no guest.
	UpgradeGuest(ctx context.Context, userID id.UserID, password string) error
	// Deactivate deletes the account's devices and tokens, clears its password (and with erase
	// its profile), and marks it deactivated so its user ID is never reused.
	Deactivate(ctx context.Context, userID id.UserID, erase bool) error
	// Accounts lists accounts for admins, ordered by user ID, with the total matching count.
	Accounts(ctx context.Context, f AccountFilter) ([]Account, int, error)

	// CreateDevice logs a user in on a device and returns its tokens.
	CreateDevice(ctx context.Context, req NewDevice) (*Device, Tokens, error)
	// QueryAccessToken resolves an access token: ErrUnknownToken, or ErrTokenExpired for an
	// expired one (soft logout). It is on every request's path, so it is cached.
	QueryAccessToken(ctx context.Context, token string) (*Device, error)
	// Refresh exchanges a refresh token for new tokens (spec "Refreshing access tokens"): the
	// old refresh token stays valid until the new access or refresh token is first used.
	Refresh(ctx context.Context, refreshToken string) (Tokens, error)
	// RecordSeen notes that a device was used from ip with ua; writes are throttled.
	RecordSeen(ctx context.Context, d *Device, ip, ua string)
	// Devices lists a user's devices.
	Devices(ctx context.Context, userID id.UserID) ([]Device, error)
	// Device returns one device, ErrNotFound if none.
	Device(ctx context.Context, userID id.UserID, deviceID id.DeviceID) (*Device, error)
	// RenameDevice sets a device's display name; ErrNotFound if none.
	RenameDevice(ctx context.Context, userID id.UserID, deviceID id.DeviceID, name string) error
	// DeleteDevices deletes devices and their tokens; unknown IDs are ignored.
	DeleteDevices(ctx context.Context, userID id.UserID, deviceIDs []id.DeviceID) error
	// DeleteAllDevices deletes every device of the user but keep ("" keeps none).
	DeleteAllDevices(ctx context.Context, userID id.UserID, keep id.DeviceID) error

	// CreateLoginToken makes a short-lived, single-use m.login.token for the user.
	CreateLoginToken(ctx context.Context, userID id.UserID) (token string, expiresIn time.Duration, err error)
	// ConsumeLoginToken redeems a login token once: ErrUnknownToken if unknown, used or expired.
	ConsumeLoginToken(ctx context.Context, token string) (id.UserID, error)

	// Profile returns the profile fields of a local user (ErrNotFound if no such account).
	Profile(ctx context.Context, userID id.UserID) (map[string]json.RawMessage, error)
	// SetProfileField sets one field; ErrProfileTooLarge if the profile would exceed 64 KiB.
	SetProfileField(ctx context.Context, userID id.UserID, key string, value json.RawMessage) error
	// DeleteProfileField removes one field (no error if it is absent).
	DeleteProfileField(ctx context.Context, userID id.UserID, key string) error

	// SetAccountData stores account data (roomID "" for global), writes it to the
	// account_data stream and wakes the user's waiters.
	SetAccountData(ctx context.Context, userID id.UserID, roomID id.RoomID, typ string, content json.RawMessage) error
	// GetAccountData returns one entry's content, ErrNotFound if none.
	GetAccountData(ctx context.Context, userID id.UserID, roomID id.RoomID, typ string) (json.RawMessage, error)
	// AccountDataSince returns the user's entries changed after position from (0: all), and the
	// position to continue from.
	AccountDataSince(ctx context.Context, userID id.UserID, from int64) ([]AccountData, int64, error)

	// CreateFilter stores a filter and returns its ID.
	CreateFilter(ctx context.Context, userID id.UserID, filter json.RawMessage) (string, error)
	// Filter returns a stored filter, ErrNotFound if none.
	Filter(ctx context.Context, userID id.UserID, filterID string) (json.RawMessage, error)

	// SaveUIASession stores a user-interactive auth session's state until expires.
	SaveUIASession(ctx context.Context, sessionID string, state json.RawMessage, expires time.Time) error
	// UIASession loads a session, ErrNotFound if unknown or expired.
	UIASession(ctx context.Context, sessionID string) (json.RawMessage, error)
	// DeleteUIASession forgets a session.
	DeleteUIASession(ctx context.Context, sessionID string) error

	// CreateRegistrationToken stores a new token (ErrExists if taken); an empty Token is
	// replaced by a random one. It returns what was stored.
	CreateRegistrationToken(ctx context.Context, t RegistrationToken) (*RegistrationToken, error)
	// RegistrationTokens lists tokens; valid filters on validity at now when not nil.
	RegistrationTokens(ctx context.Context, valid *bool) ([]RegistrationToken, error)
	// GetRegistrationToken returns one token, ErrNotFound if none.
	GetRegistrationToken(ctx context.Context, token string) (*RegistrationToken, error)
	// UpdateRegistrationToken changes uses_allowed and expiry_time where set (a nil pointer
	// to pointer keeps the value; a pointer to nil clears it).
	UpdateRegistrationToken(ctx context.Context, token string, usesAllowed **int, expiryTime **int64) (*RegistrationToken, error)
	// DeleteRegistrationToken removes a token, ErrNotFound if none.
	DeleteRegistrationToken(ctx context.Context, token string) error
	// UseRegistrationToken counts one completed registration against the token, atomically
	// checking it is still valid (ErrTokenExhausted otherwise, ErrNotFound if unknown).
	UseRegistrationToken(ctx context.Context, token string) error

	// DeviceListChanges returns the device-list changes with positions in (from, to] of
	// StreamDeviceLists, oldest first, at most limit (devicelists.go).
	DeviceListChanges(ctx context.Context, from, to int64, limit int) ([]DeviceListChange, error)
	// DeviceListsChanged returns the users whose device list changed in (from, to].
	DeviceListsChanged(ctx context.Context, from, to int64) ([]id.UserID, error)

	// PushRules returns the user's global push ruleset: the server-default rules with the user's
	// changes, and the user's own rules, in priority order (pushrules.go).
	PushRules(ctx context.Context, userID id.UserID) (*PushRuleset, error)
	// PushRule returns one rule of the ruleset, ErrNotFound if none.
	PushRule(ctx context.Context, userID id.UserID, kind PushRuleKind, ruleID string) (*PushRule, error)
	// PutPushRule adds or replaces a user-defined rule, placed before or after another of the
	// user's rules of the kind when one is named. Every push rule change writes the whole ruleset
	// as m.push_rules account data.
	PutPushRule(ctx context.Context, userID id.UserID, kind PushRuleKind, rule PushRule, before, after string) error
	// DeletePushRule deletes a user-defined rule.
	DeletePushRule(ctx context.Context, userID id.UserID, kind PushRuleKind, ruleID string) error
	// SetPushRuleEnabled enables or disables a rule, user-defined or server-default.
	SetPushRuleEnabled(ctx context.Context, userID id.UserID, kind PushRuleKind, ruleID string, enabled bool) error
	// SetPushRuleActions replaces a rule's actions, user-defined or server-default.
	SetPushRuleActions(ctx context.Context, userID id.UserID, kind PushRuleKind, ruleID string, actions []PushAction) error
	// CustomPushRules returns the rulesets of those of users whose rules differ from the server
	// defaults (own rules, or default rules with a changed enabled state or actions); the others
	// evaluate DefaultPushRules (pushrules_custom.go). It is called for every new event with the
	// room's local members, so it answers from memory.
	CustomPushRules(ctx context.Context, users []id.UserID) (map[id.UserID]*PushRuleset, error)

	// IgnoredBy returns the local users whose m.ignored_user_list names sender (ignores.go);
	// it is asked for every new event, so it answers from memory.
	IgnoredBy(ctx context.Context, sender id.UserID) (map[id.UserID]bool, error)

	// Pushers returns the user's pushers (pushers.go).
	Pushers(ctx context.Context, userID id.UserID) ([]Pusher, error)
	// AllPushers returns every pusher of every user, for the push sender's start.
	AllPushers(ctx context.Context) ([]Pusher, error)
	// SetPusher creates or replaces the user's pusher with p's app ID and pushkey; unless
	// appendPusher, pushers of other users with the same app ID and pushkey are deleted.
	SetPusher(ctx context.Context, p Pusher, appendPusher bool) error
	// DeletePusher deletes the user's pusher with the app ID and pushkey; deleting one that does
	// not exist succeeds.
	DeletePusher(ctx context.Context, userID id.UserID, appID, pushKey string) error

	// UploadKeys stores a device's device, one-time and fallback keys and returns its one-time
	// key counts; ErrInvalidKeys for keys that do not match the device or its signature (keys.go).
	UploadKeys(ctx context.Context, user id.UserID, device id.DeviceID, up KeyUpload) (map[string]int, error)
	// KeyCounts returns a device's one-time key counts and its unused fallback key algorithms.
	KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, []string, error)
	// QueryDeviceKeys returns the device keys of local users' devices (all when none are named).
	QueryDeviceKeys(ctx context.Context, want map[id.UserID][]id.DeviceID) (map[id.UserID]map[id.DeviceID]json.RawMessage, error)
	// ClaimKeys hands out one one-time key (else the fallback key) per device and algorithm.
	ClaimKeys(ctx context.Context, want map[id.UserID]map[id.DeviceID]string) (map[id.UserID]map[id.DeviceID]map[string]json.RawMessage, error)
	// SameCrossSigningKeys reports whether the user has a master key, and whether the keys given
	// are all equal to the stored ones (no user-interactive auth needed) (keys_crosssigning.go).
	SameCrossSigningKeys(ctx context.Context, user id.UserID, keys map[string]json.RawMessage) (same, hasMaster bool, err error)
	// UploadCrossSigningKeys stores cross-signing keys by type (KeyMaster, KeySelfSigning,
	// KeyUserSigning): ErrInvalidKeys, ErrInvalidSignature, ErrNoMasterKey or ErrKeyIDInUse.
	UploadCrossSigningKeys(ctx context.Context, user id.UserID, keys map[string]json.RawMessage) error
	// UploadSignatures checks and stores signer's signatures of keys, answering each refusal.
	UploadSignatures(ctx context.Context, signer id.UserID, objects map[id.UserID]map[string]json.RawMessage) (map[id.UserID]map[string]SignatureFailure, error)
	// QueryCrossSigningKeys returns local users' cross-signing keys as viewer may see them.
	QueryCrossSigningKeys(ctx context.Context, viewer id.UserID, users []id.UserID) (*CrossSigningKeysFor, error)
	// CreateKeyBackup creates a new, latest, key backup version and returns it (keys_backup.go).
	CreateKeyBackup(ctx context.Context, user id.UserID, algorithm string, authData json.RawMessage) (string, error)
	// GetKeyBackup returns a backup version ("" for the latest); ErrNotFound if none.
	GetKeyBackup(ctx context.Context, user id.UserID, version string) (*KeyBackup, error)
	// UpdateKeyBackup replaces a backup version's auth_data.
	UpdateKeyBackup(ctx context.Context, user id.UserID, version, algorithm string, authData json.RawMessage) error
	// DeleteKeyBackup deletes a backup version and its keys.
	DeleteKeyBackup(ctx context.Context, user id.UserID, version string) error
	// PutBackupKeys stores session keys in the latest backup version (*WrongBackupVersionError
	// for another) and returns its count and etag.
	PutBackupKeys(ctx context.Context, user id.UserID, version string, keys map[id.RoomID]map[string]BackupKey) (int, string, error)
	// BackupKeys returns a backup version's keys: all, of a room, or of a session.
	BackupKeys(ctx context.Context, user id.UserID, version string, room id.RoomID, session string) (map[id.RoomID]map[string]BackupKey, error)
	// DeleteBackupKeys deletes a backup version's keys (all, of a room, or of a session) and
	// returns its count and etag.
	DeleteBackupKeys(ctx context.Context, user id.UserID, version string, room id.RoomID, session string) (int, string, error)
	// CheckCrossSigningKeys validates cross-signing keys as UploadCrossSigningKeys would, without
	// storing them.
	CheckCrossSigningKeys(ctx context.Context, user id.UserID, keys map[string]json.RawMessage) error
}
