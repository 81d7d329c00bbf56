package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/instances/fakebackend"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web"
)

func TestHealthz(t *testing.T) {
	e := newWebEnv(t, nil)
	var body struct {
		OK      bool   `json:"ok"`
		Backend string `json:"backend"`
		Version string `json:"version"`
	}
	e.want(e.do("GET", "/healthz", nil), http.StatusOK, &body)
	if !body.OK || body.Backend != fakebackend.Name || body.Version != "test-1" {
		t.Errorf("healthz %+v", body)
	}
}

// Over TCP nobody is identified: the API refuses with a message that says
// how to get in, and /healthz still answers.
func TestTCPIsUnauthorized(t *testing.T) {
	stub := &stubPrincipals{p: auth.Principal{Name: "root", Role: auth.RoleAdmin}}
	e := newWebEnv(t, stub)
	e.create("wp-a", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.serve(ln)
	tcp := &http.Client{}
	t.Cleanup(tcp.CloseIdleConnections)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v1/instances"},
		{"GET", "/api/v1/instances/wp-a"},
		{"POST", "/api/v1/instances/wp-a/stop"},
		{"DELETE", "/api/v1/instances/wp-a"},
		{"GET", "/api/v1/audit"},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+ln.Addr().String()+tc.path, nil)
		res, err := tcp.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		r := response{status: res.StatusCode, header: res.Header, body: data}
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s %s over TCP: %s, want 401", tc.method, tc.path, r)
			continue
		}
		if eb := r.errorBody(t); !strings.Contains(eb.Error, "Unix socket") {
			t.Errorf("401 message %q does not say how to get in", eb.Error)
		}
	}
	if len(stub.seen()) != 0 {
		t.Errorf("a TCP request was resolved to a principal: uids %v", stub.seen())
	}
	if e.fb.State("wp-a") != procmgr.StateRunning || e.fb.Calls(fakebackend.OpDeprovision) != 0 {
		t.Errorf("a refused TCP request acted: %+v", e.fb.History())
	}
	res, err := tcp.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("healthz over TCP: %d", res.StatusCode)
	}
}

// The peer's real uid reaches the principal lookup.
func TestUnixPeerUID(t *testing.T) {
	stub := &stubPrincipals{p: auth.Principal{Name: "root", Role: auth.RoleAdmin}}
	e := newWebEnv(t, stub)
	e.want(e.do("GET", "/api/v1/instances", nil), http.StatusOK, nil)
	if uids := stub.seen(); len(uids) != 1 || uids[0] != os.Getuid() {
		t.Errorf("principal looked up for uids %v, want [%d]", uids, os.Getuid())
	}
	// A uid that is no panel user is refused.
	stub.set(auth.Principal{}, fmt.Errorf("%w: 0", auth.ErrUnknownUID))
	r := e.do("GET", "/api/v1/instances", nil)
	if r.status != http.StatusForbidden {
		t.Fatalf("unknown uid: %s, want 403", r)
	}
	if eb := r.errorBody(t); !strings.Contains(eb.Error, "not an enabled panel user") {
		t.Errorf("message %q", eb.Error)
	}
}

