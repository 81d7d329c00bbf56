package procmgr_test

import (
	"strings"
	"testing"

	"github.com/ikabud/panel/internal/procmgr"
)

func TestParseDomain(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	// 63+1+63+1+63+1+61 = 253 characters: the longest name accepted.
	longest := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	good := []string{"example.com", "blog.example.test", "xn--bcher-kva.example", "a-b.c0.de", "1.example.com", longest, label63 + ".com"}
	for _, s := range good {
		if d, err := procmgr.ParseDomain(s); err != nil || string(d) != s {
			t.Errorf("ParseDomain(%q) = %q, %v; want it accepted", s, d, err)
		}
	}
	bad := map[string]string{
		"":                               "empty",
		"a b.com":                        "each label",
		"a;b.com":                        "each label",
		"a{b.com":                        "each label",
		"a~b.com":                        "each label",
		"$host":                          "two labels",
		"$host.com":                      "each label",
		"a.com;include /etc/passwd":      "each label",
		strings.Repeat("a", 64) + ".com": "1 to 63",
		longest + "b":                    "at most 253",
		"Example.com":                    "lowercase",
		"bücher.example":                 "punycode",
		"*.example.com":                  "wildcard",
		"localhost":                      "two labels",
		"example.com.":                   "empty label",
		"a..com":                         "empty label",
		"-a.com":                         "hyphen",
		"a-.com":                         "hyphen",
		"a_b.com":                        "each label",
		"10.0.0.1":                       "IP address",
		"a.com\n":                        "each label",
		"a.com\x00":                      "each label",
	}
	for s, rule := range bad {
		_, err := procmgr.ParseDomain(s)
		fe, ok := err.(*procmgr.FieldError)
		if !ok || fe.Field != "domains" || !strings.Contains(fe.Rule, rule) {
			t.Errorf("ParseDomain(%q) = %v; want a domains error about %q", s, err, rule)
		}
	}
}

func TestSpecDomains(t *testing.T) {
	s := specMustParse(t, "a", procmgr.SpecInput{Domains: []string{"www.example.com", "example.com"}})
	if len(s.Domains) != 2 || s.Domains[0] != "www.example.com" {
		t.Errorf("domains = %v, want the order kept (the first is the primary name)", s.Domains)
	}
	if got := s.Input().Domains; strings.Join(got, " ") != "www.example.com example.com" {
		t.Errorf("Input().Domains = %v", got)
	}
	// Overlay: nil keeps the base's list, an empty one clears it.
	if in := (procmgr.SpecInput{}).Overlay(s.Input()); len(in.Domains) != 2 {
		t.Errorf("nil domains over a base = %v, want the base's", in.Domains)
	}
	if in := (procmgr.SpecInput{Domains: []string{}}).Overlay(s.Input()); len(in.Domains) != 0 {
		t.Errorf("empty domains over a base = %v, want none", in.Domains)
	}
	_, err := procmgr.ParseSpec("a", procmgr.SpecInput{Domains: []string{"a.com", "a.com", "b c"}}, nil)
	fes := specFieldErrors(t, err)
	if len(fes) != 2 {
		t.Errorf("errors = %v, want the duplicate and the bad name both reported", err)
	}
	many := make([]string, procmgr.MaxDomains+1)
	for i := range many {
		many[i] = "d" + strings.Repeat("x", i) + ".com"
	}
	if _, err := procmgr.ParseSpec("a", procmgr.SpecInput{Domains: many}, nil); err == nil {
		t.Errorf("%d domains accepted", len(many))
	}
}

func TestSpecOnUnhealthy(t *testing.T) {
	if s := specMustParse(t, "a", procmgr.SpecInput{}); s.OnUnhealthy != procmgr.UnhealthyRestart {
		t.Errorf("default on_unhealthy = %q, want restart", s.OnUnhealthy)
	}
	if s := specMustParse(t, "a", procmgr.SpecInput{OnUnhealthy: "alert"}); s.OnUnhealthy != procmgr.UnhealthyAlert {
		t.Errorf("on_unhealthy = %q, want alert", s.OnUnhealthy)
	}
	if _, err := procmgr.ParseSpec("a", procmgr.SpecInput{OnUnhealthy: "reboot"}, nil); err == nil {
		t.Error("on_unhealthy reboot accepted")
	}
}

func TestStoredUnlimitedExecutionTimeLoads(t *testing.T) {
	// A spec stored before max_execution_time 0 was refused still loads,
	// with the longest limit there is.
	s, err := procmgr.UnmarshalSpec("a", []byte(`{"max_execution_time":"0"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Pool.MaxExecutionTime != 86400 || s.Pool.RequestTerminateTimeout() <= 86400 {
		t.Errorf("max_execution_time %d, terminate %d", s.Pool.MaxExecutionTime, s.Pool.RequestTerminateTimeout())
	}
}
