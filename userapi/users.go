package userapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/storage"
)

// Options configures the user component.
type Options struct {
	ServerName           string
	BcryptCost           int           // 4..31; 0 means 12
	AccessTokenLifetime  time.Duration // 0: access tokens never expire and no refresh tokens are issued
	RefreshTokenLifetime time.Duration // 0: refresh tokens live until used
	LoginTokenLifetime   time.Duration // 0 means two minutes
	Notifier             *notifier.Notifier
	Logger               *slog.Logger
}

// Defaults for options left zero.
const (
	defaultBcryptCost         = 12
	defaultLoginTokenLifetime = 2 * time.Minute
)

// Users is the user component: it implements API on the database it was given.
type Users struct {
	db   *storage.DB
	opts Options
	log  *slog.Logger
	// now is the clock; tests replace it to expire tokens without sleeping.
	now func() time.Time

	cache     *tokenCache
	seen      *seenRecorder
	pushRules *pushRulesCache // who has custom push rules, and their rulesets (pushrules_custom.go)
	ignores   *ignoreIndex    // who ignores whom (ignores.go)

	dummyOnce sync.Once
	dummyHash []byte // compared against for unknown users, so timing does not reveal them

	closeOnce sync.Once
}

var _ API = (*Users)(nil)

// New migrates the userapi tables (component "userapi") and returns the component. It starts one
// background goroutine that batches last-seen writes; Close stops it.
func New(ctx context.Context, db *storage.DB, opts Options) (*Users, error) {
	if opts.ServerName == "" {
		return nil, fmt.Errorf("userapi: no server name")
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = defaultBcryptCost
	}
	if opts.BcryptCost < bcrypt.MinCost || opts.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("userapi: bcrypt cost %d is outside %d..%d", opts.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if opts.AccessTokenLifetime < 0 || opts.RefreshTokenLifetime < 0 || opts.LoginTokenLifetime < 0 {
		return nil, fmt.Errorf("userapi: token lifetimes must not be negative")
	}
	if opts.LoginTokenLifetime == 0 {
		opts.LoginTokenLifetime = defaultLoginTokenLifetime
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := db.Migrate(ctx, "userapi", migrations); err != nil {
		return nil, fmt.Errorf("userapi: %w", err)
	}
	if err := migrateDeviceLists(ctx, db); err != nil {
		return nil, fmt.Errorf("userapi: %w", err)
	}
	if err := migrateKeys(ctx, db); err != nil {
		return nil, fmt.Errorf("userapi: %w", err)
	}
	pushRules, err := loadPushRulesCache(ctx, db, pushRulesCacheSize)
	if err != nil {
		return nil, fmt.Errorf("userapi: %w", err)
	}
	ignores, err := loadIgnores(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("userapi: %w", err)
	}
	u := &Users{db: db, opts: opts, log: opts.Logger, now: time.Now, cache: newTokenCache(defaultCacheSize),
		pushRules: pushRules, ignores: ignores}
	u.seen = newSeenRecorder(u)
	return u, nil
}

// Close stops the background last-seen writer after writing what it still holds. The database
// must still be open; the component must not be used afterwards.
func (u *Users) Close() error {
	var err error
	u.closeOnce.Do(func() { err = u.seen.close() })
	return err
}

// userID builds the ID of a local user.
func (u *Users) userID(localpart string) id.UserID {
	return id.NewUserID(localpart, u.opts.ServerName)
}

// isLocal reports whether userID belongs to this server.
func (u *Users) isLocal(userID id.UserID) bool {
	_, server, err := userID.Parse()
	return err == nil && server == u.opts.ServerName
}

// nowMS is the current time in milliseconds since the epoch.
func (u *Users) nowMS() int64 { return u.now().UnixMilli() }

// notify wakes waiters of stream for key, if a notifier was configured.
func (u *Users) notify(stream string, pos int64, key string) {
	if u.opts.Notifier != nil {
		u.opts.Notifier.Notify(stream, pos, key)
	}
}

// Token prefixes make a leaked token recognisable (secret scanners, logs) and say what it is.
const (
	accessTokenPrefix  = "lat_"
	refreshTokenPrefix = "latr_"
	loginTokenPrefix   = "latl_"
)

// tokenHash is the SHA-256 of a token, the only form in which tokens are stored.
type tokenHash [sha256.Size]byte

func hashToken(token string) tokenHash { return sha256.Sum256([]byte(token)) }

// newToken returns prefix followed by 32 random bytes in unpadded base64url, and its hash.
func newToken(prefix string) (string, tokenHash) {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
	t := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return t, hashToken(t)
}

// newDeviceID returns 10 random upper-case letters, drawn without modulo bias.
func newDeviceID() id.DeviceID {
	const n = 10
	out := make([]byte, 0, n)
	var buf [16]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, b := range buf {
			// 234 = 9*26: bytes at or above it would make the first letters likelier.
			if b < 234 && len(out) < n {
				out = append(out, 'A'+b%26)
			}
		}
	}
	return id.DeviceID(out)
}

// msOrNull turns an optional expiry into a column value: NULL when it never expires.
func msOrNull(t time.Time, lifetime time.Duration) sql.NullInt64 {
	if lifetime <= 0 {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.Add(lifetime).UnixMilli(), Valid: true}
}