func TestAPIHappyPath(t *testing.T) {
	e := newWebEnv(t, nil)

	// Create.
	var v instances.View
	e.want(e.do("POST", "/api/v1/instances", map[string]any{
		"id": "wp-test-001", "spec": map[string]any{"cms": "wordpress", "max_children": "6", "env": []string{"APP_ENV=prod"}},
	}), http.StatusCreated, &v)
	if v.ID != "wp-test-001" || v.Phase != instances.PhaseReady || v.Desired != instances.DesiredRunning ||
		v.Status.State != procmgr.StateRunning || v.Status.MainPID == 0 || v.CMS != "wordpress" || v.Spec.MaxChildren != "6" {
		t.Errorf("created view %+v", v)
	}
	firstPID := v.Status.MainPID
	e.create("other", nil)

	// List and get.
	var list []instances.View
	e.want(e.do("GET", "/api/v1/instances", nil), http.StatusOK, &list)
	if len(list) != 2 || list[0].ID != "other" || list[1].ID != "wp-test-001" {
		t.Errorf("list %+v", list)
	}
	e.want(e.do("GET", "/api/v1/instances/wp-test-001", nil), http.StatusOK, &v)
	if v.Status.MainPID != firstPID || v.User != "ikabud-wp-test-001" {
		t.Errorf("get %+v", v)
	}

	// Power.
	e.want(e.do("POST", "/api/v1/instances/wp-test-001/stop", nil), http.StatusOK, &v)
	if v.Desired != instances.DesiredStopped || v.Status.State != procmgr.StateStopped {
		t.Errorf("after stop: %s %s", v.Desired, v.Status.State)
	}
	e.want(e.do("POST", "/api/v1/instances/wp-test-001/start", nil), http.StatusOK, &v)
	if v.Desired != instances.DesiredRunning || v.Status.State != procmgr.StateRunning || v.Status.MainPID == firstPID {
		t.Errorf("after start: %s %s pid %d", v.Desired, v.Status.State, v.Status.MainPID)
	}
	pid := v.Status.MainPID
	e.want(e.do("POST", "/api/v1/instances/wp-test-001/restart", nil), http.StatusOK, &v)
	if v.Status.MainPID == pid {
		t.Errorf("restart kept pid %d", pid)
	}
	pid = v.Status.MainPID
	e.want(e.do("POST", "/api/v1/instances/wp-test-001/reload", nil), http.StatusOK, &v)
	if v.Status.MainPID != pid {
		t.Errorf("reload changed pid")
	}

	// Settings.
	e.want(e.do("PATCH", "/api/v1/instances/wp-test-001", map[string]any{"memory_max": "1G"}), http.StatusOK, &v)
	if v.Spec.MemoryMax != "1G" || v.Spec.MaxChildren != "6" || v.Status.Limits.MemoryMax != 1<<30 {
		t.Errorf("after patch: spec %+v limits %+v", v.Spec, v.Status.Limits)
	}
	if e.fb.CallsFor(fakebackend.OpSetLimits, "wp-test-001") != 1 {
		t.Errorf("a limits-only PATCH did not use SetLimits: %+v", e.fb.History())
	}

	// Kill: a signal, or TERM by default.
	e.want(e.do("POST", "/api/v1/instances/wp-test-001/kill", map[string]string{"signal": "HUP"}), http.StatusAccepted, nil)
	e.want(e.do("POST", "/api/v1/instances/wp-test-001/kill", nil), http.StatusAccepted, nil)
	var sigs []procmgr.Signal
	for _, c := range e.fb.History() {
		if c.Op == fakebackend.OpKill {
			sigs = append(sigs, c.Signal)
		}
	}
	if !slices.Equal(sigs, []procmgr.Signal{procmgr.SigHUP, procmgr.SigTERM}) {
		t.Errorf("signals %v, want [HUP TERM]", sigs)
	}

	// Health.
	var h procmgr.Health
	e.want(e.do("GET", "/api/v1/instances/wp-test-001/health", nil), http.StatusOK, &h)
	if !h.Healthy || h.Pool == nil {
		t.Errorf("health %+v", h)
	}

	// Logs: an empty log is [], not null.
	r := e.do("GET", "/api/v1/instances/wp-test-001/logs", nil)
	e.want(r, http.StatusOK, nil)
	if strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("empty logs body %q, want []", r.body)
	}
	for i := range 5 {
		e.fb.AddLog("wp-test-001", fmt.Sprintf("NOTICE: line %d", i))
	}
	var lines []procmgr.LogLine
	e.want(e.do("GET", "/api/v1/instances/wp-test-001/logs?n=2", nil), http.StatusOK, &lines)
	if len(lines) != 2 || lines[0].Text != "NOTICE: line 3" || lines[1].Text != "NOTICE: line 4" {
		t.Errorf("logs %+v", lines)
	}
	e.want(e.do("GET", "/api/v1/instances/wp-test-001/logs", nil), http.StatusOK, &lines)
	if len(lines) != 5 {
		t.Errorf("logs with the default n: %d lines", len(lines))
	}

	// Start-all.
	e.want(e.do("POST", "/api/v1/instances/other/stop", nil), http.StatusOK, nil)
	var sa struct {
		Started []string          `json:"started"`
		Failed  []json.RawMessage `json:"failed"`
	}
	e.want(e.do("POST", "/api/v1/instances/start-all", nil), http.StatusOK, &sa)
	if !slices.Equal(sa.Started, []string{"other"}) || sa.Failed == nil || len(sa.Failed) != 0 {
		t.Errorf("start-all started %v, failed %v; want [other] and an empty list", sa.Started, sa.Failed)
	}

	// Audit: the service's own view, snake_case JSON.
	var raw []map[string]any
	e.want(e.do("GET", "/api/v1/audit?instance=wp-test-001&limit=1", nil), http.StatusOK, &raw)
	if len(raw) != 1 || raw[0]["instance_id"] == nil || raw[0]["actor"] != "root" || raw[0]["ID"] != nil {
		t.Errorf("audit JSON %v, want snake_case fields", raw)
	}
	var evs []instances.AuditEntry
	e.want(e.do("GET", "/api/v1/audit", nil), http.StatusOK, &evs)
	if len(evs) < 10 {
		t.Errorf("audit has %d events", len(evs))
	}
	e.want(e.do("GET", "/api/v1/audit?instance=wp-test-001&limit=3", nil), http.StatusOK, &evs)
	if len(evs) != 3 {
		t.Errorf("audit limit 3: %d events", len(evs))
	}
	for _, ev := range evs {
		if ev.InstanceID != "wp-test-001" || ev.Actor != "root" {
			t.Errorf("audit event %+v", ev)
		}
	}
	if evs[0].Action != "kill" || evs[0].ID < evs[1].ID {
		t.Errorf("audit not newest first: %+v", evs)
	}

	// Remove with purge.
	r = e.do("DELETE", "/api/v1/instances/wp-test-001?purge=true", nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("delete: %s", r)
	}
	var purged []bool
	for _, c := range e.fb.History() {
		if c.Op == fakebackend.OpDeprovision {
			purged = append(purged, c.Purge)
		}
	}
	if !slices.Equal(purged, []bool{true}) {
		t.Errorf("deprovision purge flags %v, want [true]", purged)
	}
	e.want(e.do("GET", "/api/v1/instances/wp-test-001", nil), http.StatusNotFound, nil)
	r = e.do("DELETE", "/api/v1/instances/other", nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("delete without purge: %s", r)
	}
	for _, c := range e.fb.History() {
		if c.Op == fakebackend.OpDeprovision && c.ID == "other" && c.Purge {
			t.Errorf("delete without purge purged")
		}
	}
	e.want(e.do("GET", "/api/v1/instances", nil), http.StatusOK, &list)
	if len(list) != 0 {
		t.Errorf("list after deletes: %+v", list)
	}
}

