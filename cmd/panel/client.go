package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ikabud/panel/internal/cms"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/sitedb"
	"github.com/ikabud/panel/internal/web"
)

// client speaks the JSON API to the daemon over its Unix socket.
type client struct {
	socket string
	http   *http.Client
}

func newClient(socket string) *client {
	return &client{
		socket: socket,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}},
	}
}

// apiError is an error response of the daemon.
type apiError struct {
	status int
	body   web.ErrorBody
}

func (e *apiError) Error() string {
	if len(e.body.Fields) == 0 {
		return e.body.Error
	}
	var b strings.Builder
	b.WriteString("invalid input:")
	for _, f := range e.body.Fields {
		fmt.Fprintf(&b, "\n  --%s: %s (got %q)", strings.ReplaceAll(flagName(f.Field), "_", "-"), f.Rule, f.Value)
	}
	return b.String()
}

// flagName maps an API field to the command-line flag that sets it.
func flagName(field string) string {
	switch field {
	case "min_spare_servers":
		return "min-spare"
	case "max_spare_servers":
		return "max-spare"
	}
	return field
}

func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://panel"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		ae := &apiError{status: res.StatusCode}
		data, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if json.Unmarshal(data, &ae.body) != nil || ae.body.Error == "" {
			ae.body.Error = fmt.Sprintf("daemon answered %s: %s", res.Status, bytes.TrimSpace(data))
		}
		return ae
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(res.Body).Decode(out)
}

func (c *client) connError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("daemon not running (nothing listens on %s): start it with `panel serve`", c.socket)
		}
		if errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("permission denied on %s: the panel socket is for root", c.socket)
		}
	}
	return fmt.Errorf("talking to the daemon at %s: %w", c.socket, err)
}

// specFlags binds the spec flags of create and set.
type specFlags struct {
	in           procmgr.SpecInput
	env          multiFlag
	domains      multiFlag
	clearDomains bool
	owner        string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func (sf *specFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&sf.in.CMS, "cms", "", "wordpress, joomla, drupal, dokuwiki or php (default php)")
	fs.StringVar(&sf.in.PHP, "php", "", "PHP version (default 8.2)")
	fs.StringVar(&sf.in.PM, "pm", "", "static, dynamic or ondemand (default ondemand)")
	fs.StringVar(&sf.in.MaxChildren, "max-children", "", "pm.max_children (default 5)")
	fs.StringVar(&sf.in.StartServers, "start-servers", "", "pm.start_servers (default 2)")
	fs.StringVar(&sf.in.MinSpareServers, "min-spare", "", "pm.min_spare_servers (default 1)")
	fs.StringVar(&sf.in.MaxSpareServers, "max-spare", "", "pm.max_spare_servers (default 3)")
	fs.StringVar(&sf.in.MaxRequests, "max-requests", "", "pm.max_requests (default 500)")
	fs.StringVar(&sf.in.MemoryLimit, "memory-limit", "", "PHP memory_limit (default 256M)")
	fs.StringVar(&sf.in.MaxExecutionTime, "max-execution-time", "", "PHP max_execution_time in seconds (default 30)")
	fs.StringVar(&sf.in.UploadMax, "upload-max", "", "upload_max_filesize and post_max_size (default 64M)")
	fs.StringVar(&sf.in.MemoryMax, "memory-max", "", "service MemoryMax (default 512M)")
	fs.StringVar(&sf.in.CPUQuota, "cpu-quota", "", "service CPUQuota in % of one CPU (default 100%)")
	fs.StringVar(&sf.in.TasksMax, "tasks-max", "", "service TasksMax (default 64)")
	fs.Var(&sf.env, "env", "KEY=VALUE given to PHP (repeatable)")
	fs.Var(&sf.domains, "domain", "a domain the site answers to (repeatable; the first is its primary name); on set, the list replaces the current one")
	fs.BoolVar(&sf.clearDomains, "no-domains", false, "set: remove every domain (the site is no longer published)")
	fs.StringVar(&sf.in.OnUnhealthy, "on-unhealthy", "", "restart or alert: what the panel does when the pool stops answering (default restart)")
}

func (sf *specFlags) input() procmgr.SpecInput {
	in := sf.in
	if len(sf.env) > 0 {
		in.Env = sf.env
	}
	switch {
	case len(sf.domains) > 0:
		in.Domains = sf.domains
	case sf.clearDomains:
		in.Domains = []string{}
	}
	return in
}

