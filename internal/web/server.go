// Package web serves the panel over HTTP: the JSON API (/api/v1) that the
// command line, the browser pages and hosting integrations all use, on the
// root-only Unix socket and on TCP.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/sys/unix"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = "64K"

// Principals resolves who is calling; *auth.Service satisfies it.
type Principals interface {
	PrincipalForUID(ctx context.Context, uid int) (auth.Principal, error)
}

// Server is the panel's HTTP side.
type Server struct {
	echo       *echo.Echo
	svc        *instances.Service
	principals Principals
	log        *slog.Logger
}

// Options configure a Server.
type Options struct {
	Instances  *instances.Service
	Principals Principals
	Log        *slog.Logger
	Version    string
}

type ctxKey int

const peerUIDKey ctxKey = 1

// New builds the Echo app with every route.
func New(opt Options) *Server {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{echo: e, svc: opt.Instances, principals: opt.Principals, log: opt.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.Recover())
	e.Use(middleware.BodyLimit(MaxBodyBytes))

	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"ok": true, "backend": s.svc.BackendName(), "version": opt.Version})
	})
	api := e.Group("/api/v1", s.authenticate)
	(&instanceHandlers{svc: s.svc}).register(api)
	return s
}

// Handler is the HTTP handler, for tests.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve serves HTTP on ln until ctx ends. On a Unix socket the peer's uid
// (SO_PEERCRED) identifies the caller.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		// Requests inherit ctx, so long streams (log follow) end when
		// the server stops.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if uc, ok := c.(*net.UnixConn); ok {
				if uid, err := peerUID(uc); err == nil {
					return context.WithValue(ctx, peerUIDKey, uid)
				}
			}
			return ctx
		},
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web: %w", err)
	}
	return nil
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

const principalKey = "principal"

// authenticate resolves the caller. Over the Unix socket the peer's uid
// says who it is; over TCP the API needs a token (they come with the web
// panel), so it refuses for now.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		uid, ok := c.Request().Context().Value(peerUIDKey).(int)
		if !ok {
			return echo.NewHTTPError(http.StatusUnauthorized, "the API is served to local users over the panel's Unix socket; API tokens for TCP are not issued yet")
		}
		p, err := s.principals.PrincipalForUID(c.Request().Context(), uid)
		if errors.Is(err, auth.ErrUnknownUID) {
			return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("uid %d is not a panel user", uid))
		}
		if err != nil {
			return fmt.Errorf("web: who is uid %d: %w", uid, err)
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

func principal(c echo.Context) auth.Principal {
	p, _ := c.Get(principalKey).(auth.Principal)
	return p
}

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error  string       `json:"error"`
	Fields []FieldError `json:"fields,omitempty"`
}

// FieldError names a refused field of a request.
type FieldError struct {
	Field string `json:"field"`
	Value string `json:"value"`
	Rule  string `json:"rule"`
}

// handleError maps errors to HTTP statuses in one place and logs server
// errors once, here at the edge.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, body := http.StatusInternalServerError, ErrorBody{Error: err.Error()}
	var he *echo.HTTPError
	var fes procmgr.FieldErrors
	var fe *procmgr.FieldError
	switch {
	case errors.As(err, &he):
		status = he.Code
		body.Error = fmt.Sprint(he.Message)
	case errors.As(err, &fes):
		status = http.StatusUnprocessableEntity
		for _, f := range fes {
			body.Fields = append(body.Fields, FieldError{f.Field, f.Value, f.Rule})
		}
	case errors.As(err, &fe):
		status = http.StatusUnprocessableEntity
		body.Fields = []FieldError{{fe.Field, fe.Value, fe.Rule}}
	case errors.Is(err, instances.ErrInvalid), errors.Is(err, auth.ErrInvalid):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, instances.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, instances.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, instances.ErrConflict):
		status = http.StatusConflict
	}
	if status >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "instance", c.Param("id"), "err", err)
	}
	if c.Request().Method == http.MethodHead {
		c.NoContent(status)
		return
	}
	c.JSON(status, body)
}