func TestAPIInvalidSpec(t *testing.T) {
	e := newWebEnv(t, nil)
	r := e.do("POST", "/api/v1/instances", map[string]any{
		"id": "Bad_Id", "spec": map[string]any{"cms": "typo3", "max_children": "0"},
	})
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid spec: %s, want 422", r)
	}
	eb := r.errorBody(t)
	got := map[string]web.FieldError{}
	for _, f := range eb.Fields {
		got[f.Field] = f
	}
	for field, value := range map[string]string{"id": "Bad_Id", "cms": "typo3", "max_children": "0"} {
		f, ok := got[field]
		if !ok {
			t.Errorf("fields %+v lack %s", eb.Fields, field)
			continue
		}
		if f.Value != value || f.Rule == "" {
			t.Errorf("field %s: value %q rule %q, want value %q and a rule", field, f.Value, f.Rule, value)
		}
	}
	// A PATCH that breaks a rule names the field too.
	e.create("wp-a", nil)
	r = e.do("PATCH", "/api/v1/instances/wp-a", map[string]any{"memory_limit": "2G", "memory_max": "1G"})
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid patch: %s", r)
	}
	if eb := r.errorBody(t); len(eb.Fields) != 1 || eb.Fields[0].Field != "memory_limit" {
		t.Errorf("patch fields %+v", eb.Fields)
	}
	if rows, _ := e.db.ListInstances(context.Background()); len(rows) != 1 {
		t.Errorf("%d rows, want only wp-a", len(rows))
	}
}

