package procmgr_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/procmgr"
)

func TestLayoutValidate(t *testing.T) {
	if err := procmgr.DefaultLayout().Validate(); err != nil {
		t.Fatalf("DefaultLayout: %v", err)
	}
	ok := []func(*procmgr.Layout){
		func(l *procmgr.Layout) { l.WebUser = "" },
		func(l *procmgr.Layout) { l.WebUser = "nginx" },
		func(l *procmgr.Layout) { l.WebUser = "_www" },
		func(l *procmgr.Layout) { l.UnitPrefix = "a" },
		func(l *procmgr.Layout) { l.UnitPrefix = "ikabud-test-1234" }, // 16
		func(l *procmgr.Layout) { l.InstancesRoot = "/var/lib/ikabud.d/inst_1" },
		func(l *procmgr.Layout) { l.RuntimeRoot = "/run/ikabud-test" },
	}
	for i, mod := range ok {
		l := procmgr.DefaultLayout()
		mod(&l)
		if err := l.Validate(); err != nil {
			t.Errorf("valid layout %d (%+v): %v", i, l, err)
		}
	}

	bad := []struct {
		field string
		set   func(*procmgr.Layout, string)
		vals  []string
	}{
		{"instances-root", func(l *procmgr.Layout, v string) { l.InstancesRoot = v }, nil},
		{"config-root", func(l *procmgr.Layout, v string) { l.ConfigRoot = v }, nil},
		{"unit-dir", func(l *procmgr.Layout, v string) { l.UnitDir = v }, nil},
		{"runtime-root", func(l *procmgr.Layout, v string) { l.RuntimeRoot = v }, []string{
			"/run", "/run/a/b", "/var/run/ikabud", "/tmp/ikabud", "/runx/ikabud", "/run/ikabud/",
		}},
		{"web-user", func(l *procmgr.Layout, v string) { l.WebUser = v }, []string{
			"www data", "WWW", "1www", "www;x", "www\n", strings.Repeat("w", 33), "%u", "$USER",
		}},
		{"unit-prefix", func(l *procmgr.Layout, v string) { l.UnitPrefix = v }, []string{
			"", "Ikabud", "1kabud", "-ikabud", "ika@bud", "ikabud@", "ika.bud", "ika_bud", "ika bud", "ika/bud", "%i", "ikabud\n",
			strings.Repeat("a", 17), "ikabud.service",
		}},
	}
	paths := []string{
		"", "srv/ikabud", "./srv", "relative", "/", "//srv", "/srv//ikabud", "/srv/ikabud/", "/srv/my dir", "/srv/ikabud ",
		"/srv/%i", "/srv/%h/x", "/srv/../etc", "/srv/..", "/..", "/srv/./x", "/srv/.", "/srv/$HOME", "/srv/a;b", "/srv/a\nb",
		"/srv/a\rb", `/srv/a\b`, `/srv/x\`, "/srv/'x'", `/srv/"x"`, "/srv/café", "/srv/a:b", "/srv/a=b", "/srv/a\x00",
	}
	for _, b := range bad {
		vals := b.vals
		if vals == nil {
			vals = paths
		} else if b.field == "runtime-root" {
			vals = append(vals, paths...)
		}
		for _, v := range vals {
			l := procmgr.DefaultLayout()
			b.set(&l, v)
			err := l.Validate()
			if err == nil {
				t.Errorf("%s=%q: Validate succeeded, want an error", b.field, v)
				continue
			}
			var fe *procmgr.FieldError
			if !errors.Is(err, procmgr.ErrInvalid) || !errors.As(err, &fe) || fe.Field != b.field || fe.Value != v {
				t.Errorf("%s=%q: got %v, want a FieldError for %s", b.field, v, err, b.field)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("%s=%q: message has a raw line break: %q", b.field, v, err.Error())
			}
		}
	}
}

func TestLayoutPaths(t *testing.T) {
	l := procmgr.DefaultLayout()
	id := procmgr.InstanceID("wp-test-001")
	for _, c := range []struct{ got, want string }{
		{l.InstanceDir(id), "/srv/ikabud/instances/wp-test-001"},
		{l.PublicDir(id), "/srv/ikabud/instances/wp-test-001/public"},
		{l.TmpDir(id), "/srv/ikabud/instances/wp-test-001/tmp"},
		{l.SessionsDir(id), "/srv/ikabud/instances/wp-test-001/sessions"},
		{l.ConfigDir(id), "/etc/ikabud/instances/wp-test-001"},
		{l.FPMConfigPath(id), "/etc/ikabud/instances/wp-test-001/php-fpm.conf"},
		{l.FPMBinaryLink(id), "/etc/ikabud/instances/wp-test-001/php-fpm"},
		{l.RuntimeDir(id), "/run/ikabud/wp-test-001"},
		{l.SocketPath(id), "/run/ikabud/wp-test-001/php-fpm.sock"},
		{l.PIDPath(id), "/run/ikabud/wp-test-001/php-fpm.pid"},
		{l.UnitName(id), "ikabud@wp-test-001.service"},
		{l.UnitTemplateName(), "ikabud@.service"},
		{id.UserName(), "ikabud-wp-test-001"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestUnitNameRoundTrip(t *testing.T) {
	for _, l := range []procmgr.Layout{procmgr.DefaultLayout(), {UnitPrefix: "ikabud-test"}, {UnitPrefix: "a"}} {
		for _, s := range []string{"a", "wp-test-001", strings.Repeat("z", 25), "globals", "service"} {
			id, err := procmgr.ParseInstanceID(s)
			if err != nil {
				t.Fatal(err)
			}
			name := l.UnitName(id)
			if name != l.UnitPrefix+"@"+s+".service" {
				t.Errorf("UnitName(%q) = %q", s, name)
			}
			got, ok := l.InstanceFromUnit(name)
			if !ok || got != id {
				t.Errorf("prefix %s: InstanceFromUnit(%q) = %q, %v; want %q", l.UnitPrefix, name, got, ok, id)
			}
		}
	}
}

func TestInstanceFromUnitRejectsForeignNames(t *testing.T) {
	l := procmgr.DefaultLayout()
	for _, name := range []string{
		"", "ikabud@.service", "ikabud@", "ikabud@a", "ikabud@a.socket", "ikabud@a.service.d", "ikabud@a.service ",
		"ikabud@../x.service", "ikabud@a/b.service", "ikabud@A.service", "ikabud@a-.service", "ikabud@a--b.service",
		"ikabud@a b.service", "ikabud@a\n.service", "ikabud@a@b.service", "ikabud@" + strings.Repeat("a", 26) + ".service",
		"other@a.service", "ikabud-test@a.service", "ikabudx@a.service", "xikabud@a.service", "Ikabud@a.service",
		"ikabud.service", "ikabud@a.service.service", "a.service", "@a.service", "ikabud@\\x2e.service", "ikabud@%i.service",
		"php8.2-fpm.service", "ikabud@a.servic", ".service",
	} {
		if id, ok := l.InstanceFromUnit(name); ok {
			t.Errorf("InstanceFromUnit(%q) = %q, true; want false", name, id)
		}
	}
	// A layout with a longer prefix does not claim the default one's units.
	test := procmgr.Layout{UnitPrefix: "ikabud-test"}
	if id, ok := test.InstanceFromUnit("ikabud@a.service"); ok {
		t.Errorf("prefix ikabud-test claimed ikabud@a.service as %q", id)
	}
}
