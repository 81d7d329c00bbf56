package procmgr_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/procmgr"
)

// specHostile are values that must never reach a config file or unit: line
// breaks, quotes, systemd specifiers, shell and INI syntax, and numbers
// written in forms the parsers do not promise to understand.
var specHostile = []string{
	"\n", "5\n", "\n5", "\r", "5\r", "5\r\n", `"`, `"5"`, "'", "'5'", "%h", "5%h", "%i", "$VAR", "${VAR}", "5$",
	`5\`, `\`, ";", "5;", "5 ; x", "5=6", "`5`", "5\x00", "\x00",
	"99999999999999999999", "18446744073709551616", "-1", "-5", "+5", "1T", "5T", "0x10", "1e3", "5.00", "5,0",
	" 5", "5 ", "\t5", "５", "٥", "5k", "5m", "5g", "5KB", "5MB", "5GiB", "5%%",
}

// specFields maps each field of SpecInput to the name its FieldError uses.
var specFields = []struct {
	name string
	set  func(*procmgr.SpecInput, string)
}{
	{"cms", func(in *procmgr.SpecInput, v string) { in.CMS = v }},
	{"php", func(in *procmgr.SpecInput, v string) { in.PHP = v }},
	{"pm", func(in *procmgr.SpecInput, v string) { in.PM = v }},
	{"max_children", func(in *procmgr.SpecInput, v string) { in.MaxChildren = v }},
	{"start_servers", func(in *procmgr.SpecInput, v string) { in.StartServers = v }},
	{"min_spare_servers", func(in *procmgr.SpecInput, v string) { in.MinSpareServers = v }},
	{"max_spare_servers", func(in *procmgr.SpecInput, v string) { in.MaxSpareServers = v }},
	{"max_requests", func(in *procmgr.SpecInput, v string) { in.MaxRequests = v }},
	{"memory_limit", func(in *procmgr.SpecInput, v string) { in.MemoryLimit = v }},
	{"max_execution_time", func(in *procmgr.SpecInput, v string) { in.MaxExecutionTime = v }},
	{"upload_max", func(in *procmgr.SpecInput, v string) { in.UploadMax = v }},
	{"memory_max", func(in *procmgr.SpecInput, v string) { in.MemoryMax = v }},
	{"cpu_quota", func(in *procmgr.SpecInput, v string) { in.CPUQuota = v }},
	{"tasks_max", func(in *procmgr.SpecInput, v string) { in.TasksMax = v }},
}

// specFieldErrors checks that err is a validation failure in the form every
// caller relies on and returns its parts.
func specFieldErrors(t *testing.T, err error) procmgr.FieldErrors {
	t.Helper()
	if err == nil {
		t.Fatal("ParseSpec succeeded, want an error")
	}
	if !errors.Is(err, procmgr.ErrInvalid) {
		t.Fatalf("error %v does not match ErrInvalid", err)
	}
	var fes procmgr.FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("error %T %v is not FieldErrors", err, err)
	}
	if len(fes) == 0 {
		t.Fatalf("FieldErrors is empty: %v", err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error message has a raw line break (log injection): %q", msg)
	}
	for _, fe := range fes {
		if fe.Field == "" || fe.Rule == "" {
			t.Errorf("FieldError without field or rule: %+v", fe)
		}
		if !errors.Is(fe, procmgr.ErrInvalid) {
			t.Errorf("FieldError %v does not match ErrInvalid", fe)
		}
		if !strings.Contains(msg, fe.Field+": "+fe.Rule) {
			t.Errorf("message %q does not name field %q with its rule %q", msg, fe.Field, fe.Rule)
		}
	}
	return fes
}

func specFieldNames(fes procmgr.FieldErrors) []string {
	var names []string
	for _, fe := range fes {
		names = append(names, fe.Field)
	}
	return names
}

// specMustParse parses a spec that the test expects to be valid.
func specMustParse(t testing.TB, id string, in procmgr.SpecInput) procmgr.Spec {
	t.Helper()
	s, err := procmgr.ParseSpec(id, in, nil)
	if err != nil {
		t.Fatalf("ParseSpec(%q, %+v): %v", id, in, err)
	}
	return s
}

func TestParseInstanceIDValid(t *testing.T) {
	for _, id := range []string{
		"a", "z", "wp-test-001", "a1", "a-1", "a-b-c", "joomla2", "x0-y1-z2",
		strings.Repeat("a", 25), "a" + strings.Repeat("-b", 12),
	} {
		got, err := procmgr.ParseInstanceID(id)
		if err != nil {
			t.Errorf("ParseInstanceID(%q): %v", id, err)
			continue
		}
		if string(got) != id {
			t.Errorf("ParseInstanceID(%q) = %q", id, got)
		}
		if u := got.UserName(); u != "ikabud-"+id || len(u) > 32 {
			t.Errorf("UserName of %q = %q (%d chars), want ikabud-%s within 32 characters", id, u, len(u), id)
		}
	}
	if procmgr.MaxInstanceIDLen != 25 {
		t.Errorf("MaxInstanceIDLen = %d, want 25 (32 - len(\"ikabud-\"))", procmgr.MaxInstanceIDLen)
	}
}

func TestParseInstanceIDInvalid(t *testing.T) {
	for _, id := range []string{
		"", "-a", "a-", "a--b", "A", "Abc", "aBc", "1abc", "0", "wp/test", "/a", "a/", "..", ".", "a.b", "a\nb", "a\n", "\na",
		"a\rb", "a b", " a", "a ", "a\tb", "a'b", `a"b`, "%h", "a%i", "$VAR", "a$b", `a\`, `a\b`, "a_b", "a;b", "a:b",
		"a@b", "a=b", "a\x00b", strings.Repeat("a", 26), strings.Repeat("a", 100), "café", "ａ", "aé", "a\u200bb",
		"ɑ", "a\u2010b",
	} {
		_, err := procmgr.ParseInstanceID(id)
		if err == nil {
			t.Errorf("ParseInstanceID(%q) succeeded, want an error", id)
			continue
		}
		if !errors.Is(err, procmgr.ErrInvalid) {
			t.Errorf("ParseInstanceID(%q): error %v does not match ErrInvalid", id, err)
		}
		var fe *procmgr.FieldError
		if !errors.As(err, &fe) || fe.Field != "id" || fe.Value != id || fe.Rule == "" {
			t.Errorf("ParseInstanceID(%q): error %#v, want a FieldError for field id with the value and a rule", id, err)
		} else if msg := err.Error(); !strings.HasPrefix(msg, "id: ") || !strings.Contains(msg, fe.Rule) {
			t.Errorf("ParseInstanceID(%q): message %q does not name the field and the rule", id, msg)
		}
		if strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("ParseInstanceID(%q): message has a raw line break: %q", id, err.Error())
		}

		// The same id through ParseSpec: exactly one error, for id.
		_, err = procmgr.ParseSpec(id, procmgr.SpecInput{}, nil)
		fes := specFieldErrors(t, err)
		if got := specFieldNames(fes); !slices.Equal(got, []string{"id"}) {
			t.Errorf("ParseSpec(%q, defaults): errors for %v, want [id]", id, got)
		}
	}
}