func TestAPIErrors(t *testing.T) {
	e := newWebEnv(t, nil)
	e.create("wp-a", nil)

	for _, tc := range []struct {
		name         string
		method, path string
		body         any
		status       int
		field        string // the field the 422 must name
	}{
		{"unknown id", "GET", "/api/v1/instances/wp-none", nil, http.StatusNotFound, ""},
		{"unknown id start", "POST", "/api/v1/instances/wp-none/start", nil, http.StatusNotFound, ""},
		{"unknown id delete", "DELETE", "/api/v1/instances/wp-none", nil, http.StatusNotFound, ""},
		{"unknown id logs", "GET", "/api/v1/instances/wp-none/logs", nil, http.StatusNotFound, ""},
		{"unknown id access log", "GET", "/api/v1/instances/wp-none/access-log", nil, http.StatusNotFound, ""},
		{"malformed id", "GET", "/api/v1/instances/Bad_Id", nil, http.StatusUnprocessableEntity, "id"},
		{"duplicate", "POST", "/api/v1/instances", map[string]any{"id": "wp-a"}, http.StatusConflict, ""},
		{"unknown field", "POST", "/api/v1/instances", `{"id":"wp-b","spek":{}}`, http.StatusBadRequest, ""},
		{"unknown spec field", "POST", "/api/v1/instances", `{"id":"wp-b","spec":{"max_childs":"3"}}`, http.StatusBadRequest, ""},
		{"unknown patch field", "PATCH", "/api/v1/instances/wp-a", `{"max_childs":"3"}`, http.StatusBadRequest, ""},
		{"malformed json", "POST", "/api/v1/instances", `{"id":`, http.StatusBadRequest, ""},
		{"wrong json type", "POST", "/api/v1/instances", `{"id":5}`, http.StatusBadRequest, ""},
		{"kill bad signal", "POST", "/api/v1/instances/wp-a/kill", map[string]string{"signal": "SEGV"}, http.StatusUnprocessableEntity, "signal"},
		{"kill numeric signal", "POST", "/api/v1/instances/wp-a/kill", map[string]string{"signal": "9"}, http.StatusUnprocessableEntity, "signal"},
		{"kill unknown field", "POST", "/api/v1/instances/wp-a/kill", `{"sig":"TERM"}`, http.StatusBadRequest, ""},
		{"logs n=0", "GET", "/api/v1/instances/wp-a/logs?n=0", nil, http.StatusUnprocessableEntity, "n"},
		{"logs n=abc", "GET", "/api/v1/instances/wp-a/logs?n=abc", nil, http.StatusUnprocessableEntity, "n"},
		{"logs n too big", "GET", "/api/v1/instances/wp-a/logs?n=10001", nil, http.StatusUnprocessableEntity, "n"},
		{"access log n=0", "GET", "/api/v1/instances/wp-a/access-log?n=0", nil, http.StatusUnprocessableEntity, "n"},
		{"follow n=0", "GET", "/api/v1/instances/wp-a/logs?n=0&follow=1", nil, http.StatusUnprocessableEntity, "n"},
		{"audit limit=0", "GET", "/api/v1/audit?limit=0", nil, http.StatusUnprocessableEntity, "limit"},
		{"audit bad instance", "GET", "/api/v1/audit?instance=wp-none", nil, http.StatusNotFound, ""},
		{"no such route", "GET", "/api/v1/nothing", nil, http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("%s %s: %s, want %d", tc.method, tc.path, r, tc.status)
			}
			eb := r.errorBody(t)
			if tc.field != "" && (len(eb.Fields) != 1 || eb.Fields[0].Field != tc.field || eb.Fields[0].Rule == "") {
				t.Errorf("fields %+v, want one naming %s with a rule", eb.Fields, tc.field)
			}
		})
	}
	// None of it reached the backend beyond the one create.
	if n := e.fb.TotalCalls(); n != 1 {
		t.Errorf("refused requests reached the backend: %+v", e.fb.History())
	}

	// Backend conflicts: reload and kill of a stopped instance.
	e.want(e.do("POST", "/api/v1/instances/wp-a/stop", nil), http.StatusOK, nil)
	e.want(e.do("POST", "/api/v1/instances/wp-a/reload", nil), http.StatusConflict, nil)
	e.want(e.do("POST", "/api/v1/instances/wp-a/kill", map[string]string{"signal": "TERM"}), http.StatusConflict, nil)

	// A backend failure that is none of the sentinels is a 500 with the message.
	e.fb.FailNext(fakebackend.OpStop, errors.New("dbus: connection reset"))
	r := e.do("POST", "/api/v1/instances/wp-a/stop", nil)
	if r.status != http.StatusInternalServerError || !strings.Contains(r.errorBody(t).Error, "connection reset") {
		t.Errorf("backend failure: %s", r)
	}
}

