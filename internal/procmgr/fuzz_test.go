package procmgr_test

import (
	"errors"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/procmgr"
)

// fuzzSpecFields is the number of string arguments of FuzzParseSpec: the id,
// the fourteen fields of SpecInput, and two env entries.
const fuzzSpecFields = 17

func fuzzAddSpec(f *testing.F, v [fuzzSpecFields]string, nenv uint8) {
	f.Add(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16], nenv)
}

// fuzzIDSeeds are ids for both fuzz targets, the reserved "global" among them.
var fuzzIDSeeds = []string{
	"global", "a", "wp-test-001", strings.Repeat("a", 25), strings.Repeat("a", 26), "", "-a", "a-", "a--b", "A", "1abc", "wp/test",
	"..", "a.b", "a\nb", "a\rb", "a b", "a'b", `a"b`, "%h", "$VAR", `a\`, "café", "null", "yes", "glob", "globals",
}

// fuzzEnvSeeds are env entries, good and hostile.
var fuzzEnvSeeds = []string{
	"APP_ENV=production", "SITE=https://example.com/x", "A=a=b", "A=", "GREETING=hello world", "path=/bin", "PATH=/bin",
	"TMPDIR=/tmp", "HOME=/root", `A="x"`, "A=$HOME", "A=%h", `A=x\`, "A=a\nb", "A=a\rb", "A=a;b", "APP_ENV", "=x",
	"LONG=" + strings.Repeat("v", 256), "LONG=" + strings.Repeat("v", 257), "A=café", "A=x]y",
}

func FuzzParseSpec(f *testing.F) {
	base := [fuzzSpecFields]string{"wp-test-001"}
	fuzzAddSpec(f, base, 0)
	fuzzAddSpec(f, [fuzzSpecFields]string{"dyn", "wordpress", "8.2", "dynamic", "10", "3", "2", "5", "1000", "128M", "60", "32M", "1G", "150%", "128",
		"WP_ENV=production", "GREETING=hello world"}, 2)
	fuzzAddSpec(f, [fuzzSpecFields]string{"static-1", "joomla", "8.3", "static", "8", "", "", "", "0", "16777217", "0", "1536", "1024G", "40", "100000"}, 0)
	fuzzAddSpec(f, [fuzzSpecFields]string{"max", "", "", "static", "1000", "", "", "", "1000000", "64G", "86400", "16G", "1024G", "100000%", "100000"}, 0)
	for _, id := range fuzzIDSeeds {
		v := base
		v[0] = id
		fuzzAddSpec(f, v, 0)
	}
	for i := 1; i <= 14; i++ {
		for _, h := range specHostile {
			v := base
			v[i] = h
			fuzzAddSpec(f, v, 0)
		}
	}
	for _, e := range fuzzEnvSeeds {
		v := base
		v[15], v[16] = e, "OTHER=1"
		fuzzAddSpec(f, v, 1)
		fuzzAddSpec(f, v, 2)
	}
	dup := base
	dup[15], dup[16] = "A=1", "A=2"
	fuzzAddSpec(f, dup, 2)

	l := procmgr.DefaultLayout()
	f.Fuzz(func(t *testing.T, id, cms, php, pm, maxChildren, startServers, minSpare, maxSpare, maxRequests, memoryLimit, maxExec,
		uploadMax, memoryMax, cpuQuota, tasksMax, env1, env2 string, nenv uint8) {
		in := procmgr.SpecInput{
			CMS: cms, PHP: php, PM: pm, MaxChildren: maxChildren, StartServers: startServers, MinSpareServers: minSpare,
			MaxSpareServers: maxSpare, MaxRequests: maxRequests, MemoryLimit: memoryLimit, MaxExecutionTime: maxExec,
			UploadMax: uploadMax, MemoryMax: memoryMax, CPUQuota: cpuQuota, TasksMax: tasksMax,
		}
		switch nenv % 3 {
		case 1:
			in.Env = []string{env1}
		case 2:
			in.Env = []string{env1, env2}
		}
		s, err := procmgr.ParseSpec(id, in, nil)
		if err != nil {
			if !errors.Is(err, procmgr.ErrInvalid) || err.Error() == "" {
				t.Fatalf("ParseSpec error %T %q does not match ErrInvalid or is empty", err, err)
			}
			specFieldErrors(t, err)
			return
		}
		if string(s.ID) != id {
			t.Fatalf("spec id %q, input %q", s.ID, id)
		}

		// The php-fpm config: strict INI whose directives are exactly
		// FPMDirectives, in order, with safe values (checkFPMConfig).
		pool := checkFPMConfig(t, l, s, procmgr.RenderFPMConfig(l, s))
		envs := 0
		for k := range pool {
			if strings.HasPrefix(k, "env[") {
				envs++
			}
		}
		if envs != len(in.Env)+1 {
			t.Errorf("%d env directives for %d variables (+TMPDIR)", envs, len(in.Env))
		}
		for _, kv := range in.Env {
			k, v, _ := strings.Cut(kv, "=")
			if got := pool["env["+k+"]"]; got != `"`+v+`"` {
				t.Errorf("env %q rendered as env[%s] = %s, want the value quoted and unchanged", kv, k, got)
			}
		}

		// The limits: through go-systemd's serialiser and parser unchanged,
		// with no specifier and no line break.
		opts := procmgr.LimitOptions(s.Limits)
		unitRoundTrip(t, procmgr.RenderLimits(s.Limits), opts)
		for _, o := range opts {
			if p := unitValueProblem(o); p != "" {
				t.Errorf("limit %s=%q: %s", o.Name, o.Value, p)
			}
		}
		if mm := opts[0].Value; mm != strconv.FormatUint(uint64(s.Limits.MemoryMax), 10) {
			t.Errorf("MemoryMax=%s for %d bytes", mm, s.Limits.MemoryMax)
		}

		// Input and the stored form give the same spec back.
		if again, err := procmgr.ParseSpec(id, s.Input(), nil); err != nil || !reflect.DeepEqual(again, s) {
			t.Errorf("ParseSpec(Input()) = %+v, %v; want %+v", again, err, s)
		}
		data, err := procmgr.MarshalSpec(s)
		if err != nil {
			t.Fatalf("MarshalSpec: %v", err)
		}
		if back, err := procmgr.UnmarshalSpec(id, data); err != nil || !reflect.DeepEqual(back, s) {
			t.Errorf("UnmarshalSpec(%s) = %+v, %v; want %+v", data, back, err, s)
		}
	})
}

// fuzzIDRe is the allow-list of instance ids, written again here so the
// fuzz target checks ParseInstanceID against an independent copy.
var fuzzIDRe = regexp.MustCompile(`^[a-z]([a-z0-9]|-[a-z0-9])*$`)

func FuzzParseInstanceID(f *testing.F) {
	for _, s := range fuzzIDSeeds {
		f.Add(s)
	}
	for _, s := range []string{"global", "a\x00", "a/../b", "/", ".", "a\u2010b", "ａ", "a\n", "\na", "a-1-b-2", "z9"} {
		f.Add(s)
	}
	layouts := []procmgr.Layout{
		procmgr.DefaultLayout(),
		{InstancesRoot: "/i", ConfigRoot: "/c", RuntimeRoot: "/run/r", UnitDir: "/u", UnitPrefix: "p"},
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := procmgr.ParseInstanceID(s)
		want := len(s) <= 25 && fuzzIDRe.MatchString(s) && s != "global"
		if (err == nil) != want {
			t.Fatalf("ParseInstanceID(%q) = %q, %v; the allow-list says accepted=%v", s, id, err, want)
		}
		if err != nil {
			var fe *procmgr.FieldError
			if !errors.Is(err, procmgr.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "id" || err.Error() == "" {
				t.Fatalf("ParseInstanceID(%q): error %#v, want a FieldError for id", s, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("ParseInstanceID(%q): message has a raw line break: %q", s, err.Error())
			}
			return
		}
		if string(id) != s {
			t.Fatalf("ParseInstanceID(%q) = %q", s, id)
		}
		if u := id.UserName(); len(u) > 32 || u != "ikabud-"+s {
			t.Fatalf("UserName = %q (%d characters)", u, len(u))
		}
		for _, l := range layouts {
			// Each path is clean, directly inside its parent, and the
			// parents are inside the layout's roots.
			for _, c := range []struct{ path, parent string }{
				{filepath.Join(l.InstancesRoot, s), l.InstancesRoot},
				{l.InstanceDir(id), l.InstancesRoot},
				{l.PublicDir(id), l.InstanceDir(id)},
				{l.TmpDir(id), l.InstanceDir(id)},
				{l.SessionsDir(id), l.InstanceDir(id)},
				{l.ConfigDir(id), filepath.Join(l.ConfigRoot, "instances")},
				{l.FPMConfigPath(id), l.ConfigDir(id)},
				{l.FPMBinaryLink(id), l.ConfigDir(id)},
				{l.RuntimeDir(id), l.RuntimeRoot},
				{l.SocketPath(id), l.RuntimeDir(id)},
				{l.PIDPath(id), l.RuntimeDir(id)},
			} {
				if filepath.Clean(c.path) != c.path || filepath.Dir(c.path) != c.parent || !strings.HasPrefix(c.path, c.parent+"/") {
					t.Fatalf("id %q: path %q is not directly inside %q", s, c.path, c.parent)
				}
			}
			for _, p := range []string{l.InstanceDir(id), l.ConfigDir(id), l.RuntimeDir(id)} {
				if !strings.HasPrefix(p, l.InstancesRoot+"/") && !strings.HasPrefix(p, l.ConfigRoot+"/") && !strings.HasPrefix(p, l.RuntimeRoot+"/") {
					t.Fatalf("id %q: %q is outside every root", s, p)
				}
			}
			if back, ok := l.InstanceFromUnit(l.UnitName(id)); !ok || back != id {
				t.Fatalf("InstanceFromUnit(UnitName(%q)) = %q, %v", s, back, ok)
			}
		}
	})
}