func TestParseInstanceIDRuleTexts(t *testing.T) {
	for _, c := range []struct{ id, rule string }{
		{"", "is required"},
		{strings.Repeat("a", 26), "at most 25 characters"},
		{"A", "lowercase letter"},
	} {
		_, err := procmgr.ParseInstanceID(c.id)
		if err == nil || !strings.Contains(err.Error(), c.rule) {
			t.Errorf("ParseInstanceID(%q) = %v, want a message containing %q", c.id, err, c.rule)
		}
	}
}

func TestParseSpecHostileFieldValues(t *testing.T) {
	extra := map[string][]string{
		"cms": {"WordPress", "wordpress ", "wordpress\n", "wordpress;", "other", "word-press"},
		"php": {"8", "8.2\n", "8.2 ", "8.2.1", "10.0", "4.4", "8.x", "8_2", "v8.2", "８.２"},
		"pm":  {"Static", "dynamic\n", "on-demand", "static;", "kill"},
	}
	for _, f := range specFields {
		values := append(slices.Clone(specHostile), extra[f.name]...)
		for _, v := range values {
			in := procmgr.SpecInput{}
			f.set(&in, v)
			_, err := procmgr.ParseSpec("wp-test-001", in, nil)
			fes := specFieldErrors(t, err)
			if got := specFieldNames(fes); !slices.Equal(got, []string{f.name}) {
				t.Errorf("%s=%q: errors for %v, want exactly [%s]: %v", f.name, v, got, f.name, err)
				continue
			}
			if fes[0].Value != v {
				t.Errorf("%s=%q: FieldError.Value = %q, want the refused value", f.name, v, fes[0].Value)
			}
		}
	}
}

func TestParseSpecEmptyTakesDefault(t *testing.T) {
	want := specMustParse(t, "a", procmgr.Defaults)
	for _, f := range specFields {
		in := procmgr.Defaults
		f.set(&in, "")
		if got := specMustParse(t, "a", in); !reflect.DeepEqual(got, want) {
			t.Errorf("empty %s: got %+v, want the default %+v", f.name, got, want)
		}
	}
}

