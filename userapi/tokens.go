package userapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// QueryAccessToken resolves an access token: ErrUnknownToken, or ErrTokenExpired for an expired
// one (soft logout). Answers are cached in memory until the token expires, a bounded time passes,
// or a change through this component revokes them.
//
// The first use of an access token issued by Refresh retires the refresh token that was
// exchanged for it, together with that token's access token (spec "Refreshing access tokens").
func (u *Users) QueryAccessToken(ctx context.Context, token string) (*Device, error) {
	h := hashToken(token)
	now := u.now()
	if d, ok := u.cache.get(h, now); ok {
		return d, nil
	}
	return u.lookupAccessToken(ctx, h, now)
}

// lookupAccessToken is QueryAccessToken's path past the cache. It is a function of its own so
// that h, which the query takes as an interface value, moves to the heap only on this path.
func (u *Users) lookupAccessToken(ctx context.Context, h tokenHash, now time.Time) (*Device, error) {
	epoch := u.cache.currentEpoch()
	var expires, refreshID, parentID sql.NullInt64
	var deactivated bool
	d, err := scanDevice(u.db.QueryRow(ctx, `SELECT `+deviceColumns+`, t.expires_at, t.refresh_token_id, r.parent_id, a.deactivated
		FROM access_tokens t
		JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
		JOIN accounts a ON a.user_id = t.user_id
		LEFT JOIN refresh_tokens r ON r.id = t.refresh_token_id
		WHERE t.token_hash = $1`, h[:]), &expires, &refreshID, &parentID, &deactivated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnknownToken
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: look up access token: %w", err)
	}
	if deactivated {
		return nil, ErrUnknownToken // deactivation deletes tokens; this guards a hand-edited database
	}
	var exp time.Time
	if expires.Valid {
		exp = time.UnixMilli(expires.Int64)
		if !now.Before(exp) {
			return nil, ErrTokenExpired
		}
	}
	if parentID.Valid {
		if err := u.retireParent(ctx, d.UserID, refreshID.Int64); err != nil {
			return nil, err
		}
		// Not cached this time: retireParent moved the epoch, and reading it again now could
		// hide a revocation of this very token that committed after the query above.
		return d, nil
	}
	u.seen.overlay(d)
	u.cache.put(h, *d, exp, epoch, now)
	return d, nil
}

// retireParent revokes the refresh token that was exchanged for refresh token childID, and the
// access token issued with it, now that the new tokens have been used.
func (u *Users) retireParent(ctx context.Context, userID id.UserID, childID int64) error {
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		var parent sql.NullInt64
		err := tx.QueryRow(ctx, `SELECT parent_id FROM refresh_tokens WHERE id = $1`, childID).Scan(&parent)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !parent.Valid) {
			return nil // a concurrent request retired it already, or the child was revoked
		}
		if err != nil {
			return err
		}
		if err := deleteRefreshToken(ctx, tx, parent.Int64); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE refresh_tokens SET parent_id = NULL WHERE id = $1`, childID)
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: retire refreshed tokens of %s: %w", userID, err)
	}
	u.revoked(userID)
	return nil
}

// deleteRefreshToken revokes a refresh token and the access token issued with it.
func deleteRefreshToken(ctx context.Context, tx *storage.Tx, refreshID int64) error {
	if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE refresh_token_id = $1`, refreshID); err != nil {
		return fmt.Errorf("delete access token of refresh token: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM refresh_tokens WHERE id = $1`, refreshID); err != nil {
		return fmt.Errorf("delete refresh token: %w", err)
	}
	return nil
}

