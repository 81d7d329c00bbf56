package web

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/web/viewmodel"
	"github.com/ikabud/panel/web/templates/pages"
)

// authPages are sign-in, sign-out and one's own account.
type authPages struct{ s *Server }

func (h authPages) loginForm(c echo.Context) error {
	if _, ok := h.s.session(c); ok {
		return c.Redirect(http.StatusSeeOther, "/")
	}
	return render(c, http.StatusOK, pages.Login(viewmodel.LoginPage{Next: safeNext(c.QueryParam("next")), Version: h.s.version}))
}

// login has no session to take a CSRF token from: the origin check guards
// it against a cross-site sign-in into someone else's account.
func (h authPages) login(c echo.Context) error {
	if err := h.s.sameOrigin(c.Request(), false); err != nil {
		return err
	}
	name, password := strings.TrimSpace(c.FormValue("username")), c.FormValue("password")
	next := safeNext(c.FormValue("next"))
	client, _ := netip.ParseAddr(c.RealIP())
	sess, err := h.s.accounts.Login(c.Request().Context(), name, password, client)
	if err != nil {
		m := viewmodel.LoginPage{Username: name, Next: next, Version: h.s.version}
		var rl *auth.RateLimitError
		status := http.StatusUnauthorized
		switch {
		case errors.As(err, &rl):
			status = http.StatusTooManyRequests
			c.Response().Header().Set("Retry-After", retryAfter(rl))
			m.Error = "Too many failed sign-ins. Try again in " + retryAfter(rl) + " seconds."
		case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrDisabled):
			// One message for all three: unknown user, wrong password,
			// disabled account.
			m.Error = "Wrong user name or password."
		default:
			return err
		}
		return render(c, status, pages.Login(m))
	}
	h.s.setSessionCookie(c, sess)
	return c.Redirect(http.StatusSeeOther, next)
}

func retryAfter(rl *auth.RateLimitError) string {
	secs := int(rl.RetryAfter.Seconds() + 0.999)
	return itoa(max(secs, 1))
}

// safeNext keeps a post-sign-in redirect on this site: a local absolute
// path, no scheme or host, nothing a browser would strip or reinterpret
// (controls, spaces, backslashes) to turn it into another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x21 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return next
}

func (h authPages) logout(c echo.Context) error {
	sess := sessionOf(c)
	if err := h.s.accounts.Logout(c.Request().Context(), sess.Token); err != nil {
		return err
	}
	if h.s.live != nil {
		h.s.live.CloseSession(sess.ID)
	}
	h.s.clearSessionCookie(c)
	return c.Redirect(http.StatusSeeOther, "/login")
}

func (h authPages) account(c echo.Context) error {
	m := viewmodel.AccountPage{Page: h.s.pageFor(c, "Your account", "account"), Done: c.QueryParam("done") == "1"}
	return render(c, http.StatusOK, pages.Account(m))
}

func (h authPages) changePassword(c echo.Context) error {
	m := viewmodel.AccountPage{Page: h.s.pageFor(c, "Your account", "account"), Errors: map[string]string{}}
	cur, next, again := c.FormValue("current_password"), c.FormValue("new_password"), c.FormValue("confirm_password")
	if next != again {
		m.Errors["confirm_password"] = "does not match the new password"
		return render(c, http.StatusUnprocessableEntity, pages.Account(m))
	}
	err := h.s.accounts.ChangePassword(c.Request().Context(), principal(c), cur, next)
	var inv *auth.InvalidError
	switch {
	case errors.As(err, &inv):
		field := inv.Field
		if field == "password" {
			field = "new_password"
		}
		m.Errors[field] = inv.Rule
		return render(c, http.StatusUnprocessableEntity, pages.Account(m))
	case errors.Is(err, auth.ErrBadCredentials):
		m.Errors["current_password"] = "is not your current password"
		return render(c, http.StatusUnprocessableEntity, pages.Account(m))
	case err != nil:
		return err
	}
	// Every session of this user ended with the change, this one too: sign
	// in again with the new password.
	h.s.clearSessionCookie(c)
	return c.Redirect(http.StatusSeeOther, "/login?changed=1")
}
