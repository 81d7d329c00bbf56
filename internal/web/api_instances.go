package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
)

// instanceHandlers are the JSON API's instance routes; each is a thin call
// into the instances service.
type instanceHandlers struct {
	svc     Instances
	follows followSlots
}

// MaxFollowsPerUser bounds the log streams (GET logs?follow=1) one user
// holds open at once: each may take one of the backend's few journal
// readers, which every other tenant's pages share.
const MaxFollowsPerUser = 4

// followSlots counts open log streams per user.
type followSlots struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *followSlots) take(who string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	if f.n[who] >= MaxFollowsPerUser {
		return false
	}
	f.n[who]++
	return true
}

func (f *followSlots) give(who string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[who]--; f.n[who] <= 0 {
		delete(f.n, who)
	}
}

func (h *instanceHandlers) register(g *echo.Group) {
	g.GET("/instances", h.list)
	g.POST("/instances", h.create)
	g.POST("/instances/start-all", h.startAll)
	g.GET("/instances/:id", h.get)
	g.DELETE("/instances/:id", h.remove)
	g.PATCH("/instances/:id", h.set)
	g.POST("/instances/:id/start", h.start)
	g.POST("/instances/:id/stop", h.stop)
	g.POST("/instances/:id/restart", h.restart)
	g.POST("/instances/:id/reload", h.reload)
	g.POST("/instances/:id/kill", h.kill)
	g.GET("/instances/:id/health", h.health)
	g.GET("/instances/:id/logs", h.logs)
	g.GET("/instances/:id/access-log", h.accessLog)
	g.GET("/audit", h.audit)
}

// bind decodes a JSON body strictly: unknown fields are an error, so a typo
// in a field name is not silently ignored.
func bind(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			// The body limit's 413, met while reading.
			return he
		}
		return echo.NewHTTPError(http.StatusBadRequest, "invalid JSON body: "+err.Error())
	}
	return nil
}

func (h *instanceHandlers) list(c echo.Context) error {
	return c.JSON(http.StatusOK, h.svc.List(c.Request().Context(), principal(c)))
}

