package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// ErrLimit: the row would take its owner past a limit, such as the number of API tokens a user
// may hold.
var ErrLimit = errors.New("store: limit reached")

// CreateAPIToken inserts t unless its user already holds maxPerUser tokens (then it returns an
// error wrapping ErrLimit), and sets t.ID. A zero CreatedAt is set from the store's clock. It
// returns an error wrapping ErrInvalid if t.UserID names no user, and ErrConflict if the hash
// exists.
//
// The count and the insert run in one transaction that first locks the user's row (SQLite:
// the whole database, BEGIN IMMEDIATE), so concurrent creations cannot pass the limit together.
func (db *DB) CreateAPIToken(ctx context.Context, t *APIToken, maxPerUser int) error {
	op := fmt.Sprintf("create API token %q for user %d", t.Name, t.UserID)
	if t.CreatedAt.IsZero() {
		t.CreatedAt = db.now()
	}
	t.CreatedAt = normTime(t.CreatedAt)
	if t.LastUsedAt != nil {
		t.LastUsedAt = new(normTime(*t.LastUsedAt))
	}
	if t.ExpiresAt != nil {
		t.ExpiresAt = new(normTime(*t.ExpiresAt))
	}
	err := db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		lock := tx.Model(&User{}).Select("id").Where("id = ?", t.UserID)
		if db.dialect == DialectMySQL {
			lock = lock.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
		}
		var u User
		if err := lock.Take(&u).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return fmt.Errorf("%w: %s: there is no such user", ErrInvalid, op)
			}
			return err
		}
		var n int64
		if err := tx.Model(&APIToken{}).Where("user_id = ?", t.UserID).Count(&n).Error; err != nil {
			return err
		}
		if n >= int64(maxPerUser) {
			return fmt.Errorf("%w: %s: the user already holds %d tokens, the most allowed", ErrLimit, op, n)
		}
		return tx.Create(t).Error
	})
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrLimit) {
		return err
	}
	return translate(err, op)
}

// GetAPIToken returns the token with that id, or an error wrapping ErrNotFound.
func (db *DB) GetAPIToken(ctx context.Context, id uint) (*APIToken, error) {
	return db.getAPIToken(ctx, fmt.Sprintf("get API token %d", id), "id = ?", id)
}

// GetAPITokenByHash returns the token whose token_hash is hash, or an error wrapping ErrNotFound.
// The hash is not repeated in errors.
func (db *DB) GetAPITokenByHash(ctx context.Context, hash string) (*APIToken, error) {
	return db.getAPIToken(ctx, "get API token by hash", "token_hash = ?", hash)
}

func (db *DB) getAPIToken(ctx context.Context, op, where string, arg any) (*APIToken, error) {
	var t APIToken
	if err := db.gorm.WithContext(ctx).Where(where, arg).Take(&t).Error; err != nil {
		return nil, translate(err, op)
	}
	return &t, nil
}

// ListAPITokens returns every user's tokens, ordered by id.
func (db *DB) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	out := []APIToken{}
	if err := db.gorm.WithContext(ctx).Order("id").Find(&out).Error; err != nil {
		return nil, translate(err, "list API tokens")
	}
	return out, nil
}

// ListUserAPITokens returns the user's tokens, ordered by id; none for an unknown user.
func (db *DB) ListUserAPITokens(ctx context.Context, userID uint) ([]APIToken, error) {
	out := []APIToken{}
	if err := db.gorm.WithContext(ctx).Where("user_id = ?", userID).Order("id").Find(&out).Error; err != nil {
		return nil, translate(err, fmt.Sprintf("list API tokens of user %d", userID))
	}
	return out, nil
}

// TouchAPIToken records that the token was used at lastUsed. It returns an error wrapping
// ErrNotFound if there is no such token (it was revoked meanwhile).
func (db *DB) TouchAPIToken(ctx context.Context, id uint, lastUsed time.Time) error {
	op := fmt.Sprintf("touch API token %d", id)
	res := db.gorm.WithContext(ctx).Model(&APIToken{}).Where("id = ?", id).Update("last_used_at", normTime(lastUsed))
	if res.Error != nil {
		return translate(res.Error, op)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	}
	return nil
}

// DeleteAPIToken deletes the token. It returns an error wrapping ErrNotFound if there is no such
// token.
func (db *DB) DeleteAPIToken(ctx context.Context, id uint) error {
	op := fmt.Sprintf("delete API token %d", id)
	res := db.gorm.WithContext(ctx).Where("id = ?", id).Delete(&APIToken{})
	if res.Error != nil {
		return translate(res.Error, op)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	}
	return nil
}
