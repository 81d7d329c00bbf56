// Package web serves the panel over HTTP: the browser pages (templ + htmx),
// the live websocket (/ws), and the JSON API (/api/v1) that the command
// line, the pages' scripts and hosting integrations use, on the root-only
// Unix socket and on TCP.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
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

// Limits of the HTTP servers: a local user (a tenant's PHP included) must not
// be able to exhaust the root daemon's descriptors or hold its goroutines.
const (
	MaxConns          = 2048
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 120 * time.Second
	// Plain responses must be written within writeTimeout; streams (log
	// follow, websockets) extend their own deadlines.
	writeTimeout = 60 * time.Second
)

// Server is the panel's HTTP side.
type Server struct {
	echo       *echo.Echo
	svc        Instances
	principals Principals
	accounts   Accounts
	live       Live
	log        *slog.Logger
	version    string
	origins    map[string]bool
	publicURL  *url.URL
	trusted    []netip.Prefix
	shots      oneShots
}

// Options configure a Server.
type Options struct {
	Instances  Instances
	Principals Principals
	// Accounts enables the browser pages, sessions and API tokens; without
	// it only the Unix socket's API is served.
	Accounts Accounts
	// Live serves /ws; nil answers 503.
	Live    Live
	Log     *slog.Logger
	Version string
	// PublicURL is the panel's address as browsers see it (behind a proxy:
	// "https://panel.example.com"); its origin is the one websockets and
	// form posts must come from. Empty: "http://" + ListenAddr.
	PublicURL string
	// ListenAddr is the TCP listener's address, for the default origin.
	ListenAddr string
	// TrustedProxies may set X-Forwarded-For and X-Forwarded-Proto; no one
	// else's headers choose the client address or the scheme.
	TrustedProxies []netip.Prefix
	// Warnings are the host's problems the panel found (a database server
	// any tenant can log in to as root), for /healthz; nil: none.
	Warnings func() []string
}

type ctxKey int

const (
	peerUIDKey  ctxKey = 1 // the Unix socket peer's uid (the command line's socket)
	viaProxyKey ctxKey = 2 // the request came through the reverse proxy's socket
)

// New builds the Echo app with every route.
func New(opt Options) (*Server, error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{echo: e, svc: opt.Instances, principals: opt.Principals, accounts: opt.Accounts, live: opt.Live,
		log: opt.Log, version: opt.Version, trusted: opt.TrustedProxies}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.principals == nil && s.accounts != nil {
		s.principals = s.accounts
	}
	if err := s.setOrigins(opt.PublicURL, opt.ListenAddr); err != nil {
		return nil, err
	}
	e.IPExtractor = s.clientIP
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.Recover())
	e.Use(middleware.BodyLimit(MaxBodyBytes))
	e.Use(s.securityHeaders)

	e.GET("/healthz", func(c echo.Context) error {
		var warnings []string
		if opt.Warnings != nil {
			warnings = opt.Warnings()
		}
		return c.JSON(http.StatusOK, map[string]any{"ok": true, "backend": s.svc.BackendName(), "version": opt.Version,
			"web_server": s.svc.WebServer(c.Request().Context()), "warnings": warnings})
	})
	e.GET("/api/v1/openapi.json", serveOpenAPI)
	api := e.Group("/api/v1", s.authenticateAPI)
	(&instanceHandlers{svc: s.svc}).register(api)
	if s.accounts != nil {
		(&accountAPI{acc: s.accounts}).register(api)
		s.registerPages(e)
	}
	return s, nil
}

// setOrigins works out which Origin values count as the panel's own.
func (s *Server) setOrigins(public, listen string) error {
	s.origins = map[string]bool{}
	if public != "" {
		u, err := url.Parse(public)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return fmt.Errorf("--public-url %q: must be an http:// or https:// URL with a host, like https://panel.example.com", public)
		}
		s.publicURL = u
		s.origins[u.Scheme+"://"+strings.ToLower(u.Host)] = true
		return nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err == nil && ip.IsUnspecified() {
		// 0.0.0.0 is no address a browser uses: the page's own host is
		// checked instead (ownOrigin).
		return nil
	}
	s.origins["http://"+strings.ToLower(listen)] = true
	// A loopback listener is reached as localhost too.
	if err == nil && ip.IsLoopback() {
		s.origins["http://localhost:"+port] = true
	}
	return nil
}

// SetLive attaches the websocket hub, which itself needs CheckOrigin; call
// it before serving.
func (s *Server) SetLive(l Live) { s.live = l }

// CheckOrigin reports whether a websocket upgrade comes from the panel's own
// origin (a missing Origin is refused).
func (s *Server) CheckOrigin(r *http.Request) bool { return s.sameOrigin(r, true) == nil }

