package userapi

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// CreateRegistrationToken stores a new token (ErrExists if taken); an empty Token is replaced by
// a random one of 16 characters from the spec's alphabet [A-Za-z0-9._~-]. Counters start at zero
// whatever t says. It returns what was stored.
func (u *Users) CreateRegistrationToken(ctx context.Context, t RegistrationToken) (*RegistrationToken, error) {
	generate := t.Token == ""
	out := RegistrationToken{Token: t.Token, UsesAllowed: copyPtr(t.UsesAllowed), ExpiryTime: copyPtr(t.ExpiryTime)}
	for {
		if generate {
			out.Token = randomRegistrationToken()
		}
		err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ($1, $2, $3)`,
				out.Token, nullInt(out.UsesAllowed), nullInt(out.ExpiryTime))
			return err
		})
		switch {
		case storage.IsUniqueViolation(err) && generate:
			continue // 62^16 tokens: a collision is practically impossible, but costs nothing to handle
		case storage.IsUniqueViolation(err):
			return nil, ErrExists
		case err != nil:
			return nil, fmt.Errorf("userapi: create registration token: %w", err)
		}
		return &out, nil
	}
}

func randomRegistrationToken() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, 16)
	var buf [32]byte
	for len(out) < cap(out) {
		rand.Read(buf[:])
		for _, b := range buf {
			if b < 248 && len(out) < cap(out) { // 248 = 4*62, for an unbiased draw
				out = append(out, alphabet[b%62])
			}
		}
	}
	return string(out)
}

const regTokenColumns = `token, uses_allowed, pending, completed, expiry_time`

func scanRegistrationToken(row interface{ Scan(...any) error }) (*RegistrationToken, error) {
	var t RegistrationToken
	var uses, expiry sql.NullInt64
	if err := row.Scan(&t.Token, &uses, &t.Pending, &t.Completed, &expiry); err != nil {
		return nil, err
	}
	if uses.Valid {
		n := int(uses.Int64)
		t.UsesAllowed = &n
	}
	if expiry.Valid {
		t.ExpiryTime = &expiry.Int64
	}
	return &t, nil
}

// RegistrationTokens lists tokens ordered by token; valid filters on validity now when not nil.
func (u *Users) RegistrationTokens(ctx context.Context, valid *bool) ([]RegistrationToken, error) {
	rows, err := u.db.Query(ctx, `SELECT `+regTokenColumns+` FROM registration_tokens ORDER BY token`)
	if err != nil {
		return nil, fmt.Errorf("userapi: list registration tokens: %w", err)
	}
	defer rows.Close()
	now := u.now()
	var out []RegistrationToken
	for rows.Next() {
		t, err := scanRegistrationToken(rows)
		if err != nil {
			return nil, fmt.Errorf("userapi: list registration tokens: %w", err)
		}
		if valid == nil || t.Valid(now) == *valid {
			out = append(out, *t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("userapi: list registration tokens: %w", err)
	}
	return out, nil
}

// GetRegistrationToken returns one token, ErrNotFound if none.
func (u *Users) GetRegistrationToken(ctx context.Context, token string) (*RegistrationToken, error) {
	t, err := scanRegistrationToken(u.db.QueryRow(ctx, `SELECT `+regTokenColumns+` FROM registration_tokens WHERE token = $1`, token))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: load registration token: %w", err)
	}
	return t, nil
}

// UpdateRegistrationToken changes uses_allowed and expiry_time where set (a nil pointer to
// pointer keeps the value; a pointer to nil clears it) and returns the token as it now is.
func (u *Users) UpdateRegistrationToken(ctx context.Context, token string, usesAllowed **int, expiryTime **int64) (*RegistrationToken, error) {
	var t *RegistrationToken
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		if usesAllowed != nil {
			if _, err := tx.Exec(ctx, `UPDATE registration_tokens SET uses_allowed = $2 WHERE token = $1`,
				token, nullInt(*usesAllowed)); err != nil {
				return err
			}
		}
		if expiryTime != nil {
			if _, err := tx.Exec(ctx, `UPDATE registration_tokens SET expiry_time = $2 WHERE token = $1`,
				token, nullInt(*expiryTime)); err != nil {
				return err
			}
		}
		var err error
		t, err = scanRegistrationToken(tx.QueryRow(ctx, `SELECT `+regTokenColumns+` FROM registration_tokens WHERE token = $1`, token))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: update registration token: %w", err)
	}
	return t, nil
}

// DeleteRegistrationToken removes a token, ErrNotFound if none.
func (u *Users) DeleteRegistrationToken(ctx context.Context, token string) error {
	var n int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM registration_tokens WHERE token = $1`, token)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: delete registration token: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// UseRegistrationToken counts one completed registration against the token: ErrTokenExhausted if
// it has expired or has no uses left, ErrNotFound if unknown.
//
// The check and the increment are one UPDATE, so two registrations racing for the last use
// cannot both get it: SQLite runs one writer at a time, and PostgreSQL re-checks the WHERE
// clause against the row as the other transaction left it before updating.
func (u *Users) UseRegistrationToken(ctx context.Context, token string) error {
	now := u.nowMS()
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE registration_tokens SET completed = completed + 1
			WHERE token = $1 AND (expiry_time IS NULL OR expiry_time > $2)
			AND (uses_allowed IS NULL OR pending + completed < uses_allowed)`, token, now)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var one int
		err = tx.QueryRow(ctx, `SELECT 1 FROM registration_tokens WHERE token = $1`, token).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		return ErrTokenExhausted
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrTokenExhausted) {
		return err
	}
	if err != nil {
		return fmt.Errorf("userapi: use registration token: %w", err)
	}
	return nil
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func nullInt[T int | int64](p *T) sql.NullInt64 {
	if p == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*p), Valid: true}
}
