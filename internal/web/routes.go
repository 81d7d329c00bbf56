package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/web/live"
	"github.com/ikabud/panel/web/static"
)

// registerPages adds the browser's routes. Every route but /login and the
// static files needs a session; every POST also the origin and CSRF checks
// (requireSession). A GET never changes anything.
func (s *Server) registerPages(e *echo.Echo) {
	e.GET("/static/*", echo.WrapHandler(http.StripPrefix("/static/", staticHandler())))

	a := authPages{s}
	e.GET("/login", a.loginForm)
	e.POST("/login", a.login)

	g := e.Group("", s.requireSession)
	g.POST("/logout", a.logout)
	g.GET("/account", a.account)
	g.POST("/account/password", a.changePassword)

	ip := instancePages{s}
	g.GET("/", ip.dashboard)
	g.GET("/instances/new", ip.newForm)
	g.POST("/instances", ip.create)
	g.GET("/instances/:id", ip.show)
	g.GET("/instances/:id/edit", ip.editForm)
	g.POST("/instances/:id/edit", ip.edit)
	g.GET("/instances/:id/remove", ip.removeForm)
	g.POST("/instances/:id/remove", ip.remove)
	for _, action := range []string{"start", "stop", "restart", "reload"} {
		g.POST("/instances/:id/"+action, ip.power(action))
	}
	g.POST("/instances/:id/kill", ip.kill)

	ad := adminPages{s}
	g.GET("/audit", ad.audit)
	g.GET("/tokens", ad.tokens)
	g.POST("/tokens", ad.createToken)
	g.POST("/tokens/:tid/revoke", ad.revokeToken)
	g.GET("/users", ad.users)
	g.POST("/users", ad.createUser)
	g.POST("/users/:uid/role", ad.setRole)
	g.POST("/users/:uid/disable", ad.setDisabled)
	g.POST("/users/:uid/password", ad.resetPassword)

	e.GET("/ws", s.websocket)
}

// staticHandler serves the embedded files; the vendored ones carry their
// version in their names and may be cached for good.
func staticHandler() http.Handler {
	fs := http.FileServerFS(static.Files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || strings.HasSuffix(r.URL.Path, ".go") {
			http.NotFound(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "vendor/") {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		fs.ServeHTTP(w, r)
	})
}

// websocket upgrades /ws after checking, before any upgrade: the Origin
// (required, and the panel's own), the session, and that the viewer may see
// the instance asked for (404 otherwise, as every other route).
func (s *Server) websocket(c echo.Context) error {
	if s.live == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "live updates are not running")
	}
	r := c.Request()
	if err := s.sameOrigin(r, true); err != nil {
		return err
	}
	sess, ok := s.session(c)
	if !ok {
		return echo.NewHTTPError(http.StatusUnauthorized, "not signed in")
	}
	c.Set(sessionKey, sess)
	id := c.QueryParam("instance")
	if id != "" {
		if _, err := s.svc.Get(r.Context(), sess.Principal, id); err != nil {
			return err
		}
	}
	var resume live.Resume
	if ep := c.QueryParam("epoch"); ep != "" {
		after, err := strconv.ParseUint(c.QueryParam("after"), 10, 64)
		if err == nil {
			resume = live.Resume{Epoch: ep, After: after}
		}
	}
	err := s.live.Serve(c.Response(), r, live.Viewer{Principal: sess.Principal, SessionID: sess.ID}, id, resume)
	switch {
	case errors.Is(err, live.ErrTooMany):
		return echo.NewHTTPError(http.StatusTooManyRequests, "too many open live connections for this user; close some tabs")
	case errors.Is(err, live.ErrClosed):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the panel is restarting; try again in a moment")
	}
	if err != nil && !c.Response().Committed {
		return err
	}
	return nil
}