func TestParseSpecRanges(t *testing.T) {
	cases := []struct {
		field string
		in    procmgr.SpecInput
		ok    bool
	}{
		{"max_children", procmgr.SpecInput{MaxChildren: "0"}, false},
		{"max_children", procmgr.SpecInput{MaxChildren: "1"}, true},
		{"max_children", procmgr.SpecInput{MaxChildren: "1000", TasksMax: "1001"}, true},
		{"max_children", procmgr.SpecInput{MaxChildren: "1001", TasksMax: "2000"}, false},
		{"max_children", procmgr.SpecInput{MaxChildren: "999999999"}, false},
		{"max_children", procmgr.SpecInput{MaxChildren: "9999999999"}, false},
		{"start_servers", procmgr.SpecInput{StartServers: "0"}, false},
		{"start_servers", procmgr.SpecInput{StartServers: "1001"}, false},
		{"min_spare_servers", procmgr.SpecInput{MinSpareServers: "0"}, false},
		{"max_spare_servers", procmgr.SpecInput{MaxSpareServers: "0"}, false},
		{"max_requests", procmgr.SpecInput{MaxRequests: "0"}, true},
		{"max_requests", procmgr.SpecInput{MaxRequests: "1000000"}, true},
		{"max_requests", procmgr.SpecInput{MaxRequests: "1000001"}, false},
		{"max_execution_time", procmgr.SpecInput{MaxExecutionTime: "0"}, false},
		{"max_execution_time", procmgr.SpecInput{MaxExecutionTime: "1"}, true},
		{"max_execution_time", procmgr.SpecInput{MaxExecutionTime: "86400"}, true},
		{"max_execution_time", procmgr.SpecInput{MaxExecutionTime: "86401"}, false},
		{"memory_limit", procmgr.SpecInput{MemoryLimit: "16M"}, true},
		{"memory_limit", procmgr.SpecInput{MemoryLimit: "16777216"}, true},
		{"memory_limit", procmgr.SpecInput{MemoryLimit: "16777215"}, false},
		{"memory_limit", procmgr.SpecInput{MemoryLimit: "15M"}, false},
		{"memory_limit", procmgr.SpecInput{MemoryLimit: "64G", MemoryMax: "64G"}, true},
		{"memory_limit", procmgr.SpecInput{MemoryLimit: "65G", MemoryMax: "100G"}, false},
		{"memory_limit", procmgr.SpecInput{MemoryLimit: "9999999999999G"}, false},
		{"memory_limit", procmgr.SpecInput{MemoryLimit: "99999999999999G"}, false},
		{"upload_max", procmgr.SpecInput{UploadMax: "1K"}, true},
		{"upload_max", procmgr.SpecInput{UploadMax: "1023"}, false},
		{"upload_max", procmgr.SpecInput{UploadMax: "16G"}, true},
		{"upload_max", procmgr.SpecInput{UploadMax: "17G"}, false},
		{"memory_max", procmgr.SpecInput{MemoryMax: "1024G"}, true},
		{"memory_max", procmgr.SpecInput{MemoryMax: "1025G"}, false},
		{"memory_max", procmgr.SpecInput{MemoryMax: "31M", MemoryLimit: "16M"}, false},
		{"memory_max", procmgr.SpecInput{MemoryMax: "32M", MemoryLimit: "16M"}, true},
		{"cpu_quota", procmgr.SpecInput{CPUQuota: "0%"}, false},
		{"cpu_quota", procmgr.SpecInput{CPUQuota: "0"}, false},
		{"cpu_quota", procmgr.SpecInput{CPUQuota: "1%"}, true},
		{"cpu_quota", procmgr.SpecInput{CPUQuota: "40"}, true},
		{"cpu_quota", procmgr.SpecInput{CPUQuota: "100000%"}, true},
		{"cpu_quota", procmgr.SpecInput{CPUQuota: "100001%"}, false},
		{"cpu_quota", procmgr.SpecInput{CPUQuota: "9999999%"}, false},
		{"cpu_quota", procmgr.SpecInput{CPUQuota: "%"}, false},
		{"tasks_max", procmgr.SpecInput{TasksMax: "7"}, false},
		{"tasks_max", procmgr.SpecInput{TasksMax: "8"}, true},
		{"tasks_max", procmgr.SpecInput{TasksMax: "100000"}, true},
		{"tasks_max", procmgr.SpecInput{TasksMax: "100001"}, false},
	}
	for _, c := range cases {
		_, err := procmgr.ParseSpec("a", c.in, nil)
		if c.ok {
			if err != nil {
				t.Errorf("%+v: %v", c.in, err)
			}
			continue
		}
		fes := specFieldErrors(t, err)
		if got := specFieldNames(fes); !slices.Equal(got, []string{c.field}) {
			t.Errorf("%+v: errors for %v, want [%s]: %v", c.in, got, c.field, err)
		}
	}
}

