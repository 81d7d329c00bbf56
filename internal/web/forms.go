package web

import (
	"errors"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/cms"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/viewmodel"
)

// specField is one setting of the instance form: its API name (also the
// form field's name), label, and how it reads from and into a SpecInput.
// The form, its parsing and the settings list are all driven by this one
// table, so a new spec field is one line here.
type specField struct {
	name, label, help, kind string
	get                     func(*procmgr.SpecInput) *string
	group                   string
}

var specFields = []specField{
	{"cms", "CMS", "", "select", func(s *procmgr.SpecInput) *string { return &s.CMS }, "Site"},
	{"php", "PHP version", "", "select", func(s *procmgr.SpecInput) *string { return &s.PHP }, "Site"},
	{"on_unhealthy", "When unhealthy", "restart: the panel restarts a pool that stops answering; alert: it only reports it", "select", func(s *procmgr.SpecInput) *string { return &s.OnUnhealthy }, "Site"},
	{"pm", "Process manager", "ondemand starts workers when requests come", "select", func(s *procmgr.SpecInput) *string { return &s.PM }, "Pool"},
	{"max_children", "Max children", "1 to 1000 workers", "text", func(s *procmgr.SpecInput) *string { return &s.MaxChildren }, "Pool"},
	{"start_servers", "Start servers", "dynamic pools", "text", func(s *procmgr.SpecInput) *string { return &s.StartServers }, "Pool"},
	{"min_spare_servers", "Min spare servers", "dynamic pools", "text", func(s *procmgr.SpecInput) *string { return &s.MinSpareServers }, "Pool"},
	{"max_spare_servers", "Max spare servers", "dynamic pools", "text", func(s *procmgr.SpecInput) *string { return &s.MaxSpareServers }, "Pool"},
	{"max_requests", "Max requests per worker", "0 to 1000000; 0 never recycles", "text", func(s *procmgr.SpecInput) *string { return &s.MaxRequests }, "Pool"},
	{"memory_limit", "PHP memory_limit", "16M to 64G, at most the memory limit", "text", func(s *procmgr.SpecInput) *string { return &s.MemoryLimit }, "PHP"},
	{"max_execution_time", "Max execution time (s)", "1 to 86400; a request is ended 10 s after it", "text", func(s *procmgr.SpecInput) *string { return &s.MaxExecutionTime }, "PHP"},
	{"upload_max", "Upload limit", "1K to 16G", "text", func(s *procmgr.SpecInput) *string { return &s.UploadMax }, "PHP"},
	{"memory_max", "Memory limit", "32M to 1T (systemd MemoryMax)", "text", func(s *procmgr.SpecInput) *string { return &s.MemoryMax }, "Limits"},
	{"cpu_quota", "CPU quota", "1% to 100000% of one CPU", "text", func(s *procmgr.SpecInput) *string { return &s.CPUQuota }, "Limits"},
	{"tasks_max", "Tasks", "8 to 100000, more than max children", "text", func(s *procmgr.SpecInput) *string { return &s.TasksMax }, "Limits"},
}

var groupOrder = []string{"Site", "Pool", "PHP", "Limits", "Environment"}

// readSpecForm reads the spec fields of a posted form; a field left empty
// keeps its default (create) or its current value (edit).
func readSpecForm(c echo.Context) procmgr.SpecInput {
	var in procmgr.SpecInput
	for _, f := range specFields {
		*f.get(&in) = strings.TrimSpace(c.FormValue(f.name))
	}
	in.Env = parseEnvLines(c.FormValue("env"))
	in.Domains = strings.Fields(strings.ReplaceAll(c.FormValue("domains"), ",", " "))
	return in
}

// readSiteForm reads the CMS installer's fields of the create form.
func readSiteForm(c echo.Context) cms.Site {
	return cms.Site{Title: strings.TrimSpace(c.FormValue("site_title")), AdminUser: strings.TrimSpace(c.FormValue("admin_user")),
		AdminEmail: strings.TrimSpace(c.FormValue("admin_email"))}
}

