package store

import (
	"context"
	"errors"
	"fmt"
)

// CreateUser inserts u and sets u.ID. Zero CreatedAt and UpdatedAt are set from the store's
// clock. It returns an error wrapping ErrConflict if the name or the Unix uid is taken; the
// message says which. Names and roles are validated by package auth, not here.
func (db *DB) CreateUser(ctx context.Context, u *User) error {
	u.CreatedAt = normTime(u.CreatedAt)
	u.UpdatedAt = normTime(u.UpdatedAt)
	err := db.gorm.WithContext(ctx).Create(u).Error
	if err == nil {
		return nil
	}
	err = translate(err, fmt.Sprintf("create user %q", u.Name))
	if errors.Is(err, ErrConflict) {
		// The translated driver error does not say which unique index refused the row; look,
		// so that a person learns what to change. (A race may make this guess wrong; the
		// ErrConflict stands either way.)
		if _, getErr := db.GetUserByName(ctx, u.Name); getErr == nil {
			return fmt.Errorf("%w: create user %q: the name is taken", ErrConflict, u.Name)
		}
		if u.UnixUID != nil {
			return fmt.Errorf("%w: create user %q: unix uid %d already belongs to another user", ErrConflict, u.Name, *u.UnixUID)
		}
	}
	return err
}

// GetUserByName returns the user with that name, or an error wrapping ErrNotFound.
func (db *DB) GetUserByName(ctx context.Context, name string) (*User, error) {
	return db.getUser(ctx, fmt.Sprintf("get user %q", name), "name = ?", name)
}

// GetUserByID returns the user with that id, or an error wrapping ErrNotFound.
func (db *DB) GetUserByID(ctx context.Context, id uint) (*User, error) {
	return db.getUser(ctx, fmt.Sprintf("get user %d", id), "id = ?", id)
}

// GetUserByUnixUID returns the user mapped to that Unix uid, or an error wrapping ErrNotFound.
func (db *DB) GetUserByUnixUID(ctx context.Context, uid int) (*User, error) {
	return db.getUser(ctx, fmt.Sprintf("get user with unix uid %d", uid), "unix_uid = ?", uid)
}

func (db *DB) getUser(ctx context.Context, op, where string, arg any) (*User, error) {
	var u User
	if err := db.gorm.WithContext(ctx).Where(where, arg).Take(&u).Error; err != nil {
		return nil, translate(err, op)
	}
	return &u, nil
}

// ListUsers returns every user, ordered by name.
func (db *DB) ListUsers(ctx context.Context) ([]User, error) {
	out := []User{}
	if err := db.gorm.WithContext(ctx).Order("name").Find(&out).Error; err != nil {
		return nil, translate(err, "list users")
	}
	return out, nil
}

// DeleteUser deletes the user. The database deletes their sessions and API tokens with them and
// leaves their instances without an owner; audit events keep naming them. It returns an error
// wrapping ErrNotFound if there is no such user.
func (db *DB) DeleteUser(ctx context.Context, id uint) error {
	op := fmt.Sprintf("delete user %d", id)
	res := db.gorm.WithContext(ctx).Where("id = ?", id).Delete(&User{})
	if res.Error != nil {
		return translate(res.Error, op)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	}
	return nil
}

// UserUpdate names what UpdateUser changes; nil fields are left as stored. Only these columns
// change after creation: a name or a Unix uid stays with its user for good.
type UserUpdate struct {
	Role         *string
	Disabled     *bool
	PasswordHash *string
	// IfPasswordHash, when set, makes the update happen only while the stored password_hash
	// still equals it, so that a change based on a hash read earlier (a sign-in replacing an
	// old bcrypt hash, a password change checked against the current one) cannot overwrite a
	// password set meanwhile.
	IfPasswordHash *string
}

// UpdateUser applies up to the user with that id and sets updated_at from the store's clock.
// It returns an error wrapping ErrNotFound if there is no such user, and ErrConflict if
// up.IfPasswordHash no longer matches (nothing is changed then). An update with no field set
// still sets updated_at.
func (db *DB) UpdateUser(ctx context.Context, id uint, up UserUpdate) error {
	op := fmt.Sprintf("update user %d", id)
	cols := map[string]any{"updated_at": db.now()}
	if up.Role != nil {
		cols["role"] = *up.Role
	}
	if up.Disabled != nil {
		cols["disabled"] = *up.Disabled
	}
	if up.PasswordHash != nil {
		cols["password_hash"] = *up.PasswordHash
	}
	q := db.gorm.WithContext(ctx).Model(&User{}).Where("id = ?", id)
	if up.IfPasswordHash != nil {
		q = q.Where("password_hash = ?", *up.IfPasswordHash)
	}
	res := q.Updates(cols)
	if res.Error != nil {
		return translate(res.Error, op)
	}
	if res.RowsAffected > 0 {
		return nil
	}
	// Nothing matched (MySQL counts matched rows, not changed ones: see clientFoundRows).
	if _, err := db.GetUserByID(ctx, id); err != nil {
		return err
	}
	if up.IfPasswordHash == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: the password was changed meanwhile", ErrConflict, op)
}
