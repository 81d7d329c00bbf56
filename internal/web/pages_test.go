package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
)

func TestPagesNeedASession(t *testing.T) {
	e := newPanelEnv(t)
	b := e.browser()
	for _, path := range []string{"/", "/instances/new", "/audit", "/tokens", "/users", "/account", "/instances/x"} {
		r := b.get(path)
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login") {
			t.Errorf("GET %s without a session: %s, want a redirect to /login", path, r)
		}
	}
	r := b.get("/login")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `name="username"`) || !strings.Contains(string(r.body), `name="password"`) {
		t.Fatalf("login page: %s", r)
	}
	// A POST without a session changes nothing and is refused.
	e.mkInstance("site", nil)
	if r := b.postForm("/instances/site/stop", url.Values{}); r.status != http.StatusUnauthorized {
		t.Errorf("stop without a session: %s", r)
	}
	if v, _ := e.svc.Get(context.Background(), rootP, "site"); v.Desired != "running" {
		t.Errorf("desired state changed to %s", v.Desired)
	}
}

func TestLoginSessionCookie(t *testing.T) {
	e := newPanelEnv(t)
	b := e.browser()
	r := b.postForm("/login", url.Values{"username": {"alice"}, "password": {"wrong-password"}})
	if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "Wrong user name or password") {
		t.Fatalf("bad password: %s", r)
	}
	if !e.auditHas("", "alice", "login", "refused") {
		t.Errorf("failed login not audited")
	}
	first := e.login("alice")
	second := e.login("alice")
	u, _ := url.Parse(e.base)
	c1, c2 := first.c.Jar.Cookies(u), second.c.Jar.Cookies(u)
	if len(c1) != 1 || len(c2) != 1 || c1[0].Value == c2[0].Value {
		t.Errorf("two logins share a session id: %v %v", c1, c2)
	}
	// The cookie's attributes, as the server set them.
	r = e.browser().postForm("/login", url.Values{"username": {"alice"}, "password": {testPassword}})
	ck := r.header.Get("Set-Cookie")
	for _, want := range []string{"ikabud_session=", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Errorf("Set-Cookie %q lacks %s", ck, want)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Errorf("Secure cookie over plain http: %q", ck)
	}
	// Logout ends the session.
	if r := first.postForm("/logout", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("logout: %s", r)
	}
	if r := first.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("after logout: %s", r)
	}
	if r := second.get("/"); r.status != http.StatusOK {
		t.Errorf("the other session ended too: %s", r)
	}
}