// A create whose owner is no user is the client's mistake.
func TestAPICreateUnknownOwner(t *testing.T) {
	e := newWebEnv(t, nil)
	r := e.do("POST", "/api/v1/instances", map[string]any{"id": "wp-a", "owner_id": 4242})
	if r.status != http.StatusUnprocessableEntity {
		t.Errorf("create with an unknown owner: %s, want 422 (store.ErrInvalid is not mapped)", r)
	}
}

func TestAPIBodyLimit(t *testing.T) {
	e := newWebEnv(t, nil)
	big := `{"id":"wp-a","spec":{"cms":"` + strings.Repeat("x", 70<<10) + `"}}`
	r := e.do("POST", "/api/v1/instances", big)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("body over 64K with a length: %s, want 413", r)
	}
	// Without a Content-Length (chunked) the limit is found while reading.
	r = e.doReader("POST", "/api/v1/instances", io.MultiReader(strings.NewReader(big)))
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over 64K: %s, want 413", r)
	}
	if n := e.fb.TotalCalls(); n != 0 {
		t.Errorf("oversize requests reached the backend")
	}
	// Just under the limit is read (and refused for what it says).
	ok := `{"id":"wp-a","spec":{"cms":"` + strings.Repeat("x", 60<<10) + `"}}`
	if r := e.do("POST", "/api/v1/instances", ok); r.status != http.StatusUnprocessableEntity {
		t.Errorf("body under 64K: %s, want 422 for the cms", r)
	}
}

