package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ikabud/panel/internal/procmgr"
)

// Runner is how nginx runs on this host: Debian's nginx.service under
// systemd (UnitRunner), or a master the panel supervises (Supervised).
type Runner interface {
	// Kind names the runner in statuses: "systemd nginx.service",
	// "supervised".
	Kind() string
	// MainConfig is the nginx.conf the running nginx reads.
	MainConfig() string
	// Ensure starts nginx if it does not run, and returns once it does.
	Ensure(ctx context.Context) error
	// Reload makes the running nginx read its config again, gracefully:
	// requests in flight finish on the old workers.
	Reload(ctx context.Context) error
	// Up says whether nginx runs, and if not, why.
	Up(ctx context.Context) (bool, string)
}

// Options configure a Manager.
type Options struct {
	Layout procmgr.Layout
	Listen Listen
	Runner Runner
	// Binary is the nginx executable (default /usr/sbin/nginx).
	Binary string
	Log    *slog.Logger
	// ProbeTimeout bounds the wait for a reloaded nginx to serve a
	// changed site (default 5 s).
	ProbeTimeout time.Duration
	// AccessLogDir holds the sites' access log, access.log ("": the sites
	// log no requests). Root's alone: nginx's master opens the file.
	AccessLogDir string
}

// Manager owns the panel's part of nginx's config, under
// <config-root>/nginx: a generation directory per change (http.conf, and
// sites/<id>.conf for each instance with domains) and the link "live" to
// the one in use. One change at a time.
type Manager struct {
	opt    Options
	dir    string
	log    *slog.Logger
	client *http.Client

	mu    sync.Mutex
	sites map[procmgr.InstanceID]Site
	gen   int
	// synced: the live tree was written by this Manager; until then a
	// change that changes no site still rewrites it (the tree on disk may
	// hold sites of an earlier panel).
	synced bool
	// reopen: the access log was rotated and nginx not yet reloaded.
	reopen bool
}

