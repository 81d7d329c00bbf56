package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/cms"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/live"
	"github.com/ikabud/panel/internal/web/viewmodel"
	"github.com/ikabud/panel/web/templates/layouts"
	"github.com/ikabud/panel/web/templates/pages"
)

// instancePages are the dashboard, the instance page, its forms and its
// action buttons. Each handler is: principal -> service call -> view model
// -> render.
type instancePages struct{ s *Server }

var dashboardStates = []string{"running", "stopped", "starting", "stopping", "reloading", "provisioning", "failed", "crash-looping"}

func (h instancePages) extra(id string) viewmodel.Extra {
	if h.s.live == nil {
		return viewmodel.Extra{CPUPercent: -1}
	}
	return h.s.live.Extra(id)
}

func (h instancePages) row(p auth.Principal, v instances.View) viewmodel.Row {
	return viewmodel.NewRow(v, h.extra(v.ID), viewmodel.PermsFor(p, v), time.Now())
}

func (h instancePages) dashboard(c echo.Context) error {
	p := principal(c)
	views := h.s.svc.List(c.Request().Context(), p)
	m := viewmodel.Dashboard{Page: h.s.pageFor(c, "Instances", "dashboard"), Query: c.QueryParam("q"), State: c.QueryParam("state"),
		States: dashboardStates}
	for _, v := range views {
		m.Rows = append(m.Rows, h.row(p, v))
	}
	m.Counts = viewmodel.CountRows(m.Rows)
	return render(c, http.StatusOK, pages.Dashboard(m))
}

func (h instancePages) show(c echo.Context) error {
	ctx, p := c.Request().Context(), principal(c)
	v, err := h.s.svc.Get(ctx, p, c.Param("id"))
	if err != nil {
		return err
	}
	m := viewmodel.InstancePage{Page: h.s.pageFor(c, v.ID, "dashboard"), Settings: settingsOf(v),
		Signals: []string{"TERM", "KILL", "HUP", "USR1", "USR2", "INT", "QUIT"}, LogLines: 2000, Owner: "nobody"}
	if shot, ok := h.s.shots.take(p, c.QueryParam("shown")); ok {
		m.Installed = &viewmodel.InstalledLogin{CMS: shot["cms"], User: shot["user"], Password: shot["password"], URL: shot["url"]}
	}
	if v.OwnerID != nil && *v.OwnerID == p.UserID {
		m.Owner = p.Name + " (you)"
	} else if v.OwnerID != nil {
		m.Owner = "user " + strconv.FormatUint(uint64(*v.OwnerID), 10)
		if users, err := h.s.accounts.Users(ctx, p); err == nil {
			for _, u := range users {
				if u.ID == *v.OwnerID {
					m.Owner = u.Name
				}
			}
		}
	}
	m.Details = []viewmodel.KV{
		{Label: "Owner", Value: m.Owner},
		{Label: "Unix user", Value: v.User, Mono: true},
		{Label: "Socket", Value: v.Socket, Mono: true},
		{Label: "Backend", Value: v.Status.Backend},
		{Label: "Service state", Value: orDash(strings.Trim(v.Status.ActiveState+" / "+v.Status.SubState, " /"))},
		{Label: "Last exit", Value: lastExit(v.Status.LastExit)},
		{Label: "Created", Value: viewmodel.FormatTime(v.CreatedAt)},
	}
	if v.Status.State == procmgr.StateRunning {
		hl, err := h.s.svc.Health(ctx, p, v.ID)
		switch {
		case err != nil:
			m.HealthError = "Health probe failed: " + err.Error()
		case !hl.Healthy:
			m.HealthError = "Unhealthy: " + hl.Reason
		}
		if err == nil && h.s.live != nil {
			// The live row (built below) and every open page show this
			// same probe; the hub does not make another.
			h.s.live.NoteHealth(v.ID, hl)
		}
		if hl.Pool != nil {
			ps := hl.Pool
			m.Pool = []viewmodel.KV{
				{Label: "Pool", Value: ps.Pool + " (" + ps.ProcessManager + ")"},
				{Label: "Ping", Value: hl.PingLatency.Round(time.Microsecond).String()},
				{Label: "Processes", Value: fmt.Sprintf("%d active, %d idle, %d total", ps.ActiveProcesses, ps.IdleProcesses, ps.TotalProcesses)},
				{Label: "Listen queue", Value: fmt.Sprintf("%d (max %d)", ps.ListenQueue, ps.MaxListenQueue)},
				{Label: "Max children reached", Value: strconv.FormatInt(ps.MaxChildrenReached, 10)},
				{Label: "Accepted connections", Value: strconv.FormatInt(ps.AcceptedConn, 10)},
				{Label: "Pool age", Value: viewmodel.Relative(time.Duration(ps.StartSince) * time.Second)},
			}
		}
	} else {
		m.Pool = []viewmodel.KV{{Label: "Pool", Value: "not running"}}
	}
	m.Row = h.row(p, v)
	hist := []live.Sample{}
	if h.s.live != nil {
		if hs := h.s.live.History(v.ID); hs != nil {
			hist = hs
		}
	}
	b, _ := json.Marshal(hist)
	m.HistoryJSON = string(b)
	if evs, err := h.s.svc.Audit(ctx, p, instances.AuditQuery{Instance: v.ID, Limit: 50}); err == nil {
		m.Audit = auditRows(evs)
	}
	m.HasSite = len(v.Spec.Domains) > 0
	if lines, err := h.s.svc.AccessLog(ctx, p, v.ID, accessLogLines); err == nil {
		m.AccessLog = lines
	}
	return render(c, http.StatusOK, pages.Instance(m))
}