// The web layer maps the service's answers for support and customers: 403
// for what the role may not do, 404 for what the customer may not see.
func TestAPIPermissions(t *testing.T) {
	stub := &stubPrincipals{}
	e := newWebEnv(t, stub)
	alice := e.user("alice", auth.RoleCustomer)
	bob := e.user("bob", auth.RoleCustomer)
	sue := e.user("sue", auth.RoleSupport)
	e.create("alice-wp", &alice.UserID)
	e.create("bob-wp", &bob.UserID)

	t.Run("support", func(t *testing.T) {
		stub.set(sue, nil)
		var list []instances.View
		e.want(e.do("GET", "/api/v1/instances", nil), http.StatusOK, &list)
		if len(list) != 2 {
			t.Errorf("support lists %d", len(list))
		}
		e.want(e.do("GET", "/api/v1/instances/bob-wp", nil), http.StatusOK, nil)
		e.want(e.do("GET", "/api/v1/instances/bob-wp/logs", nil), http.StatusOK, nil)
		e.want(e.do("GET", "/api/v1/instances/bob-wp/access-log", nil), http.StatusOK, nil)
		e.want(e.do("GET", "/api/v1/instances/bob-wp/health", nil), http.StatusOK, nil)
		e.want(e.do("GET", "/api/v1/audit", nil), http.StatusOK, nil)
		for _, tc := range []struct {
			method, path string
			body         any
		}{
			{"POST", "/api/v1/instances/bob-wp/start", nil},
			{"POST", "/api/v1/instances/bob-wp/stop", nil},
			{"POST", "/api/v1/instances/bob-wp/restart", nil},
			{"POST", "/api/v1/instances/bob-wp/reload", nil},
			{"POST", "/api/v1/instances/bob-wp/kill", nil},
			{"PATCH", "/api/v1/instances/bob-wp", map[string]string{"max_children": "3"}},
			{"DELETE", "/api/v1/instances/bob-wp", nil},
			{"POST", "/api/v1/instances", map[string]string{"id": "sue-wp"}},
		} {
			if r := e.do(tc.method, tc.path, tc.body); r.status != http.StatusForbidden {
				t.Errorf("support %s %s: %s, want 403", tc.method, tc.path, r)
			} else {
				r.errorBody(t)
			}
		}
	})

	t.Run("customer", func(t *testing.T) {
		stub.set(alice, nil)
		var list []instances.View
		e.want(e.do("GET", "/api/v1/instances", nil), http.StatusOK, &list)
		if len(list) != 1 || list[0].ID != "alice-wp" {
			t.Errorf("alice lists %+v", list)
		}
		for _, tc := range []struct{ method, path string }{
			{"GET", "/api/v1/instances/bob-wp"},
			{"POST", "/api/v1/instances/bob-wp/start"},
			{"POST", "/api/v1/instances/bob-wp/stop"},
			{"GET", "/api/v1/instances/bob-wp/logs"},
			{"GET", "/api/v1/instances/bob-wp/logs?follow=1"},
			{"GET", "/api/v1/instances/bob-wp/access-log"},
			{"GET", "/api/v1/instances/bob-wp/health"},
			{"DELETE", "/api/v1/instances/bob-wp"},
			{"GET", "/api/v1/audit?instance=bob-wp"},
		} {
			if r := e.do(tc.method, tc.path, nil); r.status != http.StatusNotFound {
				t.Errorf("alice %s %s: %s, want 404", tc.method, tc.path, r)
			}
		}
		var v instances.View
		e.want(e.do("POST", "/api/v1/instances/alice-wp/stop", nil), http.StatusOK, &v)
		if v.Desired != instances.DesiredStopped {
			t.Errorf("alice's stop: %+v", v.Desired)
		}
		e.want(e.do("POST", "/api/v1/instances/alice-wp/start", nil), http.StatusOK, nil)
		e.want(e.do("POST", "/api/v1/instances/alice-wp/restart", nil), http.StatusOK, nil)
		e.want(e.do("GET", "/api/v1/instances/alice-wp/logs", nil), http.StatusOK, nil)
		e.want(e.do("GET", "/api/v1/instances/alice-wp/access-log", nil), http.StatusOK, nil)
		e.want(e.do("GET", "/api/v1/audit?instance=alice-wp", nil), http.StatusOK, nil)
		for _, tc := range []struct {
			method, path string
			body         any
		}{
			{"PATCH", "/api/v1/instances/alice-wp", map[string]string{"memory_max": "8G"}},
			{"POST", "/api/v1/instances/alice-wp/kill", map[string]string{"signal": "KILL"}},
			{"DELETE", "/api/v1/instances/alice-wp?purge=true", nil},
			{"POST", "/api/v1/instances", map[string]any{"id": "alice-two", "owner_id": alice.UserID}},
			{"GET", "/api/v1/audit", nil},
		} {
			if r := e.do(tc.method, tc.path, tc.body); r.status != http.StatusForbidden {
				t.Errorf("alice %s %s: %s, want 403", tc.method, tc.path, r)
			}
		}
		if e.fb.Calls(fakebackend.OpDeprovision)+e.fb.Calls(fakebackend.OpKill)+e.fb.Calls(fakebackend.OpSetLimits) != 0 {
			t.Errorf("refused requests reached the backend: %+v", e.fb.History())
		}
		if e.fb.State("bob-wp") != procmgr.StateRunning {
			t.Errorf("bob's instance changed: %s", e.fb.State("bob-wp"))
		}
	})
}
