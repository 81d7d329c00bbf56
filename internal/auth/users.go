package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ikabud/panel/internal/store"
)

// UserView is a user as the API shows it: never the password hash.
type UserView struct {
	ID        uint      `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Disabled  bool      `json:"disabled"`
	UnixUID   *int      `json:"unix_uid,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func userViewOf(u *store.User) UserView {
	return UserView{ID: u.ID, Name: u.Name, Role: Role(u.Role), Disabled: u.Disabled, UnixUID: u.UnixUID, CreatedAt: u.CreatedAt}
}

// mustAdmin refuses anyone but an admin with ErrForbidden.
func mustAdmin(p Principal, what string) error {
	if !p.CanChange() {
		return fmt.Errorf("%w: only admins %s", ErrForbidden, what)
	}
	return nil
}

// userByID reads a user, mapping a missing row to ErrNotFound.
func (s *Service) userByID(ctx context.Context, id uint) (*store.User, error) {
	u, err := s.db.GetUserByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: user %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return u, nil
}

// endSessions ends every session of the user and publishes the user on the revocation feed
// (also when there were none: a websocket may still be open). It returns how many ended.
func (s *Service) endSessions(ctx context.Context, userID uint) (int64, error) {
	n, err := s.db.DeleteUserSessions(ctx, userID)
	s.feed.publish(userID)
	if err != nil {
		return 0, fmt.Errorf("auth: end sessions of user %d: %w", userID, err)
	}
	return n, nil
}

// Users lists every user by name, for admins and support staff (who read everything);
// customers get ErrForbidden.
func (s *Service) Users(ctx context.Context, p Principal) ([]UserView, error) {
	if p.Role != RoleAdmin && p.Role != RoleSupport {
		return nil, fmt.Errorf("%w: only admins and support staff list users", ErrForbidden)
	}
	users, err := s.db.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	out := make([]UserView, 0, len(users))
	for i := range users {
		out = append(out, userViewOf(&users[i]))
	}
	return out, nil
}

// CreateUser creates a user who signs in with a password (admins only). Values are checked as
// AddUser checks them (*InvalidError naming "name", "role" or "password"); a taken name is an
// error wrapping store.ErrConflict.
func (s *Service) CreateUser(ctx context.Context, p Principal, name string, role Role, password string) (v UserView, err error) {
	detail := fmt.Sprintf("user %q role %q", name, role)
	defer func() { s.audit(ctx, p, actionUserCreate, detail, err) }()
	if err := mustAdmin(p, "create users"); err != nil {
		return UserView{}, err
	}
	if password == "" {
		return UserView{}, invalid("password", "is required")
	}
	u, err := s.AddUser(ctx, name, role, password, nil)
	if err != nil {
		return UserView{}, err
	}
	detail = fmt.Sprintf("user %q (id %d) role %s", u.Name, u.ID, role)
	return userViewOf(u), nil
}