// New prepares the config directory and reads which generation is live.
func New(opt Options) (*Manager, error) {
	if opt.Binary == "" {
		opt.Binary = "/usr/sbin/nginx"
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.ProbeTimeout == 0 {
		opt.ProbeTimeout = 5 * time.Second
	}
	if _, err := os.Stat(opt.Binary); err != nil {
		return nil, fmt.Errorf("nginx: %s is missing (install Debian's nginx package): %w", opt.Binary, err)
	}
	m := &Manager{
		opt: opt, dir: filepath.Join(opt.Layout.ConfigRoot, "nginx"), log: opt.Log,
		sites: map[procmgr.InstanceID]Site{},
		client: &http.Client{
			Timeout: 3 * time.Second,
			// Every probe is a new connection: one kept alive to an old
			// worker would keep reading the old config.
			Transport: &http.Transport{DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	// root's alone: nginx's master reads it as root, and tenants have no
	// business reading each other's domains.
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	if err := os.Chmod(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	if opt.AccessLogDir != "" {
		if err := prepareAccessLogDir(opt.AccessLogDir); err != nil {
			return nil, err
		}
	}
	if target, err := os.Readlink(m.live()); err == nil {
		m.gen, _ = strconv.Atoi(strings.TrimPrefix(target, "gen-"))
	}
	return m, nil
}

func (m *Manager) live() string               { return filepath.Join(m.dir, "live") }
func (m *Manager) genDir(n int) string        { return filepath.Join(m.dir, "gen-"+strconv.Itoa(n)) }
func (m *Manager) genName(n int) string       { return "gen-" + strconv.Itoa(n) }
func (m *Manager) candidateMain(n int) string { return filepath.Join(m.genDir(n), "check.conf") }

// LiveHTTPConf is the file the nginx main config includes (inside http {})
// to serve the panel's sites.
func (m *Manager) LiveHTTPConf() string { return filepath.Join(m.live(), "http.conf") }

// IncludeLine is the include of LiveHTTPConf, for a distribution's config.
func (m *Manager) IncludeLine() string { return "include " + m.LiveHTTPConf() + ";\n" }

// Start makes sure the live tree exists and nginx runs, publishing the
// sites nginx had (the live generation's, or none).
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := os.Stat(m.LiveHTTPConf()); err != nil {
		// First start: an empty tree, so that nginx's config is whole.
		if err := m.writeGen(m.gen + 1); err != nil {
			return err
		}
		if err := m.swap(m.gen + 1); err != nil {
			return err
		}
		m.gen++
	}
	return m.opt.Runner.Ensure(ctx)
}

// Up says whether nginx runs, and how.
func (m *Manager) Up(ctx context.Context) (bool, string) {
	up, detail := m.opt.Runner.Up(ctx)
	return up, fmt.Sprintf("nginx %s: %s; sites on %s", m.opt.Runner.Kind(), detail, m.opt.Listen)
}

// Publish makes spec's site the one nginx serves (an instance without
// domains: no site).
func (m *Manager) Publish(ctx context.Context, spec procmgr.Spec) error {
	if len(spec.Domains) == 0 {
		return m.Withdraw(ctx, spec.ID)
	}
	site := m.siteOf(spec)
	return m.change(ctx, func(sites map[procmgr.InstanceID]Site) {
		sites[spec.ID] = site
	})
}

// Withdraw removes an instance's site.
func (m *Manager) Withdraw(ctx context.Context, id procmgr.InstanceID) error {
	return m.change(ctx, func(sites map[procmgr.InstanceID]Site) {
		delete(sites, id)
	})
}

// Sync publishes exactly the sites of specs.
func (m *Manager) Sync(ctx context.Context, specs []procmgr.Spec) error {
	return m.change(ctx, func(sites map[procmgr.InstanceID]Site) {
		clear(sites)
		for _, s := range specs {
			if len(s.Domains) > 0 {
				sites[s.ID] = m.siteOf(s)
			}
		}
	})
}

// change applies edit to a copy of the site set and makes the result live
// as one transaction. The sites that changed must be seen serving their new
// config, and those removed seen gone, before it counts as done. On failure
// the site set is as it was.
func (m *Manager) change(ctx context.Context, edit func(map[procmgr.InstanceID]Site)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[procmgr.InstanceID]Site, len(m.sites)+1)
	for id, s := range m.sites {
		next[id] = s
	}
	edit(next)
	var probe, gone []Site
	for id, s := range next {
		// A Site is all its block renders from: equal sites, equal blocks.
		if old, ok := m.sites[id]; !ok || !reflect.DeepEqual(old, s) {
			probe = append(probe, s)
		}
	}
	for id, s := range m.sites {
		if _, ok := next[id]; !ok {
			gone = append(gone, s)
		}
	}
	if m.synced && len(probe) == 0 && len(gone) == 0 {
		// Nothing nginx serves changes (an instance without domains).
		return nil
	}
	n := m.gen + 1
	err := m.transact(ctx, n, func(string) error { return m.writeSites(n, next) }, probe, gone)
	if err == nil {
		m.sites, m.synced = next, true
	}
	return err
}

// transact is one change of the tree: write generation n, check it on its
// own (nginx -t of a config holding only the panel's part), make it live,
// check nginx's whole config, reload, and see the changed sites served. Any
// failure puts the previous generation back (and reloads again if nginx
// had reloaded), so nginx never runs a config that failed a check.
func (m *Manager) transact(ctx context.Context, n int, write func(dir string) error, probe, gone []Site) error {
	prev := m.gen
	if err := m.writeGen(n); err != nil {
		return err
	}
	if err := write(m.genDir(n)); err != nil {
		os.RemoveAll(m.genDir(n))
		return fmt.Errorf("nginx: write the new config: %w", err)
	}
	fail := func(stage string, err error, reloaded bool) error {
		if rerr := m.swap(prev); rerr != nil {
			err = errors.Join(err, fmt.Errorf("and putting generation %d back failed: %w", prev, rerr))
		} else if reloaded {
			if rerr := m.opt.Runner.Reload(ctx); rerr != nil {
				err = errors.Join(err, fmt.Errorf("and reloading the previous config failed: %w", rerr))
			}
		}
		os.RemoveAll(m.genDir(n))
		m.log.Error("nginx config change rolled back", "action", "nginx", "stage", stage, "err", err)
		return fmt.Errorf("nginx: %s: %w (the previous config is back in place)", stage, err)
	}
	if err := m.check(ctx, m.candidateMain(n)); err != nil {
		return fail("the new config was refused by nginx -t", err, false)
	}
	if err := m.swap(n); err != nil {
		return fail("make the new config live", err, false)
	}
	if err := m.check(ctx, m.opt.Runner.MainConfig()); err != nil {
		return fail("nginx's whole config was refused by nginx -t with the new sites", err, false)
	}
	if err := m.opt.Runner.Reload(ctx); err != nil {
		return fail("reload", err, true)
	}
	for _, s := range probe {
		if err := m.awaitSite(ctx, s, true); err != nil {
			return fail("the reloaded nginx does not serve "+string(s.ID), err, true)
		}
	}
	for _, s := range gone {
		if err := m.awaitSite(ctx, s, false); err != nil {
			return fail("the reloaded nginx still serves "+string(s.ID), err, true)
		}
	}
	m.gen = n
	if prev > 0 {
		// The generation before the previous one is no longer needed.
		for _, old := range m.oldGens(prev) {
			os.RemoveAll(filepath.Join(m.dir, old))
		}
	}
	return nil
}

// oldGens lists the generation directories other than keep and the live one.
func (m *Manager) oldGens(keep int) []string {
	entries, _ := os.ReadDir(m.dir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "gen-") && e.Name() != m.genName(keep) && e.Name() != m.genName(m.gen) {
			out = append(out, e.Name())
		}
	}
	return out
}

// writeGen makes generation n's directory with its http.conf and the
// candidate check config, and no site yet.
func (m *Manager) writeGen(n int) error {
	dir := m.genDir(n)
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "sites"), 0o700); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	files := map[string][]byte{
		"http.conf":  RenderHTTP(m.opt.Listen, filepath.Join(dir, "sites")),
		"check.conf": RenderMain(MainOptions{HTTPConf: filepath.Join(dir, "http.conf"), WebUser: m.opt.Layout.WebUser, PIDFile: filepath.Join(dir, "check.pid")}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("nginx: %w", err)
		}
	}
	return nil
}