func (h *instanceHandlers) get(c echo.Context) error {
	v, err := h.svc.Get(c.Request().Context(), principal(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (h *instanceHandlers) create(c echo.Context) error {
	var req instances.CreateRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	v, err := h.svc.Create(c.Request().Context(), principal(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

func (h *instanceHandlers) set(c echo.Context) error {
	var in procmgr.SpecInput
	if err := bind(c, &in); err != nil {
		return err
	}
	v, err := h.svc.Set(c.Request().Context(), principal(c), c.Param("id"), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (h *instanceHandlers) remove(c echo.Context) error {
	purge := c.QueryParam("purge") == "true" || c.QueryParam("purge") == "1"
	if err := h.svc.Remove(c.Request().Context(), principal(c), c.Param("id"), purge); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (h *instanceHandlers) power(c echo.Context, f func() (instances.View, error)) error {
	v, err := f()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (h *instanceHandlers) start(c echo.Context) error {
	return h.power(c, func() (instances.View, error) {
		return h.svc.Start(c.Request().Context(), principal(c), c.Param("id"))
	})
}

func (h *instanceHandlers) stop(c echo.Context) error {
	return h.power(c, func() (instances.View, error) {
		return h.svc.Stop(c.Request().Context(), principal(c), c.Param("id"))
	})
}

func (h *instanceHandlers) restart(c echo.Context) error {
	return h.power(c, func() (instances.View, error) {
		return h.svc.Restart(c.Request().Context(), principal(c), c.Param("id"))
	})
}

func (h *instanceHandlers) reload(c echo.Context) error {
	return h.power(c, func() (instances.View, error) {
		return h.svc.Reload(c.Request().Context(), principal(c), c.Param("id"))
	})
}

// KillRequest is the body of POST /instances/:id/kill.
type KillRequest struct {
	Signal string `json:"signal"`
}

func (h *instanceHandlers) kill(c echo.Context) error {
	req := KillRequest{Signal: "TERM"}
	if c.Request().ContentLength != 0 {
		if err := bind(c, &req); err != nil {
			return err
		}
	}
	if err := h.svc.Kill(c.Request().Context(), principal(c), c.Param("id"), req.Signal); err != nil {
		return err
	}
	return c.NoContent(http.StatusAccepted)
}

func (h *instanceHandlers) startAll(c echo.Context) error {
	res, err := h.svc.StartAll(c.Request().Context(), principal(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (h *instanceHandlers) health(c echo.Context) error {
	hl, err := h.svc.Health(c.Request().Context(), principal(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, hl)
}

// queryInt reads a bounded integer query parameter.
func queryInt(c echo.Context, name string, def, min, max int) (int, error) {
	s := c.QueryParam(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, &procmgr.FieldError{Field: name, Value: s, Rule: "must be a whole number between " + strconv.Itoa(min) + " and " + strconv.Itoa(max)}
	}
	return n, nil
}

// logs returns the last n lines as JSON, or with follow=1 streams them as
// newline-delimited JSON until the client hangs up.
func (h *instanceHandlers) logs(c echo.Context) error {
	n, err := queryInt(c, "n", 50, 1, 10000)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if c.QueryParam("follow") != "1" && c.QueryParam("follow") != "true" {
		lines, err := h.svc.Logs(ctx, principal(c), c.Param("id"), n)
		if err != nil {
			return err
		}
		if lines == nil {
			lines = []procmgr.LogLine{}
		}
		return c.JSON(http.StatusOK, lines)
	}
	p := principal(c)
	who := p.Name + "/" + strconv.FormatUint(uint64(p.UserID), 10)
	if !h.follows.take(who) {
		return echo.NewHTTPError(http.StatusTooManyRequests, fmt.Sprintf("at most %d log streams per user at once", MaxFollowsPerUser))
	}
	defer h.follows.give(who)
	ch, err := h.svc.FollowLogs(ctx, p, c.Param("id"), n)
	if err != nil {
		return err
	}
	res := c.Response()
	// A stream outlives the server's write timeout: each line gets its own.
	rc := http.NewResponseController(res)
	res.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	res.Header().Set("Cache-Control", "no-store")
	res.WriteHeader(http.StatusOK)
	res.Flush()
	enc := json.NewEncoder(res)
	for line := range ch {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := enc.Encode(line); err != nil {
			return nil
		}
		res.Flush()
	}
	return nil
}

// accessLog returns the last n lines of the site's access log.
func (h *instanceHandlers) accessLog(c echo.Context) error {
	n, err := queryInt(c, "n", 50, 1, 10000)
	if err != nil {
		return err
	}
	lines, err := h.svc.AccessLog(c.Request().Context(), principal(c), c.Param("id"), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, lines)
}

func (h *instanceHandlers) audit(c echo.Context) error {
	q, err := auditQuery(c)
	if err != nil {
		return err
	}
	evs, err := h.svc.Audit(c.Request().Context(), principal(c), q)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, evs)
}

// auditQuery reads the audit filters shared by the API and the audit page:
// instance, user, action, since and until (RFC 3339), before (an event id)
// and limit.
func auditQuery(c echo.Context) (instances.AuditQuery, error) {
	q := instances.AuditQuery{Instance: c.QueryParam("instance"), Actor: c.QueryParam("user"), Action: c.QueryParam("action")}
	var err error
	if q.Limit, err = queryInt(c, "limit", 100, 1, 1000); err != nil {
		return q, err
	}
	before, err := queryInt(c, "before", 0, 0, math.MaxInt)
	if err != nil {
		return q, err
	}
	q.BeforeID = uint64(before)
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if v := c.QueryParam(f.name); v != "" {
			t, err := parseTimeParam(v)
			if err != nil {
				return q, &procmgr.FieldError{Field: f.name, Value: v, Rule: "must be a time like 2026-12-02T15:04:05Z or 2026-12-02T15:04 or 2026-12-02"}
			}
			*f.dst = t
		}
	}
	return q, nil
}

// parseTimeParam accepts RFC 3339 and the forms an HTML date or
// datetime-local input sends (taken as UTC).
func parseTimeParam(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("bad time")
}
