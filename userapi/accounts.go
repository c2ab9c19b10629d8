package userapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// bcryptMaxLen is how much of a password bcrypt looks at.
const bcryptMaxLen = 72

// bcryptInput cuts a password to the bytes bcrypt uses. Passwords longer than 72 bytes are
// therefore hashed and compared on their first 72 bytes, as bcrypt has always done (and as hashes
// imported from other servers expect); the x/crypto package refuses to hash longer input rather
// than truncate it silently, so the cut is made here, once, for hashing and comparing alike.
func bcryptInput(password string) []byte {
	b := []byte(password)
	if len(b) > bcryptMaxLen {
		b = b[:bcryptMaxLen]
	}
	return b
}

// hashPassword returns the bcrypt hash of password, or a NULL for "" (no password login).
func (u *Users) hashPassword(password string) (sql.NullString, error) {
	if password == "" {
		return sql.NullString{}, nil
	}
	h, err := bcrypt.GenerateFromPassword(bcryptInput(password), u.opts.BcryptCost)
	if err != nil {
		return sql.NullString{}, fmt.Errorf("userapi: hash password: %w", err)
	}
	return sql.NullString{String: string(h), Valid: true}, nil
}

// CreateAccount creates a local account (ErrUserInUse if the localpart is taken in any letter
// case, including by a deactivated account) with its initial displayname.
func (u *Users) CreateAccount(ctx context.Context, req NewAccount) (*Account, error) {
	if req.Localpart == "" {
		return nil, fmt.Errorf("userapi: create account: empty localpart")
	}
	userID := u.userID(req.Localpart)
	hash, err := u.hashPassword(req.Password)
	if err != nil {
		return nil, err
	}
	name := req.DisplayName
	if name == "" {
		name = req.Localpart
	}
	nameJSON, err := json.Marshal(name)
	if err != nil {
		return nil, fmt.Errorf("userapi: create account %s: encode displayname: %w", userID, err)
	}
	now := u.now()
	err = u.db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO accounts
			(user_id, localpart_lower, password_hash, is_admin, is_guest, appservice_id, created_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			userID, strings.ToLower(req.Localpart), hash, req.Admin, req.Guest, req.AppServiceID, now.UnixMilli())
		if storage.IsUniqueViolation(err) {
			return ErrUserInUse
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO profiles (user_id, field, value) VALUES ($1, 'displayname', $2)`,
			userID, string(nameJSON))
		return err
	})
	if errors.Is(err, ErrUserInUse) {
		return nil, ErrUserInUse
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: create account %s: %w", userID, err)
	}
	return &Account{
		UserID:       userID,
		IsAdmin:      req.Admin,
		IsGuest:      req.Guest,
		CreatedAt:    time.UnixMilli(now.UnixMilli()),
		AppServiceID: req.AppServiceID,
	}, nil
}

const accountColumns = `user_id, is_admin, is_guest, deactivated, appservice_id, created_ts`

// scanAccount reads a row of accountColumns, plus extra destinations after them.
func scanAccount(row interface{ Scan(...any) error }, extra ...any) (*Account, error) {
	var a Account
	var created int64
	dest := append([]any{&a.UserID, &a.IsAdmin, &a.IsGuest, &a.Deactivated, &a.AppServiceID, &created}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	a.CreatedAt = time.UnixMilli(created)
	return &a, nil
}

// Account returns a local account, ErrNotFound if there is none.
func (u *Users) Account(ctx context.Context, userID id.UserID) (*Account, error) {
	a, err := scanAccount(u.db.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE user_id = $1`, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: load account %s: %w", userID, err)
	}
	return a, nil
}

// LookupLocalpart finds the account of a localpart typed at login: exactly, else folded to lower
// case (at most one account has a given folded localpart). ErrNotFound if none.
func (u *Users) LookupLocalpart(ctx context.Context, localpart string) (*Account, error) {
	a, err := scanAccount(u.db.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts
		WHERE user_id = $1 OR localpart_lower = $2
		ORDER BY CASE WHEN user_id = $1 THEN 0 ELSE 1 END LIMIT 1`,
		u.userID(localpart), strings.ToLower(localpart)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: look up localpart %q: %w", localpart, err)
	}
	return a, nil
}

// CheckPassword verifies a password: ErrWrongPassword, ErrDeactivated or ErrNotFound. For an
// account without a password the error matches both ErrWrongPassword and ErrNoPasswordForAcc.
//
// One bcrypt comparison runs whatever the outcome, so that the time taken does not tell which
// accounts exist.
func (u *Users) CheckPassword(ctx context.Context, userID id.UserID, password string) (*Account, error) {
	var hash sql.NullString
	a, err := scanAccount(u.db.QueryRow(ctx, `SELECT `+accountColumns+`, password_hash FROM accounts WHERE user_id = $1`,
		userID), &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("userapi: check password of %s: %w", userID, err)
	}
	if a == nil || a.Deactivated || !hash.Valid {
		u.dummyCompare(password)
		switch {
		case a == nil:
			return nil, ErrNotFound
		case a.Deactivated:
			return nil, ErrDeactivated
		}
		return nil, fmt.Errorf("%w: %w", ErrWrongPassword, ErrNoPasswordForAcc)
	}
	err = bcrypt.CompareHashAndPassword([]byte(hash.String), bcryptInput(password))
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return nil, ErrWrongPassword
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: check password of %s: %w", userID, err)
	}
	return a, nil
}

// dummyCompare spends the time of one password check against a hash made once with the
// configured cost.
func (u *Users) dummyCompare(password string) {
	u.dummyOnce.Do(func() {
		var salt [16]byte
		u.dummyHash, _ = bcrypt.GenerateFromPassword(salt[:], u.opts.BcryptCost)
	})
	_ = bcrypt.CompareHashAndPassword(u.dummyHash, bcryptInput(password))
}

// SetPassword replaces the password ("" removes password login); with logoutDevices, every
// device but keep is deleted with its tokens. ErrNotFound or ErrDeactivated for such accounts.
// UpgradeGuest turns a guest account into a full one with the password (client-server API,
// "Guest access": guests upgrade through the ordinary registration).
func (u *Users) UpgradeGuest(ctx context.Context, userID id.UserID, password string) error {
	hash, err := u.hashPassword(password)
	if err != nil {
		return err
	}
	err = u.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE accounts SET is_guest = FALSE, password_hash = $2
			WHERE user_id = $1 AND is_guest AND NOT deactivated`, userID, hash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return err
	} else if err != nil {
		return fmt.Errorf("userapi: upgrade guest %s: %w", userID, err)
	}
	u.revoked(userID) // cached devices still say guest
	return nil
}