func (m *Manager) writeSites(n int, sites map[procmgr.InstanceID]Site) error {
	for id, s := range sites {
		path := filepath.Join(m.genDir(n), "sites", string(id)+".conf")
		if err := os.WriteFile(path, RenderSite(m.opt.Listen, s), 0o600); err != nil {
			return fmt.Errorf("nginx: %w", err)
		}
	}
	return nil
}

// swap points "live" at generation n, atomically (rename of a new link).
func (m *Manager) swap(n int) error {
	if n == 0 {
		return os.Remove(m.live())
	}
	tmp := m.live() + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(m.genName(n), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, m.live()); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// check runs nginx -t on a main config.
func (m *Manager) check(ctx context.Context, main string) error {
	return testConfig(ctx, m.opt.Binary, main)
}

// testConfig runs nginx -t on a main config; the error carries nginx's
// own words.
func testConfig(ctx context.Context, binary, main string) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, binary, "-t", "-q", "-c", main)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -t -c %s: %w: %s", binary, main, err, bytes.TrimSpace(out))
	}
	return nil
}

// awaitSite asks nginx for the site's fingerprint until the new config
// answers it (old workers may answer for a moment after a reload), or, for
// a site removed (served false), until its first domain reaches the
// default server.
func (m *Manager) awaitSite(ctx context.Context, s Site, served bool) error {
	want := string(s.ID) + " " + Fingerprint(siteBody(m.opt.Listen, s)) + "\n"
	deadline := time.Now().Add(m.opt.ProbeTimeout)
	var last string
	// Several answers in a row, each on a new connection: an old worker
	// may still accept for a moment after the first new one answered.
	ok := 0
	for {
		body, status, err := m.get(ctx, string(s.Domains[0]), SitePath)
		good := false
		switch {
		case err != nil:
			last = err.Error()
		case served && status == http.StatusOK && body == want:
			good = true
		case !served && status == http.StatusNotFound && strings.HasPrefix(body, defaultBody):
			good = true
		}
		if good {
			if ok++; ok == probesInARow {
				return nil
			}
			continue
		}
		ok = 0
		if err == nil {
			last = fmt.Sprintf("status %d, %q", status, strings.TrimSpace(body))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s the site answers %s, want %q", m.opt.ProbeTimeout, last, strings.TrimSpace(want))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// probesInARow is how many answers of the new config in a row make a
// change count as served.
const probesInARow = 4

// siteBody is the part of a rendered site its fingerprint covers.
func siteBody(ln Listen, s Site) []byte {
	r := RenderSite(ln, s)
	start := bytes.Index(r, []byte("server {"))
	end := bytes.Index(r, []byte("    location = "+SitePath))
	return r[start:end]
}

func (m *Manager) get(ctx context.Context, host, path string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.opt.Listen.ProbeAddr()+path, nil)
	if err != nil {
		return "", 0, err
	}
	req.Host = host
	res, err := m.client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	return string(body), res.StatusCode, err
}

// Probe asks nginx for the instance's pool ping on its primary domain.
func (m *Manager) Probe(ctx context.Context, spec procmgr.Spec) procmgr.HTTPProbe {
	p := procmgr.HTTPProbe{URL: "http://" + m.opt.Listen.ProbeAddr() + PingPath}
	if len(spec.Domains) == 0 {
		p.Reason = "the instance has no domain"
		return p
	}
	p.Host = string(spec.Domains[0])
	start := time.Now()
	body, status, err := m.get(ctx, p.Host, PingPath)
	p.Status = status
	switch {
	case err != nil:
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			p.Reason = "no answer within 3s"
		} else {
			p.Reason = err.Error()
		}
	case status == http.StatusOK && strings.TrimSpace(body) == "pong":
		p.OK = true
		p.Latency = time.Since(start)
	case status == http.StatusBadGateway:
		p.Reason = "502: nginx cannot reach the pool (it is not running)"
	case status == http.StatusGatewayTimeout:
		p.Reason = "504: the pool does not answer"
	default:
		p.Reason = fmt.Sprintf("status %d", status)
	}
	return p
}