// Refresh exchanges a refresh token for new tokens of the same device (spec "Refreshing access
// tokens"). The old refresh token and its access token stay valid until the new access or
// refresh token is first used, so a client that lost the answer can repeat the exchange; a
// repeated exchange revokes the unused tokens of the previous one. An unknown, revoked or
// expired refresh token answers ErrUnknownToken.
//
// Should the server have stopped expiring access tokens since the refresh token was issued, the
// exchange answers a non-expiring access token and no refresh token, and revokes the old tokens
// at once: with no new refresh token there is nothing left to repeat the exchange with.
func (u *Users) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	h := hashToken(refreshToken)
	now := u.now()
	var toks Tokens
	var accessHash, refreshHash tokenHash
	toks.AccessToken, accessHash = newToken(accessTokenPrefix)
	expiring := u.opts.AccessTokenLifetime > 0
	if expiring {
		toks.RefreshToken, refreshHash = newToken(refreshTokenPrefix)
		toks.ExpiresIn = u.opts.AccessTokenLifetime
	}
	var dev Device
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		// The row lock makes concurrent exchanges of one token take turns, so that each one
		// revokes the successors of the one before and one token never has two live successors.
		lock := ""
		if tx.Engine() == storage.EnginePostgres {
			lock = " FOR UPDATE"
		}
		var rid int64
		var expires, parent sql.NullInt64
		err := tx.QueryRow(ctx, `SELECT id, user_id, device_id, expires_at, parent_id FROM refresh_tokens
			WHERE token_hash = $1`+lock, h[:]).Scan(&rid, &dev.UserID, &dev.DeviceID, &expires, &parent)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrUnknownToken
		}
		if err != nil {
			return err
		}
		if expires.Valid && now.UnixMilli() >= expires.Int64 {
			return ErrUnknownToken
		}
		if parent.Valid { // this token's first use retires the one it replaced
			if err := deleteRefreshToken(ctx, tx, parent.Int64); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET parent_id = NULL WHERE id = $1`, rid); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE refresh_token_id IN
			(SELECT id FROM refresh_tokens WHERE parent_id = $1)`, rid); err != nil {
			return fmt.Errorf("delete unused successors: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM refresh_tokens WHERE parent_id = $1`, rid); err != nil {
			return fmt.Errorf("delete unused successors: %w", err)
		}
		if !expiring {
			if err := deleteRefreshToken(ctx, tx, rid); err != nil {
				return err
			}
			return insertAccessToken(ctx, tx, accessHash, &dev, sql.NullInt64{}, sql.NullInt64{}, now.UnixMilli())
		}
		var newID int64
		err = tx.QueryRow(ctx, `INSERT INTO refresh_tokens (token_hash, user_id, device_id, expires_at, parent_id, created_ts)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			refreshHash[:], dev.UserID, dev.DeviceID, msOrNull(now, u.opts.RefreshTokenLifetime), rid, now.UnixMilli(),
		).Scan(&newID)
		if err != nil {
			return fmt.Errorf("store refresh token: %w", err)
		}
		return insertAccessToken(ctx, tx, accessHash, &dev, msOrNull(now, toks.ExpiresIn),
			sql.NullInt64{Int64: newID, Valid: true}, now.UnixMilli())
	})
	if errors.Is(err, ErrUnknownToken) {
		return Tokens{}, ErrUnknownToken
	}
	if err != nil {
		return Tokens{}, fmt.Errorf("userapi: refresh token: %w", err)
	}
	u.revoked(dev.UserID)
	return toks, nil
}

// CreateLoginToken makes a short-lived, single-use m.login.token for an active account.
func (u *Users) CreateLoginToken(ctx context.Context, userID id.UserID) (string, time.Duration, error) {
	token, h := newToken(loginTokenPrefix)
	now := u.nowMS()
	lifetime := u.opts.LoginTokenLifetime
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := requireActive(ctx, tx, userID); err != nil {
			return err
		}
		// Tokens that nobody redeemed would otherwise stay forever; the index makes this cheap.
		if _, err := tx.Exec(ctx, `DELETE FROM login_tokens WHERE expires_at <= $1`, now); err != nil {
			return fmt.Errorf("delete expired login tokens: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO login_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)`,
			h[:], userID, now+lifetime.Milliseconds())
		return err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeactivated) {
		return "", 0, err
	}
	if err != nil {
		return "", 0, fmt.Errorf("userapi: create login token for %s: %w", userID, err)
	}
	return token, lifetime, nil
}

// ConsumeLoginToken redeems a login token once: ErrUnknownToken if unknown, used or expired.
func (u *Users) ConsumeLoginToken(ctx context.Context, token string) (id.UserID, error) {
	h := hashToken(token)
	var userID id.UserID
	var expires int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		// Deleting and reading in one statement: of two concurrent redemptions only one gets the row.
		return tx.QueryRow(ctx, `DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_id, expires_at`, h[:]).
			Scan(&userID, &expires)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrUnknownToken
	}
	if err != nil {
		return "", fmt.Errorf("userapi: redeem login token: %w", err)
	}
	if u.nowMS() >= expires {
		return "", ErrUnknownToken
	}
	return userID, nil
}
