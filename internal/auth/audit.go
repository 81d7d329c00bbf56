package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ikabud/panel/internal/store"
)

// Audit actions of this package.
const (
	actionLogin          = "login"
	actionLogout         = "logout"
	actionUserCreate     = "user-create"
	actionUserRole       = "user-role"
	actionUserDisable    = "user-disable"
	actionUserEnable     = "user-enable"
	actionPasswordChange = "password-change"
	actionPasswordReset  = "password-reset"
	actionTokenCreate    = "token-create"
	actionTokenRevoke    = "token-revoke"
)

// Audit results.
const (
	resultOK      = "ok"
	resultError   = "error"
	resultRefused = "refused"
)

// auditTimeout bounds the write of one audit record. It runs detached from the request's
// context, so a client that goes away does not erase the record of what it did.
const auditTimeout = 10 * time.Second

// resultOf maps an action's error to an audit result: refusals of who is asking (permission,
// credentials, rate limit, disabled user) are "refused", anything else "error".
func resultOf(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrBadCredentials), errors.Is(err, ErrRateLimited),
		errors.Is(err, ErrDisabled):
		return resultRefused
	default:
		return resultError
	}
}

// audit records an action by p about no instance. detail says what was acted on; with an error
// its message is appended. Neither ever holds a password or token: the errors of this package
// do not quote them.
func (s *Service) audit(ctx context.Context, p Principal, action, detail string, err error) {
	if err != nil {
		detail = fmt.Sprintf("%s: %v", detail, err)
	}
	s.record(ctx, p.Name, p.actorID(), action, resultOf(err), detail)
}

// record writes one audit record and logs it. A failure to record is logged, not returned: the
// action itself already happened (or was refused).
func (s *Service) record(ctx context.Context, actor string, actorID *uint, action, result, detail string) {
	ev := &store.AuditEvent{At: s.now(), Actor: actor, ActorID: actorID, Action: action, Result: result, Detail: detail}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := s.db.AddAudit(actx, ev); err != nil {
		s.log.ErrorContext(ctx, "audit record lost", "action", action, "actor", actor, "err", err)
	}
	lvl := slog.LevelInfo
	if result != resultOK {
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "account action", "action", action, "actor", actor, "result", result, "detail", detail)
}

// auditName returns the actor to record for a tried sign-in name, and what to add to the
// detail: a valid name is recorded as it is; anything else as "?" with only its length. It may
// be a password typed into the wrong field, and support staff read the audit log.
func auditName(name string) (actor, detail string) {
	if ValidateUserName(name) == nil {
		return name, ""
	}
	return "?", fmt.Sprintf("an invalid name of %d bytes, ", len(name))
}