// Handler is the HTTP handler, for tests.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve serves HTTP on ln until ctx ends. On a Unix socket the peer's uid
// (SO_PEERCRED) identifies the caller. At most MaxConns connections are
// open at once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, func(ctx context.Context, c net.Conn) context.Context {
		if uc, ok := unwrapUnix(c); ok {
			if uid, err := peerUID(uc); err == nil {
				return context.WithValue(ctx, peerUIDKey, uid)
			}
		}
		return ctx
	})
}

// ServeProxy serves HTTP on a Unix socket for a reverse proxy on this host
// (nginx), until ctx ends. Only peers whose uid is in uids are served (the
// web server's user, and root); others are hung up on at once. Requests
// that came through it are browsers' (sessions and tokens, never the
// socket peer's uid), and their X-Forwarded-For and X-Forwarded-Proto are
// believed: no tenant can reach this socket to forge them, as any local
// user can reach a loopback TCP port.
func (s *Server) ServeProxy(ctx context.Context, ln net.Listener, uids ...int) error {
	allowed := map[int]bool{}
	for _, u := range uids {
		allowed[u] = true
	}
	return s.serve(ctx, &peerFilter{Listener: ln, allowed: allowed, log: s.log}, func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, viaProxyKey, true)
	})
}

func (s *Server) serve(ctx context.Context, ln net.Listener, connContext func(context.Context, net.Conn) context.Context) error {
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// Requests inherit ctx, so long streams (log follow) end when
		// the server stops.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: connContext,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(newLimitListener(ln, MaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web: %w", err)
	}
	return nil
}

// peerFilter accepts only Unix connections from allowed uids.
type peerFilter struct {
	net.Listener
	allowed map[int]bool
	log     *slog.Logger
}

func (l *peerFilter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uc, ok := c.(*net.UnixConn)
		if ok {
			if uid, err := peerUID(uc); err == nil && l.allowed[uid] {
				return c, nil
			} else if err == nil {
				l.log.Warn("proxy socket: connection from a uid that is not the web server's refused", "uid", uid)
			}
		}
		c.Close()
	}
}

// unwrapUnix finds the Unix connection under netutil's limiting wrapper.
func unwrapUnix(c net.Conn) (*net.UnixConn, bool) {
	for {
		switch v := c.(type) {
		case *net.UnixConn:
			return v, true
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil, false
		}
	}
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

// statusOf maps an error to its HTTP status and JSON body, in one place.
func statusOf(err error) (int, ErrorBody) {
	status, body := http.StatusInternalServerError, ErrorBody{Error: err.Error()}
	var he *echo.HTTPError
	var fes procmgr.FieldErrors
	var fe *procmgr.FieldError
	var rl *auth.RateLimitError
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
	case errors.As(err, &rl):
		status = http.StatusTooManyRequests
	case errors.Is(err, instances.ErrInvalid), errors.Is(err, auth.ErrInvalid):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, instances.ErrNotFound), errors.Is(err, auth.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, instances.ErrForbidden), errors.Is(err, auth.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, instances.ErrConflict), errors.Is(err, auth.ErrLimit):
		status = http.StatusConflict
	case errors.Is(err, auth.ErrNoSession), errors.Is(err, auth.ErrBadToken), errors.Is(err, auth.ErrBadCredentials):
		status = http.StatusUnauthorized
	}
	return status, body
}

// handleError maps errors to HTTP statuses in one place and logs server
// errors once, here at the edge. The API answers JSON; pages answer a page
// (or, to htmx, a message fragment).
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, body := statusOf(err)
	if status >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "instance", c.Param("id"), "err", err)
		// The cause (a database or host error) is for admins; others get
		// a plain message, and the whole error is in the panel's log.
		if p, ok := c.Get(principalKey).(auth.Principal); ok && p.Role == auth.RoleAdmin {
			body.Error = "internal error: " + body.Error
		} else {
			body.Error = "internal error; the panel's log has the details"
		}
	}
	if c.Request().Method == http.MethodHead {
		c.NoContent(status)
		return
	}
	path := c.Request().URL.Path
	if s.accounts == nil || strings.HasPrefix(path, "/api/") || path == "/healthz" || path == "/ws" {
		c.JSON(status, body)
		return
	}
	s.renderError(c, status, body)
}

// Routes lists the registered routes, for the OpenAPI check.
func (s *Server) Routes() []*echo.Route { return s.echo.Routes() }

// WatchRevocations closes the live sockets of every user whose sessions
// ended (password or role changed, disabled, signed out), whoever ended
// them, until ctx ends.
func (s *Server) WatchRevocations(ctx context.Context) error {
	if s.accounts == nil || s.live == nil {
		return nil
	}
	for ctx.Err() == nil {
		ch, err := s.accounts.SubscribeRevocations(ctx)
		if err != nil {
			return err
		}
		for uid := range ch {
			s.live.CloseUser(uid)
		}
		// Closed: ctx ended, or this subscriber fell behind and lost some;
		// the sockets of those users end at their next session check
		// (every ping period).
		if ctx.Err() == nil {
			s.log.Warn("revocation feed overflowed; live sockets of changed users end at their next session check")
		}
	}
	return nil
}