// SetRole gives the user a role (admins only) and ends their sessions; their API tokens carry
// the new role from their next use. An admin may not change their own role, so that the panel
// cannot lose its last admin by accident: another admin (or root) must. Setting the role a user
// already has changes nothing and ends nothing.
func (s *Service) SetRole(ctx context.Context, p Principal, userID uint, role Role) (err error) {
	detail := fmt.Sprintf("user %d role %q", userID, role)
	defer func() { s.audit(ctx, p, actionUserRole, detail, err) }()
	if err := mustAdmin(p, "change roles"); err != nil {
		return err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	if p.UserID != 0 && userID == p.UserID && role != RoleAdmin {
		return fmt.Errorf("%w: an admin may not demote themselves; another admin must, so that the panel keeps an admin", ErrForbidden)
	}
	u, err := s.userByID(ctx, userID)
	if err != nil {
		return err
	}
	detail = fmt.Sprintf("user %q (id %d) role %s -> %s", u.Name, u.ID, u.Role, role)
	if Role(u.Role) == role {
		detail += " (unchanged)"
		return nil
	}
	r := string(role)
	if err := s.db.UpdateUser(ctx, userID, store.UserUpdate{Role: &r}); err != nil {
		return fmt.Errorf("auth: set role of %q: %w", u.Name, err)
	}
	n, err := s.endSessions(ctx, userID)
	detail += fmt.Sprintf(", %d sessions ended", n)
	return err
}

// SetDisabled disables or enables the user (admins only). Disabling ends their sessions, and
// their API tokens and Unix uid stop working until they are enabled again. An admin may not
// disable themselves. Asking for the state the user is in changes nothing.
func (s *Service) SetDisabled(ctx context.Context, p Principal, userID uint, disabled bool) (err error) {
	action := actionUserEnable
	if disabled {
		action = actionUserDisable
	}
	detail := fmt.Sprintf("user %d", userID)
	defer func() { s.audit(ctx, p, action, detail, err) }()
	if err := mustAdmin(p, "disable and enable users"); err != nil {
		return err
	}
	if disabled && p.UserID != 0 && userID == p.UserID {
		return fmt.Errorf("%w: an admin may not disable themselves; another admin must, so that the panel keeps an admin", ErrForbidden)
	}
	u, err := s.userByID(ctx, userID)
	if err != nil {
		return err
	}
	detail = fmt.Sprintf("user %q (id %d)", u.Name, u.ID)
	if u.Disabled == disabled {
		detail += " (unchanged)"
		return nil
	}
	if err := s.db.UpdateUser(ctx, userID, store.UserUpdate{Disabled: &disabled}); err != nil {
		return fmt.Errorf("auth: disable %q: %w", u.Name, err)
	}
	if !disabled {
		return nil
	}
	n, err := s.endSessions(ctx, userID)
	detail += fmt.Sprintf(", %d sessions ended", n)
	return err
}

// ChangePassword sets p's own password to next, given the current one, and ends all of p's
// sessions (the caller signs in again). A wrong current password is an *InvalidError for
// "current_password" and counts as a failed sign-in of p's name, so a stolen session cannot be
// used to guess the password faster than the sign-in form allows (past the limit: a
// *RateLimitError, without checking). Root, who has no password, gets ErrForbidden.
func (s *Service) ChangePassword(ctx context.Context, p Principal, current, next string) (err error) {
	detail := "own password"
	defer func() { s.audit(ctx, p, actionPasswordChange, detail, err) }()
	if p.UserID == 0 {
		return fmt.Errorf("%w: %s has no panel password", ErrForbidden, p.Name)
	}
	if err := validatePassword("password", next); err != nil {
		return err
	}
	now, acct := s.now(), accountKey(p.Name)
	if wait := s.limits.take(acct, "", now); wait > 0 {
		return &RateLimitError{RetryAfter: wait}
	}
	u, err := s.userByID(ctx, p.UserID)
	if err != nil {
		s.limits.refund(acct, "", now)
		return err
	}
	ok := false
	if u.PasswordHash == "" || len(current) > MaxPasswordLen {
		s.burnCompare(current)
	} else if ok, _, err = s.verifyPassword(u.PasswordHash, current); err != nil {
		s.limits.refund(acct, "", now)
		return fmt.Errorf("auth: change password of %q: %w", u.Name, err)
	}
	if !ok {
		return invalid("current_password", "is not your current password")
	}
	s.limits.succeeded(acct, "", now)
	return s.setPassword(ctx, u, next, &detail)
}

// ResetPassword sets the user's password to next (admins only) and ends their sessions.
func (s *Service) ResetPassword(ctx context.Context, p Principal, userID uint, next string) (err error) {
	detail := fmt.Sprintf("user %d", userID)
	defer func() { s.audit(ctx, p, actionPasswordReset, detail, err) }()
	if err := mustAdmin(p, "reset passwords"); err != nil {
		return err
	}
	if err := validatePassword("password", next); err != nil {
		return err
	}
	u, err := s.userByID(ctx, userID)
	if err != nil {
		return err
	}
	detail = fmt.Sprintf("user %q (id %d)", u.Name, u.ID)
	return s.setPassword(ctx, u, next, &detail)
}

// setPassword stores a new hash for u, unless the stored one changed since u was read, and
// ends u's sessions.
func (s *Service) setPassword(ctx context.Context, u *store.User, next string, detail *string) error {
	hash, err := s.hashPassword(next)
	if err != nil {
		return fmt.Errorf("auth: set password of %q: %w", u.Name, err)
	}
	err = s.db.UpdateUser(ctx, u.ID, store.UserUpdate{PasswordHash: &hash, IfPasswordHash: &u.PasswordHash})
	if err != nil {
		return fmt.Errorf("auth: set password of %q: %w", u.Name, err)
	}
	n, err := s.endSessions(ctx, u.ID)
	*detail += fmt.Sprintf(", %d sessions ended", n)
	return err
}
