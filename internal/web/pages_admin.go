package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/web/viewmodel"
	"github.com/ikabud/panel/web/templates/pages"
)

// adminPages are the audit log, users and API tokens.
type adminPages struct{ s *Server }

func (h adminPages) audit(c echo.Context) error {
	p := principal(c)
	if !instances.CanAudit(p) {
		return echo.NewHTTPError(http.StatusForbidden, "the audit log is for admins and support staff")
	}
	m := viewmodel.AuditPage{Page: h.s.pageFor(c, "Audit log", "audit"), User: c.QueryParam("user"), Instance: c.QueryParam("instance"),
		Action: c.QueryParam("action"), Since: c.QueryParam("since"), Until: c.QueryParam("until")}
	q, err := auditQuery(c)
	if err != nil {
		m.Error = err.Error()
		return render(c, http.StatusUnprocessableEntity, pages.Audit(m))
	}
	q.Limit = 100
	evs, err := h.s.svc.Audit(c.Request().Context(), p, q)
	if err != nil {
		if errors.Is(err, instances.ErrNotFound) || errors.Is(err, instances.ErrInvalid) {
			m.Error = "No instance " + strconv.Quote(q.Instance) + "; its records may remain: search by action or user."
			evs = nil
		} else {
			return err
		}
	}
	m.Rows = auditRows(evs)
	if len(evs) == q.Limit {
		m.NextBefore = evs[len(evs)-1].ID
	}
	return render(c, http.StatusOK, pages.Audit(m))
}

func (h adminPages) tokensPage(c echo.Context, status int, m viewmodel.TokensPage) error {
	p := principal(c)
	m.Page = h.s.pageFor(c, "API tokens", "tokens")
	m.ForUser = instances.CanManage(p)
	m.UserName = p.Name
	toks, err := h.s.accounts.Tokens(c.Request().Context(), p, "")
	if err != nil {
		return err
	}
	for _, t := range toks {
		r := viewmodel.TokenRow{ID: t.ID, User: t.User, Name: t.Name, Prefix: t.Prefix, Created: viewmodel.FormatTime(t.CreatedAt), LastUsed: "never"}
		if t.LastUsedAt != nil {
			r.LastUsed = viewmodel.FormatTime(*t.LastUsedAt)
		}
		m.Tokens = append(m.Tokens, r)
	}
	return render(c, status, pages.Tokens(m))
}

func (h adminPages) tokens(c echo.Context) error {
	var m viewmodel.TokensPage
	if v, ok := h.s.shots.take(principal(c), c.QueryParam("shown")); ok {
		m.NewToken, m.NewName = v["token"], v["name"]
	}
	return h.tokensPage(c, http.StatusOK, m)
}

func (h adminPages) createToken(c echo.Context) error {
	name := strings.TrimSpace(c.FormValue("name"))
	if name == "" {
		name = "token"
	}
	v, token, err := h.s.accounts.CreateToken(c.Request().Context(), principal(c), strings.TrimSpace(c.FormValue("user")), name)
	if err != nil {
		var inv *auth.InvalidError
		if errors.As(err, &inv) || errors.Is(err, auth.ErrNotFound) || errors.Is(err, auth.ErrLimit) || errors.Is(err, auth.ErrForbidden) {
			status, _ := statusOf(err)
			return h.tokensPage(c, status, viewmodel.TokensPage{Error: err.Error()})
		}
		return err
	}
	key := h.s.shots.put(principal(c), map[string]string{"token": token, "name": v.Name})
	return c.Redirect(http.StatusSeeOther, "/tokens?shown="+key)
}

func (h adminPages) revokeToken(c echo.Context) error {
	id, err := strconv.ParseUint(c.Param("tid"), 10, 32)
	if err != nil {
		return echo.NewHTTPError(http.StatusNotFound, "no such token")
	}
	if err := h.s.accounts.RevokeToken(c.Request().Context(), principal(c), uint(id)); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/tokens")
}

func (h adminPages) usersPage(c echo.Context, status int, m viewmodel.UsersPage) error {
	p := principal(c)
	if !instances.CanManage(p) {
		return echo.NewHTTPError(http.StatusForbidden, "only admins manage users")
	}
	m.Page = h.s.pageFor(c, "Users", "users")
	m.Roles = []string{string(auth.RoleCustomer), string(auth.RoleSupport), string(auth.RoleAdmin)}
	if m.NewRole == "" {
		m.NewRole = string(auth.RoleCustomer)
	}
	users, err := h.s.accounts.Users(c.Request().Context(), p)
	if err != nil {
		return err
	}
	for _, u := range users {
		m.Users = append(m.Users, viewmodel.UserRow{ID: u.ID, Name: u.Name, Role: string(u.Role), Disabled: u.Disabled,
			Created: u.CreatedAt.Local().Format(time.DateOnly), Self: u.ID == p.UserID})
	}
	return render(c, status, pages.Users(m))
}

