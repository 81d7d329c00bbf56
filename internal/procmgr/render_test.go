package procmgr_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/ikabud/panel/internal/procmgr"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the renderers' output")

// renderGolden compares got with testdata/name, or rewrites the file under -update.
func renderGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run go test -run %s -update to write it)", err, t.Name())
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs from the rendered output at line %d:\n got: %q\nwant: %q\n(run with -update if the change is intended)", path, i+1, g, w)
		}
	}
	t.Fatalf("%s differs from the rendered output", path)
}

var (
	iniSectionRe = regexp.MustCompile(`^\[([A-Za-z0-9_.-]+)\]$`)
	iniLineRe    = regexp.MustCompile(`^([A-Za-z0-9_.]+(?:\[[A-Za-z0-9_.]+\])?) = (\S(?:.*\S)?)$`)
	// Values php-fpm's INI parser takes literally without quotes: no
	// space, quote, ';', '$', '%', '=', expression operators or backslash.
	iniPlainValueRe = regexp.MustCompile(`^[A-Za-z0-9_./:-]+$`)
	// Quoted values: PHP's INI parser interprets '$', '{', '\' and '"'
	// inside double quotes, so none of them may appear.
	iniQuotedValueRe = regexp.MustCompile(`^"[A-Za-z0-9 _.,:/@+=-]*"$`)
)

// parseStrictINI reads a php-fpm config in the only shape the renderer may
// write: "[section]" lines, "key = value" lines, ";" comments and blank
// lines, "\n" line ends, every section once, no directive before the first
// section. Anything else is an error.
func parseStrictINI(data []byte) (ds []procmgr.FPMDirective, sections []string, err error) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, nil, fmt.Errorf("does not end in a newline")
	}
	if i := bytes.IndexAny(data, "\r\x00"); i >= 0 {
		return nil, nil, fmt.Errorf("byte %q at offset %d", data[i], i)
	}
	section := ""
	seen := map[string]bool{}
	for n, line := range strings.Split(string(data[:len(data)-1]), "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, ";"):
		case iniSectionRe.MatchString(line):
			section = iniSectionRe.FindStringSubmatch(line)[1]
			if seen[section] {
				return nil, nil, fmt.Errorf("line %d: section [%s] a second time", n+1, section)
			}
			seen[section] = true
			sections = append(sections, section)
		case iniLineRe.MatchString(line):
			if section == "" {
				return nil, nil, fmt.Errorf("line %d: directive before any section: %q", n+1, line)
			}
			m := iniLineRe.FindStringSubmatch(line)
			ds = append(ds, procmgr.FPMDirective{Section: section, Key: m[1], Value: m[2]})
		default:
			return nil, nil, fmt.Errorf("line %d: not a section, directive, comment or blank: %q", n+1, line)
		}
	}
	return ds, sections, nil
}

// fpmValueProblem says what is wrong with a rendered directive value, or "".
func fpmValueProblem(key, value string) string {
	switch {
	case strings.ContainsAny(value, "\n\r\x00"):
		return "line break or NUL"
	case strings.HasSuffix(value, `\`):
		return "trailing backslash"
	case strings.ContainsAny(value, ";$%`'{}\\"):
		return "INI, shell or specifier syntax"
	}
	if strings.HasPrefix(key, "env[") && key != "env[TMPDIR]" {
		if !iniQuotedValueRe.MatchString(value) {
			return "env value not quoted or has characters outside the allow-list"
		}
		return ""
	}
	if !iniPlainValueRe.MatchString(value) {
		return "unquoted value has characters outside [A-Za-z0-9_./:-]"
	}
	return ""
}

// checkFPMConfig parses a rendered config and checks it against FPMDirectives.
func checkFPMConfig(t testing.TB, l procmgr.Layout, s procmgr.Spec, cfg []byte) map[string]string {
	t.Helper()
	got, sections, err := parseStrictINI(cfg)
	if err != nil {
		t.Fatalf("rendered config of %s is not strict INI: %v\n%s", s.ID, err, cfg)
	}
	want := procmgr.FPMDirectives(l, s)
	if len(got) != len(want) {
		t.Fatalf("parsed %d directives, FPMDirectives has %d\n%s", len(got), len(want), cfg)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("directive %d: parsed %+v, FPMDirectives has %+v", i, got[i], want[i])
		}
	}
	// One [global] section, then one pool named after the instance. A pool
	// section named "global" would merge into php-fpm's global section.
	if len(sections) != 2 || sections[0] != "global" || sections[1] != string(s.ID) {
		t.Fatalf("sections %q, want [global %s] (two distinct sections)", sections, s.ID)
	}
	pool := map[string]string{}
	for _, d := range got {
		if p := fpmValueProblem(d.Key, d.Value); p != "" {
			t.Errorf("[%s] %s = %s: %s", d.Section, d.Key, d.Value, p)
		}
		k := d.Key
		if d.Section == "global" {
			k = "global." + k
		}
		if _, dup := pool[k]; dup {
			t.Errorf("[%s] %s given twice", d.Section, d.Key)
		}
		pool[k] = d.Value
	}
	return pool
}

