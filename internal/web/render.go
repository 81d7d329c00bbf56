package web

import (
	"net/http"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/web/viewmodel"
	"github.com/ikabud/panel/web/templates/layouts"
	"github.com/ikabud/panel/web/templates/pages"
)

// render writes a templ component as the response.
func render(c echo.Context, status int, t templ.Component) error {
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().WriteHeader(status)
	return t.Render(c.Request().Context(), c.Response())
}

// isHTMX reports whether htmx made the request (it then wants a fragment).
func isHTMX(c echo.Context) bool { return c.Request().Header.Get("HX-Request") == "true" }

// pageFor is the frame every signed-in page shares.
func (s *Server) pageFor(c echo.Context, title, active string) viewmodel.Page {
	sess := sessionOf(c)
	p := sess.Principal
	return viewmodel.Page{
		Title: title, UserName: p.Name, Role: string(p.Role), CSRF: sess.CSRF, Active: active,
		ShowNew: instances.CanManage(p), ShowAudit: instances.CanAudit(p), ShowUsers: instances.CanManage(p),
		Version: s.version,
	}
}

// renderError answers a page request that failed: a message fragment to
// htmx, a page otherwise, a sign-in redirect without a session.
func (s *Server) renderError(c echo.Context, status int, body ErrorBody) {
	msg := body.Error
	for _, f := range body.Fields {
		msg += "; " + f.Field + ": " + f.Rule
	}
	if isHTMX(c) {
		render(c, status, layouts.Flash(msg, true))
		return
	}
	if c.Get(sessionKey) == nil && status == http.StatusUnauthorized && c.Request().Method == http.MethodGet {
		c.Redirect(http.StatusSeeOther, "/login")
		return
	}
	title := http.StatusText(status)
	m := viewmodel.ErrorPage{Page: s.pageFor(c, title, ""), Status: status, Message: msg}
	if c.Get(sessionKey) == nil {
		// No session (a refused sign-in, say): no navigation to offer.
		render(c, status, pages.BareError(m))
		return
	}
	render(c, status, pages.Error(m))
}