func (h adminPages) users(c echo.Context) error {
	var m viewmodel.UsersPage
	if v, ok := h.s.shots.take(principal(c), c.QueryParam("shown")); ok {
		m.Generated, m.GenFor = v["password"], v["for"]
	}
	return h.usersPage(c, http.StatusOK, m)
}

// showPassword redirects to the users page, which shows password once.
func (h adminPages) showPassword(c echo.Context, user, password string) error {
	key := h.s.shots.put(principal(c), map[string]string{"password": password, "for": user})
	return c.Redirect(http.StatusSeeOther, "/users?shown="+key)
}

// createUser adds a user with a generated password, shown once.
func (h adminPages) createUser(c echo.Context) error {
	if !instances.CanManage(principal(c)) {
		return echo.NewHTTPError(http.StatusForbidden, "only admins manage users")
	}
	name, role := strings.TrimSpace(c.FormValue("name")), c.FormValue("role")
	password, err := auth.GeneratePassword()
	if err != nil {
		return err
	}
	u, err := h.s.accounts.CreateUser(c.Request().Context(), principal(c), name, auth.Role(role), password)
	if err != nil {
		m := viewmodel.UsersPage{NewName: name, NewRole: role, Errors: map[string]string{}}
		var inv *auth.InvalidError
		switch {
		case errors.As(err, &inv):
			m.Errors[inv.Field] = inv.Rule
			if inv.Field != "name" {
				m.Errors["form"] = inv.Field + ": " + inv.Rule
			}
		case errors.Is(err, instances.ErrConflict) || strings.Contains(err.Error(), "conflict"):
			m.Errors["name"] = "is taken"
		default:
			return err
		}
		return h.usersPage(c, http.StatusUnprocessableEntity, m)
	}
	return h.showPassword(c, u.Name, password)
}

func userID(c echo.Context) (uint, error) {
	id, err := strconv.ParseUint(c.Param("uid"), 10, 32)
	if err != nil {
		return 0, echo.NewHTTPError(http.StatusNotFound, "no such user")
	}
	return uint(id), nil
}

// afterUserChange ends the changed user's live sockets too (their sessions
// ended in the accounts service) and shows the list again.
func (h adminPages) afterUserChange(c echo.Context, id uint, err error) error {
	if err != nil {
		var inv *auth.InvalidError
		if errors.As(err, &inv) || errors.Is(err, auth.ErrForbidden) {
			status, _ := statusOf(err)
			return h.usersPage(c, status, viewmodel.UsersPage{Errors: map[string]string{"form": err.Error()}})
		}
		return err
	}
	if h.s.live != nil {
		h.s.live.CloseUser(id)
	}
	return c.Redirect(http.StatusSeeOther, "/users")
}

func (h adminPages) setRole(c echo.Context) error {
	id, err := userID(c)
	if err != nil {
		return err
	}
	return h.afterUserChange(c, id, h.s.accounts.SetRole(c.Request().Context(), principal(c), id, auth.Role(c.FormValue("role"))))
}

func (h adminPages) setDisabled(c echo.Context) error {
	id, err := userID(c)
	if err != nil {
		return err
	}
	return h.afterUserChange(c, id, h.s.accounts.SetDisabled(c.Request().Context(), principal(c), id, c.FormValue("disabled") == "true"))
}

// resetPassword gives a user a new generated password, shown once.
func (h adminPages) resetPassword(c echo.Context) error {
	id, err := userID(c)
	if err != nil {
		return err
	}
	password, err := auth.GeneratePassword()
	if err != nil {
		return err
	}
	if err := h.s.accounts.ResetPassword(c.Request().Context(), principal(c), id, password); err != nil {
		return h.afterUserChange(c, id, err)
	}
	if h.s.live != nil {
		h.s.live.CloseUser(id)
	}
	name := "user " + strconv.FormatUint(uint64(id), 10)
	if users, err := h.s.accounts.Users(c.Request().Context(), principal(c)); err == nil {
		for _, u := range users {
			if u.ID == id {
				name = u.Name
			}
		}
	}
	return h.showPassword(c, name, password)
}