func TestParseSpecReportsAllFieldErrors(t *testing.T) {
	in := procmgr.SpecInput{
		CMS: "typo3", PHP: "8.2\n", PM: "fast", MaxChildren: "-1", StartServers: "x", MinSpareServers: "1e3",
		MaxSpareServers: "0x10", MaxRequests: "99999999999999999999", MemoryLimit: "1T", MaxExecutionTime: " 5",
		UploadMax: "5 ", MemoryMax: "%h", CPUQuota: "$VAR", TasksMax: `5\`, Env: []string{"path=/bin"},
	}
	_, err := procmgr.ParseSpec("A", in, nil)
	fes := specFieldErrors(t, err)
	want := []string{"id", "cms", "php", "pm", "max_children", "start_servers", "min_spare_servers", "max_spare_servers",
		"max_requests", "memory_limit", "max_execution_time", "upload_max", "memory_max", "cpu_quota", "tasks_max", "env"}
	if got := specFieldNames(fes); !slices.Equal(got, want) {
		t.Errorf("errors for %v,\nwant %v", got, want)
	}
}

func TestParseSpecRelations(t *testing.T) {
	dyn := func(children, start, min, max string) procmgr.SpecInput {
		return procmgr.SpecInput{PM: "dynamic", MaxChildren: children, StartServers: start, MinSpareServers: min, MaxSpareServers: max}
	}
	cases := []struct {
		name  string
		in    procmgr.SpecInput
		field string // "" = valid
		rule  string
	}{
		{"dynamic ok", dyn("10", "3", "2", "5"), "", ""},
		{"dynamic edges", dyn("5", "5", "5", "5"), "", ""},
		{"dynamic min > max spare", dyn("10", "3", "4", "3"), "min_spare_servers", "must not exceed max_spare_servers"},
		{"dynamic start < min spare", dyn("10", "1", "2", "5"), "start_servers", "between min_spare_servers and max_spare_servers"},
		{"dynamic start > max spare", dyn("10", "6", "2", "5"), "start_servers", "between min_spare_servers and max_spare_servers"},
		{"dynamic max spare > max children", dyn("4", "2", "1", "5"), "max_spare_servers", "must not exceed max_children"},
		// The spare-server rules are php-fpm's for dynamic pools only.
		{"static ignores spares", procmgr.SpecInput{PM: "static", MaxChildren: "2", StartServers: "9", MinSpareServers: "8", MaxSpareServers: "3"}, "", ""},
		{"ondemand ignores spares", procmgr.SpecInput{PM: "ondemand", MaxChildren: "2", StartServers: "9", MinSpareServers: "8", MaxSpareServers: "3"}, "", ""},
		{"memory_limit = memory_max", procmgr.SpecInput{MemoryLimit: "512M", MemoryMax: "512M"}, "", ""},
		{"memory_limit > memory_max", procmgr.SpecInput{MemoryLimit: "513M", MemoryMax: "512M"}, "memory_limit", "must not exceed memory_max 512M"},
		{"memory_limit 1G > memory_max 1023M", procmgr.SpecInput{MemoryLimit: "1G", MemoryMax: "1023M"}, "memory_limit", "must not exceed memory_max"},
		{"tasks_max = max_children+1", procmgr.SpecInput{MaxChildren: "63", TasksMax: "64"}, "", ""},
		{"tasks_max = max_children", procmgr.SpecInput{MaxChildren: "64", TasksMax: "64"}, "tasks_max", "must be at least max_children+1 (65)"},
		{"tasks_max < max_children", procmgr.SpecInput{MaxChildren: "100", TasksMax: "8"}, "tasks_max", "must be at least max_children+1 (101)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := procmgr.ParseSpec("rel", c.in, nil)
			if c.field == "" {
				if err != nil {
					t.Fatalf("%v", err)
				}
				if c.in.PM != "" && c.in.PM != "dynamic" {
					// Canonical spare settings, so equal pools compare equal.
					if s.Pool.StartServers != 2 || s.Pool.MinSpareServers != 1 || s.Pool.MaxSpareServers != 3 {
						t.Errorf("%s pool kept spare settings %+v, want the defaults 2/1/3", c.in.PM, s.Pool)
					}
				}
				return
			}
			fes := specFieldErrors(t, err)
			if len(fes) != 1 || fes[0].Field != c.field || !strings.Contains(fes[0].Rule, c.rule) {
				t.Errorf("got %v, want one error for %s containing %q", err, c.field, c.rule)
			}
		})
	}
}

// TestParseSpecReportsEveryProblem holds ParseSpec to its doc comment: "All
// problems are reported together", so a person can fix a whole form at once.
// FAILS on the code as written: parseEnv stops at the first bad entry, the
// spec-wide relations are skipped when any unrelated field is invalid, and of
// the dynamic-pool relations only the first broken one is reported.
func TestParseSpecReportsEveryProblem(t *testing.T) {
	cases := []struct {
		name string
		id   string
		in   procmgr.SpecInput
		want []string
	}{
		{"two bad env entries", "a", procmgr.SpecInput{Env: []string{"path=x", "HOME=/root"}}, []string{"env", "env"}},
		{"bad id and memory relation", "A", procmgr.SpecInput{MemoryLimit: "1G", MemoryMax: "512M"}, []string{"id", "memory_limit"}},
		{"bad cms and tasks relation", "a", procmgr.SpecInput{CMS: "x", MaxChildren: "100", TasksMax: "8"}, []string{"cms", "tasks_max"}},
		{"two independent dynamic relations", "a", procmgr.SpecInput{PM: "dynamic", MaxChildren: "2", StartServers: "4", MinSpareServers: "1", MaxSpareServers: "3"},
			[]string{"start_servers", "max_spare_servers"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := procmgr.ParseSpec(c.id, c.in, nil)
			fes := specFieldErrors(t, err)
			got := specFieldNames(fes)
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("errors for %v, want %v: %v", got, want, err)
			}
		})
	}
}

func TestParseSpecEnv(t *testing.T) {
	many := func(n int) []string {
		var kvs []string
		for i := range n {
			kvs = append(kvs, fmt.Sprintf("VAR_%02d=%d", i, i))
		}
		return kvs
	}
	good := []struct {
		env  []string
		want []procmgr.EnvVar
	}{
		{nil, []procmgr.EnvVar{}},
		{[]string{}, []procmgr.EnvVar{}},
		{[]string{"APP_ENV=production"}, []procmgr.EnvVar{{Key: "APP_ENV", Value: "production"}}},
		{[]string{"Z=1", "A=2", "M_1=x y"}, []procmgr.EnvVar{{Key: "A", Value: "2"}, {Key: "M_1", Value: "x y"}, {Key: "Z", Value: "1"}}},
		{[]string{"URL=https://example.com/a-b_c.d", "MAIL=a+b@example.com", "LIST=a,b:c", "EQ=a=b"},
			[]procmgr.EnvVar{{Key: "EQ", Value: "a=b"}, {Key: "LIST", Value: "a,b:c"}, {Key: "MAIL", Value: "a+b@example.com"}, {Key: "URL", Value: "https://example.com/a-b_c.d"}}},
		{[]string{"LONG=" + strings.Repeat("v", 256)}, []procmgr.EnvVar{{Key: "LONG", Value: strings.Repeat("v", 256)}}},
		{[]string{"K" + strings.Repeat("_", 63) + "=1"}, []procmgr.EnvVar{{Key: "K" + strings.Repeat("_", 63), Value: "1"}}},
	}
	for _, g := range good {
		s, err := procmgr.ParseSpec("env", procmgr.SpecInput{Env: g.env}, nil)
		if err != nil {
			t.Errorf("env %q: %v", g.env, err)
			continue
		}
		if !reflect.DeepEqual(s.Env, g.want) {
			t.Errorf("env %q: got %+v, want %+v (sorted by key)", g.env, s.Env, g.want)
		}
	}
	if s, err := procmgr.ParseSpec("env", procmgr.SpecInput{Env: many(32)}, nil); err != nil || len(s.Env) != 32 {
		t.Errorf("32 variables: %v, %d kept", err, len(s.Env))
	}

	bad := []struct {
		name string
		env  []string
		rule string
	}{
		{"lowercase key", []string{"path=/bin"}, "key must be an uppercase letter"},
		{"mixed-case key", []string{"Path=/bin"}, "key must be an uppercase letter"},
		{"key with digit first", []string{"1A=x"}, "key must be an uppercase letter"},
		{"key with hyphen", []string{"A-B=x"}, "key must be an uppercase letter"},
		{"key with space", []string{"A B=x"}, "key must be an uppercase letter"},
		{"key with bracket", []string{"A]=x"}, "key must be an uppercase letter"},
		{"empty key", []string{"=x"}, "key must be an uppercase letter"},
		{"key too long", []string{"K" + strings.Repeat("_", 64) + "=1"}, "key must be an uppercase letter"},
		{"no equals", []string{"APP_ENV"}, "must be KEY=VALUE"},
		{"empty entry", []string{""}, "must be KEY=VALUE"},
		{"reserved PATH", []string{"PATH=/bin"}, "set by the panel"},
		{"reserved TMPDIR", []string{"TMPDIR=/tmp"}, "set by the panel"},
		{"reserved HOME", []string{"HOME=/root"}, "set by the panel"},
		{"reserved USER", []string{"USER=root"}, "set by the panel"},
		{"reserved TMP", []string{"TMP=/tmp"}, "set by the panel"},
		{"duplicate", []string{"A=1", "A=2"}, "given twice"},
		{"duplicate same value", []string{"A=1", "B=2", "A=1"}, "given twice"},
		{"double quote", []string{`A=x"y`}, "value must be"},
		{"quoted", []string{`A="x"`}, "value must be"},
		{"single quote", []string{"A=x'y"}, "value must be"},
		{"dollar", []string{"A=$HOME"}, "value must be"},
		{"dollar brace", []string{"A=${HOME}"}, "value must be"},
		{"percent", []string{"A=%h"}, "value must be"},
		{"backslash", []string{`A=x\`}, "value must be"},
		{"backslash inside", []string{`A=x\ny`}, "value must be"},
		{"newline", []string{"A=a\nb"}, "value must be"},
		{"trailing newline", []string{"A=a\n"}, "value must be"},
		{"carriage return", []string{"A=a\rb"}, "value must be"},
		{"semicolon", []string{"A=a;b"}, "value must be"},
		{"tab", []string{"A=a\tb"}, "value must be"},
		{"NUL", []string{"A=a\x00b"}, "value must be"},
		{"backtick", []string{"A=`id`"}, "value must be"},
		{"braces", []string{"A={x}"}, "value must be"},
		{"unicode", []string{"A=café"}, "value must be"},
		{"value too long", []string{"LONG=" + strings.Repeat("v", 257)}, "1 to 256 characters"},
		{"too many", many(33), "at most 32 variables"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, err := procmgr.ParseSpec("env", procmgr.SpecInput{Env: b.env}, nil)
			fes := specFieldErrors(t, err)
			if len(fes) != 1 || fes[0].Field != "env" || !strings.Contains(fes[0].Rule, b.rule) {
				t.Errorf("got %v, want one env error containing %q", err, b.rule)
			}
		})
	}
}

// TestParseSpecEmptyEnvValue: php-fpm refuses `env[A] = ""` ("empty value")
// and does not start, so an empty value must be refused here or left out of
// the config. See also TestRenderFPMConfigEdgeSpecsAcceptedByPHPFPM.
// FAILS on the code as written: "A=" is accepted and rendered as env[A] = "".
func TestParseSpecEmptyEnvValue(t *testing.T) {
	s, err := procmgr.ParseSpec("env", procmgr.SpecInput{Env: []string{"A="}}, nil)
	if err != nil {
		fes := specFieldErrors(t, err)
		if len(fes) != 1 || fes[0].Field != "env" {
			t.Errorf("got %v, want one env error", err)
		}
		return
	}
	for _, d := range procmgr.FPMDirectives(procmgr.DefaultLayout(), s) {
		if d.Key == "env[A]" && (d.Value == `""` || d.Value == "") {
			t.Errorf("env A=\"\" accepted and rendered as %s = %s, which php-fpm refuses (\"empty value\")", d.Key, d.Value)
		}
	}
}

func TestParseSpecInstalledPHP(t *testing.T) {
	installed := []procmgr.PHPVersion{"8.2", "8.3"}
	if s, err := procmgr.ParseSpec("a", procmgr.SpecInput{PHP: "8.3"}, installed); err != nil || s.PHP != "8.3" {
		t.Errorf("installed 8.3: %v %q", err, s.PHP)
	}
	if _, err := procmgr.ParseSpec("a", procmgr.SpecInput{}, installed); err != nil {
		t.Errorf("default 8.2 with 8.2 installed: %v", err)
	}
	_, err := procmgr.ParseSpec("a", procmgr.SpecInput{PHP: "8.1"}, installed)
	fes := specFieldErrors(t, err)
	if len(fes) != 1 || fes[0].Field != "php" || !strings.Contains(fes[0].Rule, "installed PHP version (8.2, 8.3)") {
		t.Errorf("8.1 not installed: got %v, want a php error listing 8.2, 8.3", err)
	}
	_, err = procmgr.ParseSpec("a", procmgr.SpecInput{}, []procmgr.PHPVersion{"7.4"})
	if fes := specFieldErrors(t, err); fes[0].Field != "php" {
		t.Errorf("default 8.2 with only 7.4 installed: %v", err)
	}
	// An empty list means "not known": any well-formed version passes.
	for _, v := range []string{"5.6", "7.4", "8.9", "9.0"} {
		if _, err := procmgr.ParseSpec("a", procmgr.SpecInput{PHP: v}, nil); err != nil {
			t.Errorf("php %s with no list: %v", v, err)
		}
	}
	if got := procmgr.PHPVersion("8.2").FPMBinary(); got != "/usr/sbin/php-fpm8.2" {
		t.Errorf("FPMBinary = %q", got)
	}
}

// specRoundTripInputs are specs of different shapes for the round-trip tests.
var specRoundTripInputs = []struct {
	id string
	in procmgr.SpecInput
}{
	{"wp-test-001", procmgr.SpecInput{}},
	{"dyn", procmgr.SpecInput{CMS: "wordpress", PM: "dynamic", MaxChildren: "10", StartServers: "3", MinSpareServers: "2", MaxSpareServers: "5",
		Env: []string{"WP_ENV=production", "SITE=https://example.com/x", "GREETING=hello world"}}},
	{"static-1", procmgr.SpecInput{CMS: "joomla", PHP: "8.3", PM: "static", MaxChildren: "8", StartServers: "7", MaxRequests: "0"}},
	{"odd-sizes", procmgr.SpecInput{CMS: "drupal", MemoryLimit: "16777217", UploadMax: "1536", MemoryMax: "1024G", CPUQuota: "250", TasksMax: "100000"}},
	{"kilo", procmgr.SpecInput{CMS: "dokuwiki", MemoryLimit: "32768K", UploadMax: "1025K", MemoryMax: "2048M", CPUQuota: "007%", MaxChildren: "0007"}},
	{"max", procmgr.SpecInput{MaxChildren: "1000", MaxRequests: "1000000", MaxExecutionTime: "86400", MemoryLimit: "64G", UploadMax: "16G", MemoryMax: "1024G", CPUQuota: "100000%", TasksMax: "100000"}},
}

func TestSpecInputRoundTrip(t *testing.T) {
	for _, c := range specRoundTripInputs {
		s := specMustParse(t, c.id, c.in)
		again := specMustParse(t, c.id, s.Input())
		if !reflect.DeepEqual(again, s) {
			t.Errorf("%s: ParseSpec(Input()) = %+v, want %+v", c.id, again, s)
		}
		// Input is canonical: a second round gives the same text.
		if in2 := again.Input(); !reflect.DeepEqual(in2, s.Input()) {
			t.Errorf("%s: Input not stable: %+v vs %+v", c.id, in2, s.Input())
		}

		data, err := procmgr.MarshalSpec(s)
		if err != nil {
			t.Fatalf("%s: MarshalSpec: %v", c.id, err)
		}
		back, err := procmgr.UnmarshalSpec(c.id, data)
		if err != nil {
			t.Fatalf("%s: UnmarshalSpec(%s): %v", c.id, data, err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Errorf("%s: UnmarshalSpec(MarshalSpec) = %+v, want %+v", c.id, back, s)
		}
	}
}

func TestUnmarshalSpecValidates(t *testing.T) {
	_, err := procmgr.UnmarshalSpec("a", []byte(`{"max_children":"5\n","env":["PATH=/x"]}`))
	fes := specFieldErrors(t, err)
	if got := specFieldNames(fes); !slices.Equal(got, []string{"max_children", "env"}) {
		t.Errorf("errors for %v, want [max_children env]", got)
	}
	if _, err := procmgr.UnmarshalSpec("a", []byte(`{"max_children":5}`)); err == nil {
		t.Error("a number where a string is stored was accepted")
	}
	if _, err := procmgr.UnmarshalSpec("a", []byte(`not json`)); err == nil {
		t.Error("broken JSON was accepted")
	}
	if _, err := procmgr.UnmarshalSpec("A", []byte(`{}`)); !errors.Is(err, procmgr.ErrInvalid) {
		t.Errorf("bad id: %v, want ErrInvalid", err)
	}
}

func TestOverlay(t *testing.T) {
	base := procmgr.SpecInput{CMS: "joomla", PM: "static", Env: []string{"A=1"}}
	got := procmgr.SpecInput{PM: "dynamic"}.Overlay(base)
	if got.CMS != "joomla" || got.PM != "dynamic" || !slices.Equal(got.Env, []string{"A=1"}) {
		t.Errorf("Overlay = %+v", got)
	}
	// An empty, non-nil env list clears the variables.
	if got := (procmgr.SpecInput{Env: []string{}}).Overlay(base); len(got.Env) != 0 {
		t.Errorf("Overlay with empty env kept %q", got.Env)
	}
}

func TestBytesString(t *testing.T) {
	for _, c := range []struct {
		b    procmgr.Bytes
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1000, "1000"},
		{1023, "1023"},
		{1536, "1536"},
		{512 << 10, "512K"},
		{1 << 10, "1K"},
		{1025 << 10, "1025K"},
		{256 << 20, "256M"},
		{1536 << 20, "1536M"},
		{2 << 30, "2G"},
		{1 << 40, "1024G"},
		{(1 << 30) + 1, "1073741825"},
	} {
		if got := c.b.String(); got != c.want {
			t.Errorf("Bytes(%d).String() = %q, want %q", uint64(c.b), got, c.want)
		}
	}
	if got := procmgr.CPUPercent(40).String(); got != "40%" {
		t.Errorf("CPUPercent(40) = %q", got)
	}
}

func TestParseLimits(t *testing.T) {
	l, err := procmgr.ParseLimits("300M", "40%", "77")
	if err != nil {
		t.Fatal(err)
	}
	if want := (procmgr.Limits{MemoryMax: 300 << 20, CPUQuota: 40, TasksMax: 77}); l != want {
		t.Errorf("ParseLimits = %+v, want %+v", l, want)
	}
	// Empty values are errors here: the caller fills in current values.
	_, err = procmgr.ParseLimits("", "", "")
	fes := specFieldErrors(t, err)
	if got := specFieldNames(fes); !slices.Equal(got, []string{"memory_max", "cpu_quota", "tasks_max"}) {
		t.Errorf("empty limits: errors for %v", got)
	}
	for _, v := range specHostile {
		_, err := procmgr.ParseLimits(v, v, v)
		fes := specFieldErrors(t, err)
		if got := specFieldNames(fes); !slices.Equal(got, []string{"memory_max", "cpu_quota", "tasks_max"}) {
			t.Errorf("limits %q: errors for %v", v, got)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]procmgr.Signal{
		"kill": procmgr.SigKILL, "SIGKILL": procmgr.SigKILL, "KILL": procmgr.SigKILL, "sigkill": procmgr.SigKILL,
		"Term": procmgr.SigTERM, "SIGTERM": procmgr.SigTERM, "hup": procmgr.SigHUP, "usr1": procmgr.SigUSR1,
		"SIGUSR2": procmgr.SigUSR2, "int": procmgr.SigINT, "SigQuit": procmgr.SigQUIT,
	} {
		got, err := procmgr.ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for sig, n := range map[procmgr.Signal]int{procmgr.SigHUP: 1, procmgr.SigINT: 2, procmgr.SigQUIT: 3, procmgr.SigKILL: 9, procmgr.SigUSR1: 10, procmgr.SigUSR2: 12, procmgr.SigTERM: 15} {
		if got := sig.Number(); got != n {
			t.Errorf("%s.Number() = %d, want %d", sig, got, n)
		}
	}
	for _, in := range []string{
		"STOP", "SIGSTOP", "CONT", "9", "15", "-9", "", "SIG", "sig", " KILL", "KILL ", "KILL\n", "SIGSIGKILL", "SIG_KILL",
		"SIG-KILL", "KILL;", "%h", "$SIG", "USR3", "SIGRTMIN", "WINCH",
	} {
		_, err := procmgr.ParseSignal(in)
		if err == nil {
			t.Errorf("ParseSignal(%q) succeeded, want an error", in)
			continue
		}
		var fe *procmgr.FieldError
		if !errors.Is(err, procmgr.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "signal" || !strings.Contains(err.Error(), "must be one of") {
			t.Errorf("ParseSignal(%q): %v, want a FieldError for signal", in, err)
		}
	}
}

// TestParseSignalASCIIOnly: the allow-list is of ASCII names, but
// strings.ToUpper folds some non-ASCII letters onto ASCII ones ("ſ" -> "S",
// "ı" -> "I"), so these are accepted.
// FAILS on the code as written (low severity: the result is still a canonical
// Signal).
func TestParseSignalASCIIOnly(t *testing.T) {
	for _, in := range []string{"ſigkill", "kıll", "SIGKıLL", "quıt"} {
		if got, err := procmgr.ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %q, want an error: only ASCII names are on the allow-list", in, got)
		}
	}
}

func TestDefaultsAreValid(t *testing.T) {
	s := specMustParse(t, "wp-test-001", procmgr.Defaults)
	if empty := specMustParse(t, "wp-test-001", procmgr.SpecInput{}); !reflect.DeepEqual(empty, s) {
		t.Errorf("empty input = %+v, want the defaults %+v", empty, s)
	}
	want := procmgr.Spec{
		ID: "wp-test-001", CMS: procmgr.CMSPHP, PHP: "8.2",
		Pool: procmgr.PoolSettings{PM: procmgr.PMOndemand, MaxChildren: 5, StartServers: 2, MinSpareServers: 1, MaxSpareServers: 3,
			MaxRequests: 500, MemoryLimit: 256 << 20, MaxExecutionTime: 30, UploadMax: 64 << 20},
		Limits: procmgr.Limits{MemoryMax: 512 << 20, CPUQuota: 100, TasksMax: 64},
		Env:    []procmgr.EnvVar{}, Domains: []procmgr.Domain{}, OnUnhealthy: procmgr.UnhealthyRestart,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("defaults = %+v, want %+v", s, want)
	}
	// The defaults are also valid as a dynamic pool.
	in := procmgr.Defaults
	in.PM = "dynamic"
	specMustParse(t, "a", in)
	if _, err := procmgr.ParseSpec("a", procmgr.Defaults, []procmgr.PHPVersion{"8.2"}); err != nil {
		t.Errorf("defaults with 8.2 installed: %v", err)
	}
	for _, cms := range []string{"wordpress", "joomla", "drupal", "dokuwiki", "php"} {
		if s, err := procmgr.ParseSpec("a", procmgr.SpecInput{CMS: cms}, nil); err != nil || string(s.CMS) != cms {
			t.Errorf("cms %s: %v", cms, err)
		}
	}
}

func TestFieldErrorMessage(t *testing.T) {
	long := strings.Repeat("x", 100) + "\n"
	fe := &procmgr.FieldError{Field: "cms", Value: long, Rule: "must be one of a, b"}
	msg := fe.Error()
	if !strings.HasPrefix(msg, "cms: must be one of a, b (got ") || strings.Contains(msg, "\n") || len(msg) > 120 {
		t.Errorf("message %q: want field, rule, and the value cut and escaped", msg)
	}
	fes := procmgr.FieldErrors{fe, {Field: "php", Value: "1", Rule: "r"}}
	if msg := fes.Error(); !strings.HasPrefix(msg, "invalid spec: cms: ") || !strings.Contains(msg, "; php: r (got "+strconv.Quote("1")+")") {
		t.Errorf("FieldErrors message %q", msg)
	}
}
