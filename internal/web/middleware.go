package web

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/auth"
)

// The session cookie. HttpOnly (no script reads it), SameSite=Lax (not sent
// on cross-site posts), Secure when the panel is reached over TLS.
// Over TLS it carries the __Host- prefix, so that a site on a sibling domain
// (a tenant's, say) cannot plant one the browser would send ahead of ours.
const sessionCookie = "ikabud_session"

func (s *Server) cookieName(r *http.Request) string {
	if s.secure(r) {
		return "__Host-" + sessionCookie
	}
	return sessionCookie
}

const sessionKey = "session"

// csp allows our own files only: no inline script or style, no eval, no
// framing. 'self' covers the same-origin websocket.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(c.Request().URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

// clientIP is the connection's address; a trusted proxy's X-Forwarded-For
// is believed only for the hops it appended, walking right to left, so a
// header the client sent itself never chooses the address.
func (s *Server) clientIP(r *http.Request) string {
	if viaProxy(r) {
		// The proxy appended the address it saw as the last hop.
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		if a, err := netip.ParseAddr(strings.TrimSpace(hops[len(hops)-1])); err == nil {
			return a.Unmap().String()
		}
		return "0.0.0.0" // a proxy that says nothing: one shared bucket
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !s.isTrusted(addr) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr.String()
		}
		addr = a.Unmap()
		if !s.isTrusted(addr) {
			break
		}
	}
	return addr.String()
}

func viaProxy(r *http.Request) bool {
	v, _ := r.Context().Value(viaProxyKey).(bool)
	return v
}

func (s *Server) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// secure reports whether the browser reached the panel over TLS: directly,
// through a trusted proxy that says so, or by the public URL.
func (s *Server) secure(r *http.Request) bool {
	if r.TLS != nil || (s.publicURL != nil && s.publicURL.Scheme == "https") {
		return true
	}
	if viaProxy(r) {
		return strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if a, err := netip.ParseAddr(host); err == nil && s.isTrusted(a) {
			return strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
		}
	}
	return false
}

// sameOrigin checks where a state-changing request (or a websocket upgrade)
// comes from. A cross-site Sec-Fetch-Site or a foreign Origin refuses it
// outright; requireOrigin also refuses a request without any Origin (the
// websocket, which browsers always send one for).
func (s *Server) sameOrigin(r *http.Request, requireOrigin bool) error {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return echo.NewHTTPError(http.StatusForbidden, "cross-site request refused (Sec-Fetch-Site: "+r.Header.Get("Sec-Fetch-Site")+")")
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		if requireOrigin {
			return echo.NewHTTPError(http.StatusForbidden, "request without an Origin header refused")
		}
		return nil
	}
	if !s.ownOrigin(origin, r) {
		return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("cross-origin request refused: Origin %q is not this panel's (set --public-url when the panel is behind a proxy)", origin))
	}
	return nil
}

func (s *Server) ownOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	key := strings.ToLower(u.Scheme + "://" + u.Host)
	if s.origins[key] {
		return true
	}
	// With no public URL and a wildcard listener (":8080"), the page's own
	// host is the only reference there is.
	if s.publicURL == nil && len(s.origins) == 0 {
		scheme := "http"
		if s.secure(r) {
			scheme = "https"
		}
		return key == strings.ToLower(scheme+"://"+r.Host)
	}
	return false
}

// csrfOK checks a session request's CSRF token (form field _csrf or header
// X-CSRF-Token) after its origin.
func (s *Server) csrfOK(c echo.Context, sess auth.Session) error {
	if err := s.sameOrigin(c.Request(), false); err != nil {
		return err
	}
	given := c.Request().Header.Get("X-CSRF-Token")
	if given == "" {
		given = c.FormValue("_csrf")
	}
	if !auth.CheckCSRF(sess, given) {
		return echo.NewHTTPError(http.StatusForbidden, "missing or wrong CSRF token: reload the page and try again")
	}
	return nil
}