// renderGoldenSpecs are the specs whose php-fpm configs have golden files.
var renderGoldenSpecs = []struct {
	golden string
	id     string
	in     procmgr.SpecInput
}{
	{"php-fpm-defaults.conf", "wp-test-001", procmgr.Defaults},
	{"php-fpm-dynamic-env.conf", "wp-dynamic", procmgr.SpecInput{
		CMS: "wordpress", PM: "dynamic", MaxChildren: "12", StartServers: "3", MinSpareServers: "2", MaxSpareServers: "6",
		MaxRequests: "1000", MemoryLimit: "128M", MaxExecutionTime: "60", UploadMax: "32M", MemoryMax: "1G", CPUQuota: "150%",
		TasksMax: "128", Env: []string{"WP_ENV=production", "SITE_URL=https://example.com/blog", "GREETING=hello world", "MAIL_FROM=web+site@example.com"},
	}},
	{"php-fpm-static.conf", "static-site", procmgr.SpecInput{
		CMS: "joomla", PM: "static", MaxChildren: "8", MaxRequests: "0", MaxExecutionTime: "1", UploadMax: "1536", MemoryLimit: "96M",
	}},
}

func TestRenderFPMConfigGolden(t *testing.T) {
	l := procmgr.DefaultLayout()
	for _, c := range renderGoldenSpecs {
		t.Run(c.golden, func(t *testing.T) {
			s := specMustParse(t, c.id, c.in)
			cfg := procmgr.RenderFPMConfig(l, s)
			renderGolden(t, c.golden, cfg)
			checkFPMConfig(t, l, s, cfg)
		})
	}
}

func TestRenderFPMConfigContents(t *testing.T) {
	l := procmgr.DefaultLayout()
	for _, c := range renderGoldenSpecs {
		t.Run(c.golden, func(t *testing.T) {
			s := specMustParse(t, c.id, c.in)
			v := checkFPMConfig(t, l, s, procmgr.RenderFPMConfig(l, s))
			id := string(s.ID)
			inst := "/srv/ikabud/instances/" + id
			want := map[string]string{
				"global.pid":                           "/run/ikabud/" + id + "/php-fpm.pid",
				"global.error_log":                     "syslog",
				"global.syslog.ident":                  "ikabud-" + id,
				"global.daemonize":                     "no",
				"global.systemd_interval":              "0",
				"listen":                               "/run/ikabud/" + id + "/php-fpm.sock",
				"listen.mode":                          "0660",
				"pm":                                   string(s.Pool.PM),
				"pm.max_children":                      strconv.Itoa(s.Pool.MaxChildren),
				"pm.max_requests":                      strconv.Itoa(s.Pool.MaxRequests),
				"pm.status_path":                       "/status",
				"ping.path":                            "/ping",
				"ping.response":                        "pong",
				"catch_workers_output":                 "yes",
				"clear_env":                            "yes",
				"security.limit_extensions":            ".php",
				"chdir":                                inst + "/public",
				"env[TMPDIR]":                          inst + "/tmp",
				"php_admin_value[open_basedir]":        inst + "/:/usr/share/php/",
				"php_admin_value[sys_temp_dir]":        inst + "/tmp",
				"php_admin_value[upload_tmp_dir]":      inst + "/tmp",
				"php_admin_value[session.save_path]":   inst + "/sessions",
				"php_admin_value[memory_limit]":        s.Pool.MemoryLimit.String(),
				"php_admin_value[max_execution_time]":  strconv.Itoa(s.Pool.MaxExecutionTime),
				"php_admin_value[upload_max_filesize]": s.Pool.UploadMax.String(),
				"php_admin_flag[display_errors]":       "off",
			}
			for k, w := range want {
				if v[k] != w {
					t.Errorf("%s = %q, want %q", k, v[k], w)
				}
			}
			// Every directory PHP writes to lies inside the instance root,
			// and open_basedir is that root with a trailing slash (without
			// it, /srv/ikabud/instances/a would also admit .../ab).
			for _, k := range []string{"chdir", "env[TMPDIR]", "php_admin_value[sys_temp_dir]", "php_admin_value[upload_tmp_dir]", "php_admin_value[session.save_path]"} {
				if !strings.HasPrefix(v[k], l.InstanceDir(s.ID)+"/") {
					t.Errorf("%s = %q is outside the instance root %s", k, v[k], l.InstanceDir(s.ID))
				}
			}
			_, hasStart := v["pm.start_servers"]
			if hasStart != (s.Pool.PM == procmgr.PMDynamic) {
				t.Errorf("pm %s: pm.start_servers present = %v", s.Pool.PM, hasStart)
			}
			if s.Pool.PM == procmgr.PMDynamic {
				for k, n := range map[string]int{"pm.start_servers": s.Pool.StartServers, "pm.min_spare_servers": s.Pool.MinSpareServers, "pm.max_spare_servers": s.Pool.MaxSpareServers} {
					if v[k] != strconv.Itoa(n) {
						t.Errorf("%s = %q, want %d", k, v[k], n)
					}
				}
			}
			if _, ok := v["pm.process_idle_timeout"]; ok != (s.Pool.PM == procmgr.PMOndemand) {
				t.Errorf("pm %s: pm.process_idle_timeout present = %v", s.Pool.PM, ok)
			}
			for _, e := range s.Env {
				if got := v["env["+e.Key+"]"]; got != `"`+e.Value+`"` {
					t.Errorf("env[%s] = %s, want %q", e.Key, got, e.Value)
				}
			}
		})
	}
}