// accessLogLines is how many of the site's last requests its page shows.
const accessLogLines = 20

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func lastExit(e *procmgr.ExitInfo) string {
	if e == nil {
		return "-"
	}
	return e.String()
}

func auditRows(evs []instances.AuditEntry) []viewmodel.AuditRow {
	out := make([]viewmodel.AuditRow, len(evs))
	for i, e := range evs {
		tone := viewmodel.ToneOK
		switch e.Result {
		case instances.ResultError:
			tone = viewmodel.ToneBad
		case instances.ResultRefused:
			tone = viewmodel.ToneBusy
		}
		out[i] = viewmodel.AuditRow{ID: e.ID, At: viewmodel.FormatTime(e.At), AtISO: e.At.UTC().Format(time.RFC3339), Actor: e.Actor,
			Action: e.Action, Instance: e.InstanceID, Result: e.Result, Tone: tone, Detail: e.Detail}
	}
	return out
}

// owners lists the users an admin may give an instance to.
func (h instancePages) owners(c echo.Context) []auth.UserView {
	users, err := h.s.accounts.Users(c.Request().Context(), principal(c))
	if err != nil {
		return nil
	}
	return users
}

// requireManage answers 403 to anyone but an admin on a page only admins use.
func requireManage(c echo.Context) error {
	if !instances.CanManage(principal(c)) {
		return echo.NewHTTPError(http.StatusForbidden, "only admins may create, change or remove instances")
	}
	return nil
}

func (h instancePages) newForm(c echo.Context) error {
	if err := requireManage(c); err != nil {
		return err
	}
	m := instanceForm(h.s.pageFor(c, "New instance", "new"), false, "", "", procmgr.SpecInput{}, cms.Site{}, nil, h.s.svc.InstalledPHP(), h.owners(c))
	return render(c, http.StatusOK, pages.InstanceForm(m))
}

func (h instancePages) create(c echo.Context) error {
	if err := requireManage(c); err != nil {
		return err
	}
	id := strings.TrimSpace(c.FormValue("id"))
	ownerRaw := c.FormValue("owner_id")
	in := readSpecForm(c)
	site := readSiteForm(c)
	refuse := func(errs map[string]string) error {
		m := instanceForm(h.s.pageFor(c, "New instance", "new"), false, id, ownerRaw, in, site, errs, h.s.svc.InstalledPHP(), h.owners(c))
		return render(c, http.StatusUnprocessableEntity, pages.InstanceForm(m))
	}
	owner, err := parseOwner(ownerRaw)
	if err != nil {
		errs, _ := fieldErrors(err)
		return refuse(errs)
	}
	req := instances.CreateRequest{ID: id, OwnerID: owner, Spec: in, Site: site}
	// A CMS whose installer makes an admin login is created while the
	// browser waits (a second or two), so that the login can be shown
	// once; the rest provision in the background, followed live.
	create := h.s.svc.BeginCreate
	if cms.HasInstaller(procmgr.CMS(in.CMS)) {
		create = h.s.svc.Create
	}
	v, err := create(c.Request().Context(), principal(c), req)
	if errs, ok := fieldErrors(err); ok {
		return refuse(errs)
	}
	if errors.Is(err, instances.ErrConflict) {
		return refuse(map[string]string{"id": "is taken, or being created or removed: " + err.Error()})
	}
	if err != nil {
		return err
	}
	if in := v.Installed; in != nil && in.AdminPassword != "" {
		key := h.s.shots.put(principal(c), map[string]string{"cms": v.CMS, "user": in.AdminUser, "password": in.AdminPassword, "url": in.URL})
		return c.Redirect(http.StatusSeeOther, "/instances/"+v.ID+"?shown="+key)
	}
	return c.Redirect(http.StatusSeeOther, "/instances/"+v.ID)
}

func (h instancePages) editForm(c echo.Context) error {
	// Looked up first: someone else's instance is 404 whatever the role.
	v, err := h.s.svc.Get(c.Request().Context(), principal(c), c.Param("id"))
	if err != nil {
		return err
	}
	if err := requireManage(c); err != nil {
		return err
	}
	m := instanceForm(h.s.pageFor(c, "Settings of "+v.ID, "dashboard"), true, v.ID, ownerValue(v.OwnerID), v.Spec, cms.Site{}, nil, h.s.svc.InstalledPHP(), h.owners(c))
	return render(c, http.StatusOK, pages.InstanceForm(m))
}