func TestLoginRateLimited(t *testing.T) {
	e := newPanelEnv(t)
	b := e.browser()
	var last response
	for range 6 {
		last = b.postForm("/login", url.Values{"username": {"bob"}, "password": {"nope-nope"}})
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
		t.Fatalf("sixth failure: %s, want 429 with Retry-After", last)
	}
	// Limited means limited: the right password is refused too.
	if r := b.postForm("/login", url.Values{"username": {"bob"}, "password": {testPassword}}); r.status != http.StatusTooManyRequests {
		t.Errorf("right password while limited: %s", r)
	}
	// X-Forwarded-For from an untrusted client does not choose the address.
	req, _ := http.NewRequest("POST", e.base+"/login", strings.NewReader(url.Values{"username": {"bob"}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	if r := b.do(req); r.status != http.StatusTooManyRequests {
		t.Errorf("a forged X-Forwarded-For escaped the limit: %s", r)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newPanelEnv(t)
	b := e.login("ann")
	for _, path := range []string{"/", "/login"} {
		r := b.get(path)
		csp := r.header.Get("Content-Security-Policy")
		if csp == "" || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s CSP %q", path, csp)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Referrer-Policy") == "" {
			t.Errorf("%s headers %v", path, r.header)
		}
		if strings.Contains(string(r.body), "<script>") || strings.Contains(string(r.body), " onclick=") || strings.Contains(string(r.body), " style=") {
			t.Errorf("%s has inline script or style, which the CSP would block", path)
		}
	}
}

func TestCSRFAndOrigin(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("site", nil)
	b := e.login("ann")
	stopped := func() bool {
		v, _ := e.svc.Get(context.Background(), rootP, "site")
		return v.Desired == "stopped"
	}
	// No token.
	req, _ := http.NewRequest("POST", e.base+"/instances/site/stop", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.base)
	if r := b.do(req); r.status != http.StatusForbidden {
		t.Errorf("no CSRF token: %s", r)
	}
	// A cross-site Origin is refused even with the right token.
	b.origin = "http://evil.example"
	if r := b.postForm("/instances/site/stop", url.Values{}); r.status != http.StatusForbidden {
		t.Errorf("cross-site Origin: %s", r)
	}
	b.origin = ""
	req, _ = http.NewRequest("POST", e.base+"/instances/site/stop", strings.NewReader("_csrf="+url.QueryEscape(b.csrf)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := b.do(req); r.status != http.StatusForbidden {
		t.Errorf("Sec-Fetch-Site cross-site: %s", r)
	}
	// A GET never changes anything.
	if r := b.get("/instances/site/stop"); r.status == http.StatusOK || r.status == http.StatusSeeOther {
		t.Errorf("GET of an action: %s", r)
	}
	if stopped() {
		t.Fatalf("a refused request stopped the instance")
	}
	b.origin = e.base
	if r := b.postForm("/instances/site/stop", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("a proper stop: %s", r)
	}
	if !stopped() {
		t.Errorf("the proper stop did not stop")
	}
}

func TestCustomerSeesOnlyOwn(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("alice-site", &e.alice)
	e.mkInstance("bob-site", &e.bob)
	a := e.login("alice")
	dash := string(a.get("/").body)
	if !strings.Contains(dash, `data-id="alice-site"`) || strings.Contains(dash, "bob-site") {
		t.Errorf("alice's dashboard shows the wrong instances")
	}
	// Every route on bob's instance answers 404, and is audited.
	for _, path := range []string{"/instances/bob-site", "/instances/bob-site/edit", "/instances/bob-site/remove"} {
		if r := a.get(path); r.status != http.StatusNotFound {
			t.Errorf("alice GET %s: %d", path, r.status)
		}
	}
	for _, action := range []string{"start", "stop", "restart", "reload", "kill", "edit", "remove"} {
		if r := a.postForm("/instances/bob-site/"+action, url.Values{"confirm": {"bob-site"}}); r.status != http.StatusNotFound {
			t.Errorf("alice POST %s: %d", action, r.status)
		}
	}
	if _, resp, err := a.dialWS("?instance=bob-site", e.base); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice's websocket on bob's instance: %v %v", resp, err)
	}
	if !e.auditHas("bob-site", "alice", "stop", "refused") || !e.auditHas("bob-site", "alice", "view", "refused") {
		t.Errorf("alice's attempts on bob's instance are not audited")
	}
	if v, _ := e.svc.Get(context.Background(), rootP, "bob-site"); v.Desired != "running" || v.Phase != "ready" {
		t.Errorf("bob's instance changed: %+v", v)
	}
	if page := string(a.get("/instances/alice-site").body); !strings.Contains(page, "alice (you)") {
		t.Errorf("alice's own instance page does not name her as its owner")
	}
	// Her own: she may stop it, but not edit, kill or remove it (403).
	if r := a.postForm("/instances/alice-site/stop", url.Values{}); r.status != http.StatusSeeOther {
		t.Errorf("alice stops her own: %s", r)
	}
	for _, path := range []string{"/instances/new", "/audit", "/users", "/instances/alice-site/edit"} {
		if r := a.get(path); r.status != http.StatusForbidden {
			t.Errorf("alice GET %s: %d, want 403", path, r.status)
		}
	}
	if r := a.postForm("/instances/alice-site/kill", url.Values{"signal": {"KILL"}}); r.status != http.StatusForbidden {
		t.Errorf("alice kill: %d", r.status)
	}
}

func TestSupportChangesNothing(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("site", &e.alice)
	s := e.login("sam")
	if r := s.get("/instances/site"); r.status != http.StatusOK {
		t.Fatalf("support sees the instance: %s", r)
	}
	if r := s.get("/audit"); r.status != http.StatusOK {
		t.Errorf("support reads the audit log: %d", r.status)
	}
	calls := e.fb.TotalCalls()
	for _, action := range []string{"stop", "start", "restart", "reload", "kill", "edit", "remove"} {
		if r := s.postForm("/instances/site/"+action, url.Values{"signal": {"KILL"}, "confirm": {"site"}, "memory_max": {"1G"}}); r.status != http.StatusForbidden {
			t.Errorf("support POST %s: %d, want 403", action, r.status)
		}
	}
	for _, path := range []string{"/instances/new", "/instances/site/edit", "/users"} {
		if r := s.get(path); r.status != http.StatusForbidden {
			t.Errorf("support GET %s: %d, want 403", path, r.status)
		}
	}
	if n := e.fb.TotalCalls(); n != calls {
		t.Errorf("support's refused requests reached the backend: %v", e.fb.History())
	}
	if !e.auditHas("site", "sam", "kill", "refused") || !e.auditHas("site", "sam", "stop", "refused") {
		t.Errorf("support's refused attempts are not audited")
	}
}

func TestCreateForm(t *testing.T) {
	e := newPanelEnv(t)
	a := e.login("ann")
	r := a.get("/instances/new")
	if r.status != http.StatusOK {
		t.Fatalf("new form: %s", r)
	}
	for _, name := range []string{"id", "owner_id", "cms", "php", "pm", "max_children", "memory_max", "cpu_quota", "tasks_max", "env"} {
		if !strings.Contains(string(r.body), `name="`+name+`"`) {
			t.Errorf("the form has no field %q", name)
		}
	}
	provisions := e.fb.CallsFor(fakebackend.OpProvision, "bad")
	// Refused values: shown next to their fields, kept, 422, nothing made.
	r = a.postForm("/instances", url.Values{"id": {"bad/../id"}, "memory_max": {"-1"}, "max_children": {"7"}, "env": {"APP_ENV=prod\nlower=x"}})
	body := string(r.body)
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid create: %d", r.status)
	}
	for _, f := range []string{"id", "memory_max", "env"} {
		if !strings.Contains(body, `data-testid="error-`+f+`"`) {
			t.Errorf("no error shown next to %s", f)
		}
	}
	for _, kept := range []string{`value="bad/../id"`, `value="-1"`, `value="7"`, "APP_ENV=prod\nlower=x"} {
		if !strings.Contains(body, kept) {
			t.Errorf("the entered value %q was not kept", kept)
		}
	}
	if n := len(e.svc.List(context.Background(), rootP)); n != 0 || e.fb.CallsFor(fakebackend.OpProvision, "bad") != provisions {
		t.Errorf("a refused create made something: %d instances", n)
	}
	// A good one goes to the instance's page.
	r = a.postForm("/instances", url.Values{"id": {"wp-new"}, "cms": {"wordpress"}, "owner_id": {fmt.Sprint(e.alice.ID)}, "memory_max": {"300M"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/instances/wp-new" {
		t.Fatalf("create: %s", r)
	}
	page := a.get("/instances/wp-new")
	if page.status != http.StatusOK || !strings.Contains(string(page.body), `data-instance="wp-new"`) {
		t.Errorf("instance page: %d", page.status)
	}
}

func TestEditAndRemove(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("site", nil)
	a := e.login("ann")
	r := a.postForm("/instances/site/edit", url.Values{"memory_max": {"300M"}, "cpu_quota": {"40%"}, "owner_id": {fmt.Sprint(e.bob.ID)}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("edit: %s", r)
	}
	v, _ := e.svc.Get(context.Background(), rootP, "site")
	if v.Spec.MemoryMax != "300M" || v.Spec.CPUQuota != "40%" || v.OwnerID == nil || *v.OwnerID != e.bob.ID {
		t.Errorf("after edit: %+v owner %v", v.Spec, v.OwnerID)
	}
	if r := a.postForm("/instances/site/edit", url.Values{"memory_max": {"-1"}}); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(string(r.body), `data-testid="error-memory_max"`) {
		t.Errorf("bad edit: %d", r.status)
	}
	// Remove needs the id typed.
	if r := a.postForm("/instances/site/remove", url.Values{"confirm": {"sit"}}); r.status != http.StatusUnprocessableEntity {
		t.Errorf("remove with a wrong confirmation: %d", r.status)
	}
	if _, err := e.svc.Get(context.Background(), rootP, "site"); err != nil {
		t.Fatalf("removed without confirmation")
	}
	if r := a.postForm("/instances/site/remove", url.Values{"confirm": {"site"}}); r.status != http.StatusSeeOther {
		t.Errorf("remove: %s", r)
	}
	if _, err := e.svc.Get(context.Background(), rootP, "site"); err == nil {
		t.Errorf("still there after remove")
	}
}

func TestInstanceValuesEscaped(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("site", nil)
	evil := `<script>alert(1)</script>` + "\x1b[31m"
	st, _ := e.fb.Status(context.Background(), "site")
	st.Notes = []string{evil}
	st.Seq = 0
	views, err := e.svc.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.fb.Publish(st)
	for v := range views {
		if v.ID == "site" && len(v.Status.Notes) == 1 {
			break
		}
	}
	a := e.login("ann")
	body := string(a.get("/instances/site").body)
	if strings.Contains(body, "<script>alert(1)") {
		t.Fatalf("an instance's text reached the page as HTML")
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the note is not shown escaped")
	}
}

func TestBearerTokens(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("alice-site", &e.alice)
	e.mkInstance("bob-site", &e.bob)
	a := e.login("alice")
	// Post, redirect, get: the token is on the page the post redirects
	// to, once; a reload shows it no more and makes no second token.
	r := a.postForm("/tokens", url.Values{"name": {"deploy"}})
	loc := r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/tokens?shown=") {
		t.Fatalf("make token: %s (Location %q), want 303 to the page that shows it", r, loc)
	}
	if strings.Contains(string(r.body), `data-testid="token-value"`) {
		t.Errorf("the token is in the redirect's body")
	}
	if b := e.login("bob"); strings.Contains(string(b.get(loc).body), `data-testid="token-value"`) {
		t.Errorf("another user's view of %s shows the token", loc)
	}
	shown := a.get(loc)
	m := regexpFind(`data-testid="token-value">(ikb_[a-z0-9]+)<`, string(shown.body))
	if m == "" {
		t.Fatalf("no token shown on %s: %s", loc, shown)
	}
	if again := a.get(loc); strings.Contains(string(again.body), m) {
		t.Errorf("a reload of %s shows the token again", loc)
	}
	api := func(method, path, token string) int {
		req, _ := http.NewRequest(method, e.base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := api("GET", "/api/v1/instances", ""); s != http.StatusUnauthorized {
		t.Errorf("no token: %d", s)
	}
	if s := api("GET", "/api/v1/instances/alice-site", m); s != http.StatusOK {
		t.Errorf("token, own instance: %d", s)
	}
	if s := api("GET", "/api/v1/instances/bob-site", m); s != http.StatusNotFound {
		t.Errorf("token, bob's instance: %d", s)
	}
	if s := api("POST", "/api/v1/instances/alice-site/stop", m); s != http.StatusOK {
		t.Errorf("token stops own instance (no CSRF needed): %d", s)
	}
	if s := api("POST", "/api/v1/instances/alice-site/kill", m); s != http.StatusForbidden {
		t.Errorf("customer token kills: %d", s)
	}
	// A browser session on the API needs its CSRF token for changes.
	req, _ := http.NewRequest("POST", e.base+"/api/v1/instances/alice-site/start", nil)
	req.Header.Set("Origin", e.base)
	if r := a.do(req); r.status != http.StatusForbidden {
		t.Errorf("session API post without CSRF: %s", r)
	}
	req, _ = http.NewRequest("POST", e.base+"/api/v1/instances/alice-site/start", nil)
	req.Header.Set("X-CSRF-Token", a.csrf)
	if r := a.do(req); r.status != http.StatusOK {
		t.Errorf("session API post with CSRF: %s", r)
	}
	// Revoked: stops working.
	toks, _ := e.acc.Tokens(context.Background(), rootP, "alice")
	if len(toks) != 1 {
		t.Fatalf("tokens %v", toks)
	}
	if r := a.postForm(fmt.Sprintf("/tokens/%d/revoke", toks[0].ID), url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("revoke: %s", r)
	}
	if s := api("GET", "/api/v1/instances", m); s != http.StatusUnauthorized {
		t.Errorf("revoked token: %d", s)
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newPanelEnv(t)
	res, err := http.Get(e.base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil || res.StatusCode != 200 || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %d %v", res.StatusCode, err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" /api/v1"+path] = true
		}
	}
	registered := map[string]bool{}
	for _, r := range e.srv.Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") || r.Path == "/api/v1/openapi.json" || strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		p := r.Path
		for _, seg := range []string{"id", "tid"} {
			p = strings.ReplaceAll(p, ":"+seg, "{"+seg+"}")
		}
		registered[r.Method+" "+p] = true
	}
	for k := range registered {
		if !documented[k] {
			t.Errorf("route %s is not in openapi.json", k)
		}
	}
	for k := range documented {
		if !registered[k] {
			t.Errorf("openapi.json documents %s, which the server does not serve", k)
		}
	}
}

var rootP = rootPrincipal()

func TestLoginNextStaysOnSite(t *testing.T) {
	e := newPanelEnv(t)
	for next, want := range map[string]string{
		"/instances/x?y=1": "/instances/x?y=1", "//evil.example/": "/", "/\t/evil.example": "/", "/%09/evil.example": "/%09/evil.example",
		"https://evil.example/": "/", "/\\evil.example": "/", "javascript:alert(1)": "/", "": "/", "/ok path": "/",
	} {
		r := e.browser().postForm("/login", url.Values{"username": {"alice"}, "password": {testPassword}, "next": {next}})
		if r.status != http.StatusSeeOther || r.header.Get("Location") != want {
			t.Errorf("next %q: %d to %q, want %q", next, r.status, r.header.Get("Location"), want)
		}
	}
}

func TestFormsKeepValuesOnConflicts(t *testing.T) {
	e := newPanelEnv(t)
	e.mkInstance("site", nil)
	a := e.login("ann")
	// A taken id: 422 with the rule beside the id, not an error page.
	r := a.postForm("/instances", url.Values{"id": {"site"}, "memory_max": {"300M"}})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `data-testid="error-id"`) || !strings.Contains(string(r.body), `value="300M"`) {
		t.Errorf("create with a taken id: %d", r.status)
	}
	// An unknown owner is refused before anything is applied.
	r = a.postForm("/instances/site/edit", url.Values{"memory_max": {"600M"}, "owner_id": {"9999"}})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `data-testid="error-owner_id"`) {
		t.Errorf("edit with an unknown owner: %d", r.status)
	}
	if v, _ := e.svc.Get(context.Background(), rootP, "site"); v.Spec.MemoryMax != "512M" {
		t.Errorf("a refused edit changed memory_max to %s", v.Spec.MemoryMax)
	}
}

// A generated password (a new user's, a reset one) is shown once, on the
// page the form post redirects to: a reload shows it no more, and never
// posts the form again.
func TestGeneratedPasswordShownOnce(t *testing.T) {
	e := newPanelEnv(t)
	a := e.login("ann")
	r := a.postForm("/users", url.Values{"name": {"carol"}, "role": {"customer"}})
	loc := r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/users?shown=") {
		t.Fatalf("add user: %s (Location %q), want 303 to the page that shows the password", r, loc)
	}
	pw := regexpFind(`data-testid="generated-password">([^<]+)<`, string(a.get(loc).body))
	if pw == "" {
		t.Fatalf("no password shown on %s", loc)
	}
	if strings.Contains(string(a.get(loc).body), pw) {
		t.Errorf("a reload of %s shows the password again", loc)
	}
	if r := e.browser().postForm("/login", url.Values{"username": {"carol"}, "password": {pw}}); r.status != http.StatusSeeOther {
		t.Errorf("the password shown does not sign carol in: %s", r)
	}
	users, _ := e.acc.Users(context.Background(), rootP)
	var id uint
	for _, u := range users {
		if u.Name == "carol" {
			id = u.ID
		}
	}
	r = a.postForm(fmt.Sprintf("/users/%d/password", id), url.Values{})
	loc = r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/users?shown=") {
		t.Fatalf("reset password: %s (Location %q)", r, loc)
	}
	if pw2 := regexpFind(`data-testid="generated-password">([^<]+)<`, string(a.get(loc).body)); pw2 == "" || pw2 == pw {
		t.Errorf("reset password shown %q (old %q)", pw2, pw)
	}
}

// accessFront is a front door whose sites' access logs are given lines.
type accessFront struct {
	mu    sync.Mutex
	lines map[procmgr.InstanceID][]string
}

func (f *accessFront) Publish(context.Context, procmgr.Spec) error        { return nil }
func (f *accessFront) Withdraw(context.Context, procmgr.InstanceID) error { return nil }
func (f *accessFront) Sync(context.Context, []procmgr.Spec) error         { return nil }
func (f *accessFront) Probe(context.Context, procmgr.Spec) procmgr.HTTPProbe {
	return procmgr.HTTPProbe{}
}
func (f *accessFront) Up(context.Context) (bool, string) { return true, "test" }

func (f *accessFront) AccessLog(id procmgr.InstanceID, _ time.Time, n int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lines[id]), nil
}

// add appends a request to id's log.
func (f *accessFront) add(id procmgr.InstanceID, line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines[id] = append(f.lines[id], line)
}

// The instance page shows the site's last requests, as text (a visitor
// chooses its User-Agent), to the people who may see the instance; an
// instance without a domain says it has no site.
func TestInstancePageShowsVisitorsRequests(t *testing.T) {
	evil := `127.0.0.1 - - [02/Dec/2026:16:15:55 +0000] "GET / HTTP/1.1" 200 51959 "-" "<script>alert(1)</script>" 0.537`
	front := &accessFront{lines: map[procmgr.InstanceID][]string{"site": {`127.0.0.1 - - [02/Dec/2026:16:15:54 +0000] "GET /first HTTP/1.1" 200 1 "-" "curl" 0.001`, evil}}}
	e := newPanelEnvFront(t, nil, front)
	ctx := context.Background()
	root := auth.Principal{Name: "root", Role: auth.RoleAdmin}
	uid := e.alice.ID
	if _, err := e.svc.Create(ctx, root, instances.CreateRequest{ID: "site", OwnerID: &uid, Spec: procmgr.SpecInput{Domains: []string{"site.example.test"}}}); err != nil {
		t.Fatal(err)
	}
	e.mkInstance("nodomain", nil)

	for _, who := range []string{"ann", "sam", "alice"} {
		body := string(e.login(who).get("/instances/site").body)
		if !strings.Contains(body, `data-testid="access-log"`) || !strings.Contains(body, "GET /first HTTP/1.1") {
			t.Errorf("%s: the instance page does not show the site's requests", who)
		}
		if strings.Contains(body, "<script>alert(1)") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: a request's text is not shown escaped", who)
		}
		if strings.Index(body, "GET /first") > strings.Index(body, "alert(1)") {
			t.Errorf("%s: the requests are not oldest first", who)
		}
	}
	if r := e.login("bob").get("/instances/site"); r.status != http.StatusNotFound {
		t.Errorf("bob, who does not own the site, gets its page: %d", r.status)
	}
	if body := string(e.login("ann").get("/instances/nodomain").body); !strings.Contains(body, "this instance has no domain") {
		t.Errorf("an instance without a domain does not say it has no site")
	}
}