// renderTestLayout is a layout under a fresh temporary directory, with the
// instance's directories made, readable by an unprivileged php-fpm.
func renderTestLayout(t *testing.T, id procmgr.InstanceID) procmgr.Layout {
	t.Helper()
	root := t.TempDir()
	// t.TempDir's parent is mode 0700; the php-fpm below may run as nobody.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := procmgr.Layout{
		InstancesRoot: filepath.Join(root, "instances"),
		ConfigRoot:    filepath.Join(root, "etc"),
		// Not made: php-fpm --test neither listens nor writes its pid file.
		RuntimeRoot: "/run/ikabud-rendertest",
		UnitDir:     filepath.Join(root, "units"),
		UnitPrefix:  "ikabud-rt",
	}
	if err := l.Validate(); err != nil {
		t.Fatalf("test layout under %s: %v", root, err)
	}
	for _, d := range []string{l.PublicDir(id), l.TmpDir(id), l.SessionsDir(id), l.ConfigDir(id)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// renderRunFPMTest writes the rendered config of s and runs the real
// `php-fpm --test` on it. As root, php-fpm is run as nobody: in production
// the master runs as the instance user (User= in the unit), and as root
// php-fpm would demand a pool user the config rightly does not set.
func renderRunFPMTest(t *testing.T, s procmgr.Spec) (string, error) {
	t.Helper()
	bin := s.PHP.FPMBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("php-fpm for PHP %s is missing (%v): install Debian's php%s-fpm", s.PHP, err, s.PHP)
	}
	l := renderTestLayout(t, s.ID)
	path := l.FPMConfigPath(s.ID)
	if err := os.WriteFile(path, procmgr.RenderFPMConfig(l, s), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--test", "--fpm-config", path)
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("user nobody, to run php-fpm unprivileged: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = "/"
	}
	out, err := cmd.CombinedOutput()
	if err == nil && !strings.Contains(string(out), "test is successful") {
		err = fmt.Errorf("exit 0 without \"test is successful\"")
	}
	return string(out), err
}

func TestRenderFPMConfigPassesPHPFPMTest(t *testing.T) {
	for _, c := range renderGoldenSpecs {
		t.Run(strings.TrimSuffix(c.golden, ".conf"), func(t *testing.T) {
			s := specMustParse(t, c.id, c.in)
			if out, err := renderRunFPMTest(t, s); err != nil {
				t.Fatalf("php-fpm --test: %v\n%s\nconfig:\n%s", err, out, procmgr.RenderFPMConfig(procmgr.DefaultLayout(), s))
			}
		})
	}
}

// TestRenderFPMConfigEdgeSpecsAcceptedByPHPFPM: whatever ParseSpec accepts,
// php-fpm must accept too; otherwise the instance is provisioned and then
// fails to start. Cases marked known bug FAIL on the code as written.
func TestRenderFPMConfigEdgeSpecsAcceptedByPHPFPM(t *testing.T) {
	allowed := "a-b_c.d,e:f/g@h+i=j k"
	var many []string
	for i := range 32 {
		many = append(many, fmt.Sprintf("V%02d=%s%d", i, allowed, i))
	}
	cases := []struct {
		name      string
		id        string
		in        procmgr.SpecInput
		mustParse bool // false: refusing it is also right
	}{
		// An id "global" would merge its pool into php-fpm's [global]
		// ("unknown entry listen"), so ParseInstanceID refuses it.
		{"id-global", "global", procmgr.SpecInput{}, false},
		// php-fpm refuses env[A] = "" ("empty value"), so parseEnv does.
		{"empty-env-value", "empty-env", procmgr.SpecInput{Env: []string{"A="}}, false},
		{"ini-keyword-ids-null", "null", procmgr.SpecInput{}, true},
		{"ini-keyword-ids-yes", "yes", procmgr.SpecInput{}, true},
		{"ini-keyword-ids-off", "off", procmgr.SpecInput{}, true},
		{"ini-keyword-ids-none", "none", procmgr.SpecInput{}, true},
		{"ini-keyword-ids-true", "true", procmgr.SpecInput{}, true},
		{"longest-id", "a23456789012345678901234z", procmgr.SpecInput{}, true},
		{"env-punctuation", "env-punct", procmgr.SpecInput{Env: []string{"A=" + allowed, "B= leading and trailing ", "C=" + strings.Repeat("x=", 128), "D=-", "E=="}}, true},
		{"env-32-vars", "env-many", procmgr.SpecInput{Env: many}, true},
		{"env-ini-keywords", "env-kw", procmgr.SpecInput{Env: []string{"A=yes", "B=null", "C=off", "D=none", "E=true"}}, true},
		{"max-static", "max-static", procmgr.SpecInput{PM: "static", MaxChildren: "1000", MaxRequests: "1000000", MaxExecutionTime: "86400",
			MemoryLimit: "64G", UploadMax: "16G", MemoryMax: "1024G", CPUQuota: "100000%", TasksMax: "100000"}, true},
		{"max-dynamic", "max-dynamic", procmgr.SpecInput{PM: "dynamic", MaxChildren: "1000", StartServers: "1000", MinSpareServers: "1000",
			MaxSpareServers: "1000", TasksMax: "1001"}, true},
		{"min-dynamic", "min-dynamic", procmgr.SpecInput{PM: "dynamic", MaxChildren: "1", StartServers: "1", MinSpareServers: "1",
			MaxSpareServers: "1", MaxRequests: "0", MaxExecutionTime: "1", MemoryLimit: "16M", UploadMax: "1K", MemoryMax: "32M", TasksMax: "8"}, true},
		{"min-ondemand", "min-ondemand", procmgr.SpecInput{PM: "ondemand", MaxChildren: "1", UploadMax: "1024", MemoryLimit: "16777216"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := procmgr.ParseSpec(c.id, c.in, nil)
			if err != nil {
				if c.mustParse {
					t.Fatalf("ParseSpec: %v", err)
				}
				t.Logf("refused by ParseSpec, which is right: %v", err)
				return
			}
			if out, err := renderRunFPMTest(t, s); err != nil {
				t.Errorf("ParseSpec accepted it but php-fpm --test refuses the rendered config: %v\n%s\nconfig:\n%s", err, out, procmgr.RenderFPMConfig(procmgr.DefaultLayout(), s))
			}
		})
	}
}

// unitFind returns the value of the only option section.name.
func unitFind(t *testing.T, opts []*unit.UnitOption, section, name string) string {
	t.Helper()
	var vals []string
	for _, o := range opts {
		if o.Section == section && o.Name == name {
			vals = append(vals, o.Value)
		}
	}
	if len(vals) != 1 {
		t.Errorf("[%s] %s set %d times (%q), want once", section, name, len(vals), vals)
		return ""
	}
	return vals[0]
}

// unitRoundTrip serialises opts, parses them back with go-systemd's parser
// and checks that nothing changed on the way.
func unitRoundTrip(t testing.TB, rendered []byte, want []*unit.UnitOption) {
	t.Helper()
	got, err := unit.DeserializeOptions(bytes.NewReader(rendered))
	if err != nil {
		t.Fatalf("DeserializeOptions: %v\n%s", err, rendered)
	}
	if len(got) != len(want) {
		t.Fatalf("parsed %d options back, rendered %d\n%s", len(got), len(want), rendered)
	}
	for i := range want {
		if *got[i] != *want[i] {
			t.Errorf("option %d: parsed back %+v, rendered %+v", i, *got[i], *want[i])
		}
	}
}

// unitValueProblem says what is wrong with a unit option value, or "". The
// only specifier allowed is %i; CPUQuota ends in a literal "%", which systemd
// does not expand for that setting.
func unitValueProblem(o *unit.UnitOption) string {
	v := o.Value
	switch {
	case strings.ContainsAny(v, "\n\r\x00"):
		return "line break or NUL"
	case strings.HasSuffix(v, `\`):
		return "trailing backslash (line continuation)"
	case strings.ContainsAny(v, `"';`+"`"):
		return "quote or ';'"
	case strings.TrimSpace(v) != v:
		return "leading or trailing space"
	}
	rest := v
	if o.Name == "CPUQuota" {
		if !regexp.MustCompile(`^[0-9]+%$`).MatchString(v) {
			return "CPUQuota is not N%"
		}
		rest = strings.TrimSuffix(v, "%")
	}
	if strings.Contains(strings.ReplaceAll(rest, "%i", ""), "%") {
		return "a specifier other than %i"
	}
	if strings.Contains(v, "$") && v != "/bin/kill -USR2 $MAINPID" {
		return "a variable"
	}
	return ""
}

func TestRenderUnitTemplateGolden(t *testing.T) {
	l := procmgr.DefaultLayout()
	rendered := procmgr.RenderUnitTemplate(l)
	renderGolden(t, "ikabud@.service", rendered)
	unitRoundTrip(t, rendered, procmgr.UnitTemplateOptions(l))
}

func TestUnitTemplateOptions(t *testing.T) {
	test := procmgr.Layout{InstancesRoot: "/var/lib/ikt/inst", ConfigRoot: "/etc/ikt", RuntimeRoot: "/run/ikt-x", UnitDir: "/etc/systemd/system", UnitPrefix: "ikt"}
	for _, l := range []procmgr.Layout{procmgr.DefaultLayout(), test} {
		t.Run(l.UnitPrefix, func(t *testing.T) {
			opts := procmgr.UnitTemplateOptions(l)
			unitRoundTrip(t, procmgr.RenderUnitTemplate(l), opts)
			seen := map[string]bool{}
			for _, o := range opts {
				if p := unitValueProblem(o); p != "" {
					t.Errorf("[%s] %s=%s: %s", o.Section, o.Name, o.Value, p)
				}
				if o.Section != "Unit" && o.Section != "Service" {
					t.Errorf("option in section %q", o.Section)
				}
				if k := o.Section + "." + o.Name; seen[k] && k != "Service.SystemCallFilter" {
					t.Errorf("%s set twice", k)
				} else {
					seen[k] = true
				}
			}
			svc := func(name string) string { return unitFind(t, opts, "Service", name) }
			for name, want := range map[string]string{
				"Type": "notify", "User": "ikabud-%i", "Group": "ikabud-%i", "Restart": "on-failure",
				"NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "", "ProtectSystem": "strict",
				"ProtectHome": "yes", "PrivateTmp": "yes", "DevicePolicy": "closed", "ProtectProc": "invisible",
				"RestrictSUIDSGID": "yes", "MemoryAccounting": "yes", "CPUAccounting": "yes", "TasksAccounting": "yes",
				"MemoryMax": procmgr.Defaults.MemoryMax, "CPUQuota": procmgr.Defaults.CPUQuota, "TasksMax": procmgr.Defaults.TasksMax,
				"RuntimeDirectoryMode": "0750", "ExecReload": "/bin/kill -USR2 $MAINPID",
				"MemorySwapMax": "0", "SocketBindDeny": "any", "ProcSubset": "pid", "PrivateMounts": "yes",
				"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
			} {
				if got := svc(name); got != want {
					t.Errorf("[Service] %s=%q, want %q", name, got, want)
				}
			}
			// The allow-list, then what is taken out of it: both lines.
			var filters []string
			for _, o := range opts {
				if o.Section == "Service" && o.Name == "SystemCallFilter" {
					filters = append(filters, o.Value)
				}
			}
			if want := []string{"@system-service", "~@privileged @resources"}; !slices.Equal(filters, want) {
				t.Errorf("[Service] SystemCallFilter lines %q, want %q", filters, want)
			}
			if got := unitFind(t, opts, "Unit", "StartLimitBurst"); got != "5" {
				t.Errorf("[Unit] StartLimitBurst=%q, want 5", got)
			}
			if got := unitFind(t, opts, "Unit", "StartLimitIntervalSec"); got != "10s" {
				t.Errorf("[Unit] StartLimitIntervalSec=%q, want 10s", got)
			}

			// The %i parts, expanded for one id, are the layout's paths.
			id := procmgr.InstanceID("wp-test-001")
			expand := func(v string) string { return strings.ReplaceAll(v, "%i", string(id)) }
			if got, want := expand(svc("ExecStart")), l.FPMBinaryLink(id)+" --nodaemonize --fpm-config "+l.FPMConfigPath(id); got != want {
				t.Errorf("ExecStart expands to %q, want %q", got, want)
			}
			if got, want := "/run/"+expand(svc("RuntimeDirectory")), l.RuntimeDir(id); got != want {
				t.Errorf("RuntimeDirectory expands to %q, want %q", got, want)
			}
			if got, want := expand(svc("ReadWritePaths")), l.InstanceDir(id); got != want {
				t.Errorf("ReadWritePaths expands to %q, want %q", got, want)
			}
			if got, want := expand(svc("User")), id.UserName(); got != want {
				t.Errorf("User expands to %q, want %q", got, want)
			}
		})
	}
	if got := procmgr.DefaultLayout().UnitTemplateName(); got != "ikabud@.service" {
		t.Errorf("UnitTemplateName = %q", got)
	}
	if got := unitFind(t, procmgr.UnitTemplateOptions(procmgr.DefaultLayout()), "Service", "RuntimeDirectory"); got != "ikabud/%i" {
		t.Errorf("RuntimeDirectory = %q, want ikabud/%%i", got)
	}
}

func TestRenderLimits(t *testing.T) {
	lim, err := procmgr.ParseLimits("300M", "40%", "77")
	if err != nil {
		t.Fatal(err)
	}
	if lim != (procmgr.Limits{MemoryMax: 300 << 20, CPUQuota: 40, TasksMax: 77}) {
		t.Fatalf("ParseLimits = %+v", lim)
	}
	rendered := procmgr.RenderLimits(lim)
	renderGolden(t, "limits-300M-40-77.conf", rendered)
	opts := procmgr.LimitOptions(lim)
	unitRoundTrip(t, rendered, opts)
	for name, want := range map[string]string{"MemoryMax": "314572800", "CPUQuota": "40%", "TasksMax": "77"} {
		if got := unitFind(t, opts, "Service", name); got != want {
			t.Errorf("%s=%q, want %q", name, got, want)
		}
	}
	if len(opts) != 3 {
		t.Errorf("%d limit options, want 3", len(opts))
	}
	for _, o := range opts {
		if p := unitValueProblem(o); p != "" {
			t.Errorf("%s=%s: %s", o.Name, o.Value, p)
		}
	}
}

// Idle timeouts of ondemand pools vary by instance, within 10 to 14 s, so
// that pools probed together do not drop their workers together.
func TestIdleTimeoutsVaryByInstance(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 40; i++ {
		s := specMustParse(t, fmt.Sprintf("site-%d", i), procmgr.SpecInput{})
		for _, d := range procmgr.FPMDirectives(procmgr.DefaultLayout(), s) {
			if d.Key == "pm.process_idle_timeout" {
				n, err := strconv.Atoi(strings.TrimSuffix(d.Value, "s"))
				if err != nil || n < 10 || n > 14 {
					t.Errorf("%s: pm.process_idle_timeout %q, want 10s to 14s", s.ID, d.Value)
				}
				seen[d.Value] = true
			}
		}
	}
	if len(seen) < 4 {
		t.Errorf("40 instances share %d idle timeouts (%v), want them spread", len(seen), seen)
	}
}