func (h instancePages) isUser(c echo.Context, id uint) bool {
	for _, u := range h.owners(c) {
		if u.ID == id {
			return true
		}
	}
	return false
}

func ownerValue(o *uint) string {
	if o == nil {
		return ""
	}
	return strconv.FormatUint(uint64(*o), 10)
}

// edit applies settings live (as `panel set`) and the owner.
func (h instancePages) edit(c echo.Context) error {
	ctx, p := c.Request().Context(), principal(c)
	// Looked up first, so another tenant's instance answers 404 whatever
	// the role, and support gets 403 for an instance it may see.
	v, err := h.s.svc.Get(ctx, p, c.Param("id"))
	if err != nil {
		return err
	}
	if err := requireManage(c); err != nil {
		return err
	}
	ownerRaw := c.FormValue("owner_id")
	in := readSpecForm(c)
	refuse := func(errs map[string]string) error {
		m := instanceForm(h.s.pageFor(c, "Settings of "+v.ID, "dashboard"), true, v.ID, ownerRaw, in, cms.Site{}, errs, h.s.svc.InstalledPHP(), h.owners(c))
		return render(c, http.StatusUnprocessableEntity, pages.InstanceForm(m))
	}
	owner, err := parseOwner(ownerRaw)
	if err == nil && owner != nil && !h.isUser(c, *owner) {
		err = &procmgr.FieldError{Field: "owner_id", Value: ownerRaw, Rule: "must be the id of an existing user"}
	}
	if err != nil {
		// Checked before anything is applied: the page says nothing changed.
		errs, _ := fieldErrors(err)
		return refuse(errs)
	}
	// An env or domain list left empty in the form clears it; the API's
	// PATCH keeps it.
	if len(in.Env) == 0 && len(v.Spec.Env) > 0 {
		in.Env = []string{}
	}
	if len(in.Domains) == 0 && len(v.Spec.Domains) > 0 {
		in.Domains = []string{}
	}
	if _, err := h.s.svc.Set(ctx, p, v.ID, in); err != nil {
		if errs, ok := fieldErrors(err); ok {
			return refuse(errs)
		}
		return err
	}
	if ownerValue(owner) != ownerValue(v.OwnerID) {
		if _, err := h.s.svc.SetOwner(ctx, p, v.ID, owner); err != nil {
			if errs, ok := fieldErrors(err); ok {
				return refuse(errs)
			}
			return err
		}
	}
	return c.Redirect(http.StatusSeeOther, "/instances/"+v.ID)
}

func (h instancePages) removeForm(c echo.Context) error {
	v, err := h.s.svc.Get(c.Request().Context(), principal(c), c.Param("id"))
	if err != nil {
		return err
	}
	if err := requireManage(c); err != nil {
		return err
	}
	return render(c, http.StatusOK, pages.Remove(viewmodel.RemovePage{Page: h.s.pageFor(c, "Remove "+v.ID, "dashboard"), ID: v.ID}))
}

func (h instancePages) remove(c echo.Context) error {
	ctx, p := c.Request().Context(), principal(c)
	v, err := h.s.svc.Get(ctx, p, c.Param("id"))
	if err != nil {
		return err
	}
	if c.FormValue("confirm") != v.ID {
		if err := requireManage(c); err != nil {
			return err
		}
		return render(c, http.StatusUnprocessableEntity, pages.Remove(viewmodel.RemovePage{Page: h.s.pageFor(c, "Remove "+v.ID, "dashboard"),
			ID: v.ID, Error: "type the instance's id exactly to confirm"}))
	}
	if err := h.s.svc.Remove(ctx, p, v.ID, c.FormValue("purge") == "true"); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/")
}

// power runs one of start, stop, restart, reload. To htmx it answers a
// message (the row itself changes through the live socket); without script
// it goes back to the instance's page.
func (h instancePages) power(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, p, id := c.Request().Context(), principal(c), c.Param("id")
		var err error
		switch action {
		case "start":
			_, err = h.s.svc.Start(ctx, p, id)
		case "stop":
			_, err = h.s.svc.Stop(ctx, p, id)
		case "restart":
			_, err = h.s.svc.Restart(ctx, p, id)
		case "reload":
			_, err = h.s.svc.Reload(ctx, p, id)
		}
		if err != nil {
			return err
		}
		return h.done(c, id, pastTense[action])
	}
}

var pastTense = map[string]string{"start": "started", "stop": "stopped", "restart": "restarted", "reload": "reloaded"}

func (h instancePages) done(c echo.Context, id, what string) error {
	if isHTMX(c) {
		return render(c, http.StatusOK, layouts.Flash(id+" "+what+".", false))
	}
	return c.Redirect(http.StatusSeeOther, "/instances/"+id)
}

func (h instancePages) kill(c echo.Context) error {
	// The engine validates the signal against its allow-list (422).
	sig := c.FormValue("signal")
	if err := h.s.svc.Kill(c.Request().Context(), principal(c), c.Param("id"), sig); err != nil {
		return err
	}
	return h.done(c, c.Param("id"), "sent SIG"+sig)
}