func (u *Users) SetPassword(ctx context.Context, userID id.UserID, password string, logoutDevices bool, keep id.DeviceID) error {
	hash, err := u.hashPassword(password)
	if err != nil {
		return err
	}
	var listPos int64
	err = u.db.WithTx(ctx, func(tx *storage.Tx) error {
		listPos = 0
		if err := requireActive(ctx, tx, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET password_hash = $2 WHERE user_id = $1`, userID, hash); err != nil {
			return err
		}
		if logoutDevices {
			var err error
			listPos, err = deleteDevicesExcept(ctx, tx, userID, keep)
			return err
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeactivated) {
		return err
	}
	if err != nil {
		return fmt.Errorf("userapi: set password of %s: %w", userID, err)
	}
	if logoutDevices {
		u.revoked(userID)
		u.deviceListChanged(userID, listPos)
	}
	return nil
}

// requireActive answers ErrNotFound or ErrDeactivated unless userID is an active account.
func requireActive(ctx context.Context, q storage.Querier, userID id.UserID) error {
	var deactivated bool
	err := q.QueryRow(ctx, `SELECT deactivated FROM accounts WHERE user_id = $1`, userID).Scan(&deactivated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return err
	case deactivated:
		return ErrDeactivated
	}
	return nil
}

// SetAdmin grants or revokes server admin; ErrNotFound if there is no such account.
func (u *Users) SetAdmin(ctx context.Context, userID id.UserID, admin bool) error {
	var n int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE accounts SET is_admin = $2 WHERE user_id = $1`, userID, admin)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: set admin flag of %s: %w", userID, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	u.revoked(userID) // cached devices carry the admin flag
	return nil
}

// Deactivate deletes the account's devices and tokens, clears its password (and with erase its
// profile) and marks it deactivated, keeping the row so the user ID is never reused. Deactivating
// an account twice is not an error (a second call with erase still erases the profile).
func (u *Users) Deactivate(ctx context.Context, userID id.UserID, erase bool) error {
	var listPos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE accounts SET deactivated = TRUE, password_hash = NULL WHERE user_id = $1`, userID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM login_tokens WHERE user_id = $1`, userID); err != nil {
			return err
		}
		if erase {
			if _, err := tx.Exec(ctx, `DELETE FROM profiles WHERE user_id = $1`, userID); err != nil {
				return err
			}
		}
		// Last: it draws the device-list position, which holds up that stream's other writers.
		listPos, err = deleteDevicesExcept(ctx, tx, userID, "")
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("userapi: deactivate %s: %w", userID, err)
	}
	u.revoked(userID)
	u.deviceListChanged(userID, listPos)
	return nil
}

// Accounts lists accounts for admins, ordered by user ID, with the total matching count.
func (u *Users) Accounts(ctx context.Context, f AccountFilter) ([]Account, int, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	from := max(f.From, 0)
	var where []string
	var args []any
	if !f.Guests {
		where = append(where, "is_guest = FALSE")
	}
	if !f.Deactivated {
		where = append(where, "deactivated = FALSE")
	}
	if f.Name != "" {
		// LIKE with its wildcards escaped, so a name is matched literally.
		pattern := "%" + likeEscaper.Replace(strings.ToLower(f.Name)) + "%"
		args = append(args, pattern)
		where = append(where, fmt.Sprintf(`LOWER(user_id) LIKE $%d ESCAPE '\'`, len(args)))
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := u.db.QueryRow(ctx, `SELECT COUNT(*) FROM accounts`+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("userapi: count accounts: %w", err)
	}
	args = append(args, limit, from)
	// Byte order on both engines; PostgreSQL would otherwise sort by the database's locale.
	order := "user_id"
	if u.db.Engine() == storage.EnginePostgres {
		order = `user_id COLLATE "C"`
	}
	rows, err := u.db.Query(ctx, fmt.Sprintf(`SELECT %s FROM accounts%s ORDER BY %s LIMIT $%d OFFSET $%d`,
		accountColumns, cond, order, len(args)-1, len(args)), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("userapi: list accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("userapi: list accounts: %w", err)
		}
		out = append(out, *a)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("userapi: list accounts: %w", err)
	}
	return out, total, nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