func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// session reads the request's session cookie; ok is false without a valid one.
func (s *Server) session(c echo.Context) (auth.Session, bool) {
	ck, err := c.Cookie(s.cookieName(c.Request()))
	if err != nil || ck.Value == "" {
		return auth.Session{}, false
	}
	sess, err := s.accounts.SessionPrincipal(c.Request().Context(), ck.Value)
	if err != nil {
		if !errors.Is(err, auth.ErrNoSession) {
			s.log.Warn("session lookup failed", "err", err)
		}
		return auth.Session{}, false
	}
	return sess, true
}

func (s *Server) setSessionCookie(c echo.Context, sess auth.Session) {
	c.SetCookie(&http.Cookie{Name: s.cookieName(c.Request()), Value: sess.Token, Path: "/", Expires: sess.ExpiresAt,
		HttpOnly: true, Secure: s.secure(c.Request()), SameSite: http.SameSiteLaxMode})
}

func (s *Server) clearSessionCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{Name: s.cookieName(c.Request()), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure(c.Request()), SameSite: http.SameSiteLaxMode})
}

// requireSession guards the pages: without a session a GET goes to the
// sign-in page and anything else is refused; state-changing requests must
// pass the origin and CSRF checks.
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, ok := s.session(c)
		if !ok {
			if c.Request().Method == http.MethodGet {
				return c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
			}
			return echo.NewHTTPError(http.StatusUnauthorized, "not signed in")
		}
		if err := s.admit(c, sess); err != nil {
			return err
		}
		return next(c)
	}
}

// admit lets a session's request through: a state-changing one only with
// the origin and CSRF checks passed.
func (s *Server) admit(c echo.Context, sess auth.Session) error {
	if unsafeMethod(c.Request().Method) {
		if err := s.csrfOK(c, sess); err != nil {
			return err
		}
	}
	c.Set(sessionKey, sess)
	c.Set(principalKey, sess.Principal)
	return nil
}

func sessionOf(c echo.Context) auth.Session {
	sess, _ := c.Get(sessionKey).(auth.Session)
	return sess
}

// authenticateAPI resolves the API's caller: the peer's uid over the Unix
// socket; over TCP a bearer token (no CSRF: nothing ambient to forge) or a
// browser session (with the origin and CSRF checks of the pages).
func (s *Server) authenticateAPI(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		if uid, ok := ctx.Value(peerUIDKey).(int); ok {
			p, err := s.principals.PrincipalForUID(ctx, uid)
			if errors.Is(err, auth.ErrUnknownUID) || errors.Is(err, auth.ErrDisabled) {
				return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("uid %d is not an enabled panel user", uid))
			}
			if err != nil {
				return fmt.Errorf("web: who is uid %d: %w", uid, err)
			}
			c.Set(principalKey, p)
			return next(c)
		}
		if s.accounts == nil {
			return echo.NewHTTPError(http.StatusUnauthorized, "the API is served over the panel's Unix socket only")
		}
		if h := c.Request().Header.Get("Authorization"); h != "" {
			token, ok := strings.CutPrefix(h, "Bearer ")
			if !ok {
				return echo.NewHTTPError(http.StatusUnauthorized, "Authorization must be: Bearer <token>")
			}
			p, err := s.accounts.TokenPrincipal(ctx, strings.TrimSpace(token))
			if err != nil {
				if errors.Is(err, auth.ErrBadToken) {
					return echo.NewHTTPError(http.StatusUnauthorized, "unknown, revoked or expired API token")
				}
				return err
			}
			c.Set(principalKey, p)
			return next(c)
		}
		sess, ok := s.session(c)
		if !ok {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="ikabud"`)
			return echo.NewHTTPError(http.StatusUnauthorized, "sign in, or send an API token: Authorization: Bearer <token>")
		}
		if err := s.admit(c, sess); err != nil {
			return err
		}
		return next(c)
	}
}