func cmdClient(verb string, args []string, stdout io.Writer) error {
	fs := newFlagSet(verb)
	socket := fs.String("socket", envOr("IKABUD_SOCKET", defaultSocket), "daemon socket")
	asJSON := fs.Bool("json", false, "print JSON")
	var sf specFlags
	var site cms.Site
	var all, follow, purge, access *bool
	var signalName *string
	var n *int
	switch verb {
	case "create":
		sf.bind(fs)
		fs.StringVar(&sf.owner, "owner", "", "id of the customer user who owns the instance")
		fs.StringVar(&site.Title, "site-title", "", "the CMS site's title (default: the instance id)")
		fs.StringVar(&site.AdminUser, "admin-user", "", "the CMS's admin user (default admin); its password is generated and printed once")
		fs.StringVar(&site.AdminEmail, "admin-email", "", "the CMS admin's e-mail (default admin@ the first domain)")
	case "set":
		sf.bind(fs)
	case "start":
		all = fs.Bool("all", false, "start every stopped instance")
	case "kill":
		signalName = fs.String("signal", "TERM", "signal to send")
	case "logs":
		follow = fs.Bool("f", false, "follow")
		n = fs.Int("n", 50, "number of lines")
		access = fs.Bool("access", false, "the site's access log (the requests visitors made) instead")
	case "audit":
		n = fs.Int("n", 20, "number of events")
	case "remove":
		purge = fs.Bool("purge", false, "also delete the instance's files")
	case "status":
		// With no id: the panel's own status (backend, web server).
	case "stop", "restart", "reload", "list", "health":
	default:
		return fmt.Errorf("%w: unknown command %q (see `panel help`)", errUsage, verb)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	c := newClient(*socket)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	needID := func() (string, error) {
		if len(pos) != 1 {
			return "", fmt.Errorf("%w: panel %s takes one instance id (got %d arguments)", errUsage, verb, len(pos))
		}
		return url.PathEscape(pos[0]), nil
	}
	switch verb {
	case "list":
		var vs []instances.View
		if err := c.do(ctx, "GET", "/api/v1/instances", nil, &vs); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, vs)
		}
		printList(stdout, vs)
		return nil
	case "audit":
		q := "/api/v1/audit?limit=" + strconv.Itoa(*n)
		if len(pos) == 1 {
			q += "&instance=" + url.QueryEscape(pos[0])
		}
		var evs []instances.AuditEntry
		if err := c.do(ctx, "GET", q, nil, &evs); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, evs)
		}
		printAudit(stdout, evs)
		return nil
	case "status":
		if len(pos) == 0 {
			var h panelHealth
			if err := c.do(ctx, "GET", "/healthz", nil, &h); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(stdout, h)
			}
			printPanelHealth(stdout, h)
			if h.WebServer.Managed && !h.WebServer.Up {
				return fmt.Errorf("the web server in front of the sites is down: %s", h.WebServer.Detail)
			}
			return nil
		}
	case "start":
		if *all {
			var res instances.StartAllResult
			if err := c.do(ctx, "POST", "/api/v1/instances/start-all", nil, &res); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(stdout, res)
			}
			fmt.Fprintf(stdout, "Started %d instances\n", len(res.Started))
			for _, f := range res.Failed {
				fmt.Fprintf(stdout, "Failed to start %s: %s\n", f.ID, escapeControls(f.Error))
			}
			if len(res.Failed) > 0 {
				return fmt.Errorf("%d of %d instances did not start", len(res.Failed), len(res.Started)+len(res.Failed))
			}
			return nil
		}
	}
	id, err := needID()
	if err != nil {
		return err
	}
	base := "/api/v1/instances/" + id
	var v instances.View
	switch verb {
	case "create":
		req := instances.CreateRequest{ID: pos[0], Spec: sf.input(), Site: site}
		if sf.owner != "" {
			o, err := strconv.ParseUint(sf.owner, 10, 32)
			if err != nil {
				return fmt.Errorf("%w: --owner must be a user id (see `panel user add`)", errUsage)
			}
			ou := uint(o)
			req.OwnerID = &ou
		}
		if err := c.do(ctx, "POST", "/api/v1/instances", req, &v); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Created %s\n", v.ID)
		printStatus(stdout, v)
		if in := v.Installed; in != nil {
			if in.Database != "" {
				fmt.Fprintf(stdout, "Database: %s (its password is in the instance's config, readable by the instance alone)\n", in.Database)
			}
			if in.AdminPassword != "" {
				fmt.Fprintf(stdout, "%s admin: user %s, password %s (shown once)\n", v.CMS, in.AdminUser, in.AdminPassword)
			}
			if in.URL != "" {
				fmt.Fprintf(stdout, "Sign in at: %s\n", in.URL)
			}
		}
	case "set":
		if err := c.do(ctx, "PATCH", base, sf.input(), &v); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Updated %s\n", v.ID)
		printStatus(stdout, v)
	case "start", "stop", "restart", "reload":
		if err := c.do(ctx, "POST", base+"/"+verb, nil, &v); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s\n", pastTense[verb], v.ID)
		printStatus(stdout, v)
	case "kill":
		if err := c.do(ctx, "POST", base+"/kill", web.KillRequest{Signal: *signalName}, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Sent %s to the master of %s\n", strings.TrimPrefix(strings.ToUpper(*signalName), "SIG"), pos[0])
	case "status":
		if err := c.do(ctx, "GET", base, nil, &v); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, v)
		}
		printStatus(stdout, v)
	case "health":
		var h procmgr.Health
		if err := c.do(ctx, "GET", base+"/health", nil, &h); err != nil {
			return err
		}
		if *asJSON {
			if err := printJSON(stdout, h); err != nil {
				return err
			}
		} else {
			printHealth(stdout, pos[0], h)
		}
		if !h.Healthy {
			return fmt.Errorf("%s is unhealthy: %s", pos[0], h.Reason)
		}
	case "logs":
		if *access {
			if *follow {
				return fmt.Errorf("%w: logs --access cannot be followed (-f): ask again for the last lines", errUsage)
			}
			var lines []string
			if err := c.do(ctx, "GET", fmt.Sprintf("%s/access-log?n=%d", base, *n), nil, &lines); err != nil {
				return err
			}
			for _, l := range lines {
				fmt.Fprintln(stdout, l)
			}
			return nil
		}
		return c.logs(ctx, stdout, base, *n, *follow)
	case "remove":
		q := ""
		if *purge {
			q = "?purge=true"
		}
		// What it had, to say what is kept.
		hadDB := false
		if err := c.do(ctx, "GET", base, nil, &v); err == nil {
			hadDB = cms.NeedsDatabase(procmgr.CMS(v.CMS))
		}
		if err := c.do(ctx, "DELETE", base+q, nil, nil); err != nil {
			return err
		}
		switch {
		case *purge && hadDB:
			fmt.Fprintf(stdout, "Removed %s, its files, its database and its database user\n", pos[0])
		case *purge:
			fmt.Fprintf(stdout, "Removed %s and its files\n", pos[0])
		case hadDB:
			db, _ := sitedb.Names(procmgr.InstanceID(pos[0]))
			fmt.Fprintf(stdout, "Removed %s (its files and its database %s are kept; --purge deletes them)\n", pos[0], db)
		default:
			fmt.Fprintf(stdout, "Removed %s (its files are kept; --purge deletes them)\n", pos[0])
		}
	}
	return nil
}

var pastTense = map[string]string{"start": "Started", "stop": "Stopped", "restart": "Restarted", "reload": "Reloaded"}

func (c *client) logs(ctx context.Context, w io.Writer, base string, n int, follow bool) error {
	path := fmt.Sprintf("%s/logs?n=%d", base, n)
	if !follow {
		var lines []procmgr.LogLine
		if err := c.do(ctx, "GET", path, nil, &lines); err != nil {
			return err
		}
		for _, l := range lines {
			printLogLine(w, l)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://panel"+path+"&follow=1", nil)
	if err != nil {
		return err
	}
	res, err := c.http.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		var body web.ErrorBody
		json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body)
		return &apiError{status: res.StatusCode, body: body}
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l procmgr.LogLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			printLogLine(w, l)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

func printLogLine(w io.Writer, l procmgr.LogLine) {
	fmt.Fprintf(w, "%s %s\n", l.At.Local().Format(time.DateTime), escapeControls(l.Text))
}

// escapeControls shows control characters (tab aside) as \xNN: log lines are
// written by tenant code, and raw escape sequences would act on the
// terminal of the admin reading them.
func escapeControls(s string) string {
	var b strings.Builder
	for _, r := range s {
		if (r < 0x20 && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