// parseEnvLines reads the env text area: one KEY=VALUE a line, blank lines
// skipped; the engine validates each.
func parseEnvLines(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// fieldErrors turns the engine's refusal into a message per field name.
func fieldErrors(err error) (map[string]string, bool) {
	out := map[string]string{}
	var fes procmgr.FieldErrors
	var fe *procmgr.FieldError
	switch {
	case errors.As(err, &fes):
		for _, f := range fes {
			add(out, f.Field, f.Rule)
		}
	case errors.As(err, &fe):
		add(out, fe.Field, fe.Rule)
	default:
		return nil, false
	}
	return out, true
}

func add(m map[string]string, k, v string) {
	if m[k] != "" {
		m[k] += "; " + v
		return
	}
	m[k] = v
}

// instanceForm builds the form's model from the values entered (or the
// current ones) and the rules they broke.
func instanceForm(page viewmodel.Page, editing bool, id, ownerID string, in procmgr.SpecInput, siteIn cms.Site, errs map[string]string,
	php []string, owners []auth.UserView) viewmodel.InstanceForm {
	m := viewmodel.InstanceForm{Page: page, Editing: editing, ID: id}
	if editing {
		m.Action = "/instances/" + id + "/edit"
	} else {
		m.Action = "/instances"
	}
	groups := map[string]*viewmodel.FieldGroup{}
	for _, g := range groupOrder {
		groups[g] = &viewmodel.FieldGroup{Legend: g}
	}
	site := groups["Site"]
	if !editing {
		site.Fields = append(site.Fields, viewmodel.Field{Name: "id", Label: "Instance id", Value: id, Error: errs["id"], Kind: "text",
			Help: "lowercase letters, digits and single hyphens; at most 25 characters"})
	}
	ownerOpts := []viewmodel.Option{{Value: "", Label: "nobody (admins and support only)"}}
	for _, u := range owners {
		ownerOpts = append(ownerOpts, viewmodel.Option{Value: strconv.FormatUint(uint64(u.ID), 10), Label: u.Name + " (" + string(u.Role) + ")"})
	}
	site.Fields = append(site.Fields, viewmodel.Field{Name: "owner_id", Label: "Owner", Value: ownerID, Error: errs["owner_id"], Kind: "select", Options: ownerOpts})
	site.Fields = append(site.Fields, viewmodel.Field{Name: "domains", Label: "Domains", Value: strings.Join(in.Domains, "\n"), Error: errs["domains"], Kind: "textarea",
		Help: "one a line, the first is the site's main name; lowercase, international names in punycode (xn--…); wordpress needs one"})
	for _, f := range specFields {
		fld := viewmodel.Field{Name: f.name, Label: f.label, Value: *f.get(&in), Error: errs[f.name], Help: f.help, Kind: f.kind}
		if !editing && fld.Value == "" {
			fld.Value = *f.get(&procmgr.Defaults)
		}
		switch f.name {
		case "cms":
			fld.Options = options("wordpress", "joomla", "drupal", "dokuwiki", "php")
		case "php":
			fld.Options = options(php...)
			if len(php) == 0 {
				fld.Kind, fld.Help = "text", "no php-fpm is installed on this host"
			}
		case "pm":
			fld.Options = options("ondemand", "dynamic", "static")
		case "on_unhealthy":
			fld.Options = options("restart", "alert")
		}
		groups[f.group].Fields = append(groups[f.group].Fields, fld)
	}
	if !editing {
		site.Fields = append(site.Fields,
			viewmodel.Field{Name: "site_title", Label: "Site title", Value: siteIn.Title, Error: errs["site_title"], Kind: "text", Help: "wordpress and dokuwiki; default: the instance id"},
			viewmodel.Field{Name: "admin_user", Label: "CMS admin user", Value: siteIn.AdminUser, Error: errs["admin_user"], Kind: "text", Help: "default admin; its password is shown once"},
			viewmodel.Field{Name: "admin_email", Label: "CMS admin e-mail", Value: siteIn.AdminEmail, Error: errs["admin_email"], Kind: "text", Help: "default admin@ the first domain"})
	}
	groups["Environment"].Fields = []viewmodel.Field{{Name: "env", Label: "Environment variables", Value: strings.Join(in.Env, "\n"),
		Error: errs["env"], Kind: "textarea", Help: "one KEY=VALUE a line; at most 32"}}
	for _, g := range groupOrder {
		m.Groups = append(m.Groups, *groups[g])
	}
	if len(errs) > 0 {
		m.Error = "Some settings were refused; each is marked below. Nothing was changed."
	}
	return m
}

func options(vals ...string) []viewmodel.Option {
	out := make([]viewmodel.Option, len(vals))
	for i, v := range vals {
		out[i] = viewmodel.Option{Value: v, Label: v}
	}
	return out
}

// parseOwner reads owner_id: "" is nobody.
func parseOwner(s string) (*uint, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return nil, &procmgr.FieldError{Field: "owner_id", Value: s, Rule: "must be the id of an existing user"}
	}
	u := uint(n)
	return &u, nil
}

// settingsOf lists an instance's settings for its page.
func settingsOf(v instances.View) []viewmodel.KV {
	out := []viewmodel.KV{}
	for _, f := range specFields {
		out = append(out, viewmodel.KV{Label: f.label, Value: *f.get(&v.Spec), Mono: true})
	}
	env := strings.Join(v.Spec.Env, " ")
	if env == "" {
		env = "none"
	}
	domains := strings.Join(v.Spec.Domains, " ")
	if domains == "" {
		domains = "none (no site is published)"
	}
	return append([]viewmodel.KV{{Label: "Domains", Value: domains, Mono: true}}, append(out, viewmodel.KV{Label: "Environment", Value: env, Mono: true})...)
}

func itoa(n int) string { return strconv.Itoa(n) }
