package store

import (
	"context"
	"fmt"
	"time"
)

// Session ids are hashes of the session tokens, made by package auth. They appear in error
// messages only shortened, so that a log never holds a whole id (an id is not the token, but it
// is the key that finds the session).
const sessionIDShown = 8

func shortID(id string) string {
	if len(id) > sessionIDShown {
		return id[:sessionIDShown] + "…"
	}
	return id
}

// CreateSession inserts s. Its times are stored in UTC; a zero CreatedAt or LastSeenAt is set
// from the store's clock. It returns an error wrapping ErrInvalid if s.UserID names no user, and
// ErrConflict if the id exists.
func (db *DB) CreateSession(ctx context.Context, s *Session) error {
	now := db.now()
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	if s.LastSeenAt.IsZero() {
		s.LastSeenAt = s.CreatedAt
	}
	s.CreatedAt, s.ExpiresAt, s.LastSeenAt = normTime(s.CreatedAt), normTime(s.ExpiresAt), normTime(s.LastSeenAt)
	err := db.gorm.WithContext(ctx).Create(s).Error
	return translate(err, fmt.Sprintf("create session %s for user %d", shortID(s.ID), s.UserID))
}

// GetSession returns the session with that id, expired or not, or an error wrapping ErrNotFound.
func (db *DB) GetSession(ctx context.Context, id string) (*Session, error) {
	var s Session
	if err := db.gorm.WithContext(ctx).Where("id = ?", id).Take(&s).Error; err != nil {
		return nil, translate(err, fmt.Sprintf("get session %s", shortID(id)))
	}
	return &s, nil
}

// TouchSession records that the session was used at lastSeen. It returns an error wrapping
// ErrNotFound if there is no such session (it ended meanwhile).
func (db *DB) TouchSession(ctx context.Context, id string, lastSeen time.Time) error {
	op := fmt.Sprintf("touch session %s", shortID(id))
	res := db.gorm.WithContext(ctx).Model(&Session{}).Where("id = ?", id).Update("last_seen_at", normTime(lastSeen))
	if res.Error != nil {
		return translate(res.Error, op)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	}
	return nil
}

// DeleteSession deletes the session. It returns an error wrapping ErrNotFound if there is no
// such session.
func (db *DB) DeleteSession(ctx context.Context, id string) error {
	op := fmt.Sprintf("delete session %s", shortID(id))
	res := db.gorm.WithContext(ctx).Where("id = ?", id).Delete(&Session{})
	if res.Error != nil {
		return translate(res.Error, op)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	}
	return nil
}

// DeleteUserSessions deletes every session of the user and returns how many there were. A user
// without sessions (or without a row) is not an error: the count is 0.
func (db *DB) DeleteUserSessions(ctx context.Context, userID uint) (int64, error) {
	res := db.gorm.WithContext(ctx).Where("user_id = ?", userID).Delete(&Session{})
	if res.Error != nil {
		return 0, translate(res.Error, fmt.Sprintf("delete sessions of user %d", userID))
	}
	return res.RowsAffected, nil
}

// DeleteExpiredSessions deletes the sessions whose absolute end is at or before now, and those
// last seen at or before idleBefore (now minus the idle timeout, which package auth owns). It
// returns how many it deleted.
func (db *DB) DeleteExpiredSessions(ctx context.Context, now, idleBefore time.Time) (int64, error) {
	res := db.gorm.WithContext(ctx).Where("expires_at <= ? OR last_seen_at <= ?", normTime(now), normTime(idleBefore)).
		Delete(&Session{})
	if res.Error != nil {
		return 0, translate(res.Error, "delete expired sessions")
	}
	return res.RowsAffected, nil
}
