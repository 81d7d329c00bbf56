package procmgr

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// MaxInstanceIDLen keeps the derived Unix user name ("ikabud-" + id) within
// the 32 characters that useradd and most tools accept.
const MaxInstanceIDLen = 32 - len(UserPrefix)

// UserPrefix is put before an instance id to name its Unix user and group.
// Ids contain no prefix-like separator ambiguity: two ids never map to one name
// because the mapping is a plain concatenation.
const UserPrefix = "ikabud-"

// InstanceID names an instance: a lowercase letter, then lowercase letters,
// digits and single hyphens, not ending in a hyphen.
type InstanceID string

var instanceIDRe = regexp.MustCompile(`^[a-z](?:[a-z0-9]|-[a-z0-9])*$`)

// reservedIDs would collide with names in the rendered files: the pool
// section is named after the id, and php-fpm's own section is [global].
var reservedIDs = map[string]bool{"global": true}

// ParseInstanceID validates s as an instance id.
func ParseInstanceID(s string) (InstanceID, error) {
	if s == "" {
		return "", invalid("id", s, "is required")
	}
	if len(s) > MaxInstanceIDLen {
		return "", invalid("id", s, fmt.Sprintf("must be at most %d characters", MaxInstanceIDLen))
	}
	if !instanceIDRe.MatchString(s) {
		return "", invalid("id", s, "must start with a lowercase letter and contain only lowercase letters, digits and single hyphens, not at the end")
	}
	if reservedIDs[s] {
		return "", invalid("id", s, "is reserved (php-fpm names its global section \"global\")")
	}
	return InstanceID(s), nil
}

// UserName is the Unix user (and group) that owns and runs the instance.
func (id InstanceID) UserName() string { return UserPrefix + string(id) }

// CMS is the kind of site an instance hosts.
type CMS string

// The CMS kinds the panel knows.
const (
	CMSWordPress CMS = "wordpress"
	CMSJoomla    CMS = "joomla"
	CMSDrupal    CMS = "drupal"
	CMSDokuWiki  CMS = "dokuwiki"
	CMSPHP       CMS = "php"
)

var allCMS = []CMS{CMSWordPress, CMSJoomla, CMSDrupal, CMSDokuWiki, CMSPHP}

// PHPVersion is a PHP major.minor version such as "8.2".
type PHPVersion string

var phpVersionRe = regexp.MustCompile(`^[5-9]\.[0-9]$`)

// FPMBinary is the php-fpm executable of this version on Debian-style hosts.
func (v PHPVersion) FPMBinary() string { return "/usr/sbin/php-fpm" + string(v) }

// PMMode is php-fpm's process manager.
type PMMode string

// The process managers php-fpm offers.
const (
	PMStatic   PMMode = "static"
	PMDynamic  PMMode = "dynamic"
	PMOndemand PMMode = "ondemand"
)

// Bytes is a size in bytes, written by people as 512K, 256M, 2G or plain bytes.
type Bytes uint64

var bytesRe = regexp.MustCompile(`^([0-9]{1,13})([KMG]?)$`)

func parseBytes(field, s string, min, max Bytes) (Bytes, error) {
	m := bytesRe.FindStringSubmatch(s)
	if m == nil {
		return 0, invalid(field, s, "must be a whole number of bytes, optionally followed by K, M or G (for example 256M)")
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, invalid(field, s, "is too large")
	}
	mult := map[string]uint64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m[2]]
	if n > uint64(max)/mult {
		return 0, invalid(field, s, fmt.Sprintf("must be between %s and %s", min, max))
	}
	b := Bytes(n * mult)
	if b < min || b > max {
		return 0, invalid(field, s, fmt.Sprintf("must be between %s and %s", min, max))
	}
	return b, nil
}

// String writes the size in the largest unit that divides it exactly, the
// form both php.ini and systemd accept.
func (b Bytes) String() string {
	switch {
	case b != 0 && b%(1<<30) == 0:
		return strconv.FormatUint(uint64(b>>30), 10) + "G"
	case b != 0 && b%(1<<20) == 0:
		return strconv.FormatUint(uint64(b>>20), 10) + "M"
	case b != 0 && b%(1<<10) == 0:
		return strconv.FormatUint(uint64(b>>10), 10) + "K"
	}
	return strconv.FormatUint(uint64(b), 10)
}

// CPUPercent is a CPU quota in percent of one CPU (200 = two full CPUs).
type CPUPercent uint32

var cpuRe = regexp.MustCompile(`^([0-9]{1,6})%?$`)

func (c CPUPercent) String() string { return strconv.FormatUint(uint64(c), 10) + "%" }

// Signal is a signal the panel may send to an instance's master.
type Signal string

// The signals on the allow-list.
const (
	SigTERM Signal = "TERM"
	SigKILL Signal = "KILL"
	SigHUP  Signal = "HUP"
	SigUSR1 Signal = "USR1"
	SigUSR2 Signal = "USR2"
	SigINT  Signal = "INT"
	SigQUIT Signal = "QUIT"
)

var signalNumbers = map[Signal]int{SigHUP: 1, SigINT: 2, SigQUIT: 3, SigKILL: 9, SigUSR1: 10, SigUSR2: 12, SigTERM: 15}

// ParseSignal accepts a name from the allow-list, with or without "SIG",
// in any case.
func ParseSignal(s string) (Signal, error) {
	for i := 0; i < len(s); i++ {
		// Upper-casing non-ASCII letters can produce ASCII ones
		// ("ſ" -> "S"); the allow-list is for ASCII names only.
		if s[i] >= 0x80 {
			return "", invalid("signal", s, "must be one of TERM, KILL, HUP, USR1, USR2, INT, QUIT")
		}
	}
	u := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if _, ok := signalNumbers[Signal(u)]; !ok {
		return "", invalid("signal", s, "must be one of TERM, KILL, HUP, USR1, USR2, INT, QUIT")
	}
	return Signal(u), nil
}

// Number is the Linux signal number.
func (s Signal) Number() int { return signalNumbers[s] }

// PoolSettings are the php-fpm pool and PHP settings of an instance.
type PoolSettings struct {
	PM               PMMode `json:"pm"`
	MaxChildren      int    `json:"max_children"`
	StartServers     int    `json:"start_servers"`
	MinSpareServers  int    `json:"min_spare_servers"`
	MaxSpareServers  int    `json:"max_spare_servers"`
	MaxRequests      int    `json:"max_requests"`
	MemoryLimit      Bytes  `json:"memory_limit"`
	MaxExecutionTime int    `json:"max_execution_time"`
	UploadMax        Bytes  `json:"upload_max"`
}

// RequestTerminateTimeout is how long php-fpm lets one request run, in
// seconds of wall-clock time, before it kills the worker: max_execution_time
// counts the script's CPU time only (a script waiting on a lock or a remote
// server never reaches it), so this is the bound that always holds.
func (p PoolSettings) RequestTerminateTimeout() int { return p.MaxExecutionTime + requestGrace }

// requestGrace is what a request may run past max_execution_time before
// php-fpm ends it: time for PHP's own timeout error to be sent first.
const requestGrace = 10

// Limits are the service's resource limits, enforced by the cgroup.
type Limits struct {
	MemoryMax Bytes      `json:"memory_max"`
	CPUQuota  CPUPercent `json:"cpu_quota"`
	TasksMax  int        `json:"tasks_max"`
}

// EnvVar is one environment variable given to PHP.
type EnvVar struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Spec is everything needed to provision one instance. Only ParseSpec makes
// one, so a Spec in hand has passed every rule.
type Spec struct {
	ID     InstanceID   `json:"id"`
	CMS    CMS          `json:"cms"`
	PHP    PHPVersion   `json:"php"`
	Pool   PoolSettings `json:"pool"`
	Limits Limits       `json:"limits"`
	Env    []EnvVar     `json:"env"`
	// Domains are the host names the instance's site answers to, the
	// first being its primary name; none: no site is published.
	Domains     []Domain    `json:"domains"`
	OnUnhealthy OnUnhealthy `json:"on_unhealthy"`
}

// SpecInput is a spec as a person or a client typed it: every field a string,
// empty meaning "the default". It is what forms, flags and the JSON API carry.
type SpecInput struct {
	CMS              string   `json:"cms,omitempty"`
	PHP              string   `json:"php,omitempty"`
	PM               string   `json:"pm,omitempty"`
	MaxChildren      string   `json:"max_children,omitempty"`
	StartServers     string   `json:"start_servers,omitempty"`
	MinSpareServers  string   `json:"min_spare_servers,omitempty"`
	MaxSpareServers  string   `json:"max_spare_servers,omitempty"`
	MaxRequests      string   `json:"max_requests,omitempty"`
	MemoryLimit      string   `json:"memory_limit,omitempty"`
	MaxExecutionTime string   `json:"max_execution_time,omitempty"`
	UploadMax        string   `json:"upload_max,omitempty"`
	MemoryMax        string   `json:"memory_max,omitempty"`
	CPUQuota         string   `json:"cpu_quota,omitempty"`
	TasksMax         string   `json:"tasks_max,omitempty"`
	Env              []string `json:"env,omitempty"` // KEY=VALUE
	// Domains: nil keeps the current list (or none); an empty list clears it.
	Domains     []string `json:"domains,omitempty"`
	OnUnhealthy string   `json:"on_unhealthy,omitempty"`
}

// Defaults are the values of the tool the panel replaces, where it had them.
var Defaults = SpecInput{
	CMS:              string(CMSPHP),
	PHP:              "8.2",
	PM:               string(PMOndemand),
	MaxChildren:      "5",
	StartServers:     "2",
	MinSpareServers:  "1",
	MaxSpareServers:  "3",
	MaxRequests:      "500",
	MemoryLimit:      "256M",
	MaxExecutionTime: "30",
	UploadMax:        "64M",
	MemoryMax:        "512M",
	CPUQuota:         "100%",
	TasksMax:         "64",
	OnUnhealthy:      string(UnhealthyRestart),
}

// Overlay returns in with every empty field taken from base.
func (in SpecInput) Overlay(base SpecInput) SpecInput {
	pick := func(a, b string) string {
		if a == "" {
			return b
		}
		return a
	}
	out := SpecInput{
		CMS:              pick(in.CMS, base.CMS),
		PHP:              pick(in.PHP, base.PHP),
		PM:               pick(in.PM, base.PM),
		MaxChildren:      pick(in.MaxChildren, base.MaxChildren),
		StartServers:     pick(in.StartServers, base.StartServers),
		MinSpareServers:  pick(in.MinSpareServers, base.MinSpareServers),
		MaxSpareServers:  pick(in.MaxSpareServers, base.MaxSpareServers),
		MaxRequests:      pick(in.MaxRequests, base.MaxRequests),
		MemoryLimit:      pick(in.MemoryLimit, base.MemoryLimit),
		MaxExecutionTime: pick(in.MaxExecutionTime, base.MaxExecutionTime),
		UploadMax:        pick(in.UploadMax, base.UploadMax),
		MemoryMax:        pick(in.MemoryMax, base.MemoryMax),
		CPUQuota:         pick(in.CPUQuota, base.CPUQuota),
		TasksMax:         pick(in.TasksMax, base.TasksMax),
		Env:              in.Env,
		Domains:          in.Domains,
		OnUnhealthy:      pick(in.OnUnhealthy, base.OnUnhealthy),
	}
	if in.Env == nil {
		out.Env = base.Env
	}
	if in.Domains == nil {
		out.Domains = base.Domains
	}
	return out
}

// Input returns the spec in its input form, the inverse of ParseSpec.
func (s Spec) Input() SpecInput {
	env := make([]string, 0, len(s.Env))
	for _, e := range s.Env {
		env = append(env, e.Key+"="+e.Value)
	}
	domains := make([]string, len(s.Domains))
	for i, d := range s.Domains {
		domains[i] = string(d)
	}
	return SpecInput{
		CMS:              string(s.CMS),
		PHP:              string(s.PHP),
		PM:               string(s.Pool.PM),
		MaxChildren:      strconv.Itoa(s.Pool.MaxChildren),
		StartServers:     strconv.Itoa(s.Pool.StartServers),
		MinSpareServers:  strconv.Itoa(s.Pool.MinSpareServers),
		MaxSpareServers:  strconv.Itoa(s.Pool.MaxSpareServers),
		MaxRequests:      strconv.Itoa(s.Pool.MaxRequests),
		MemoryLimit:      s.Pool.MemoryLimit.String(),
		MaxExecutionTime: strconv.Itoa(s.Pool.MaxExecutionTime),
		UploadMax:        s.Pool.UploadMax.String(),
		MemoryMax:        s.Limits.MemoryMax.String(),
		CPUQuota:         s.Limits.CPUQuota.String(),
		TasksMax:         strconv.Itoa(s.Limits.TasksMax),
		Env:              env,
		Domains:          domains,
		OnUnhealthy:      string(s.OnUnhealthy),
	}
}

// Ranges of the numeric settings. They are generous but finite, so that an
// oversize number is refused here rather than by php-fpm at start time.
const (
	maxChildrenLimit = 1000
	maxRequestsLimit = 1_000_000
	maxExecLimit     = 86_400
	minTasks         = 8
	maxTasks         = 100_000
	maxCPUPercent    = 100_000
	maxEnvVars       = 32
	maxEnvValueLen   = 256
)

var (
	envKeyRe   = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)
	envValueRe = regexp.MustCompile(`^[A-Za-z0-9 _.,:/@+=-]+$`)
	// Keys php-fpm or the panel set themselves.
	reservedEnv = map[string]bool{"PATH": true, "TMPDIR": true, "TMP": true, "TEMP": true, "HOME": true, "USER": true,
		// These change which code or config PHP loads.
		"PHPRC": true, "PHP_INI_SCAN_DIR": true}
)

func parseInt(field, s string, min, max int) (int, error) {
	if len(s) == 0 || len(s) > 9 || strings.Trim(s, "0123456789") != "" {
		return 0, invalid(field, s, fmt.Sprintf("must be a whole number between %d and %d", min, max))
	}
	n, _ := strconv.Atoi(s)
	if n < min || n > max {
		return 0, invalid(field, s, fmt.Sprintf("must be a whole number between %d and %d", min, max))
	}
	return n, nil
}

// ParseSpec validates a spec for id. Empty fields take Defaults; php must be
// one of installedPHP when that list is not empty. All problems are reported
// together as FieldErrors.
func ParseSpec(id string, in SpecInput, installedPHP []PHPVersion) (Spec, error) {
	in = in.Overlay(Defaults)
	var errs FieldErrors
	collect := func(err error) {
		var fe *FieldError
		var fes FieldErrors
		switch {
		case errors.As(err, &fes):
			errs = append(errs, fes...)
		case errors.As(err, &fe):
			errs = append(errs, fe)
		}
	}
	var s Spec
	var err error
	if s.ID, err = ParseInstanceID(id); err != nil {
		collect(err)
	}
	if s.CMS, err = parseCMS(in.CMS); err != nil {
		collect(err)
	}
	if s.PHP, err = parsePHP(in.PHP, installedPHP); err != nil {
		collect(err)
	}
	pool, poolOK := parsePool(in, collect)
	s.Pool = pool
	lim, limErr := ParseLimits(in.MemoryMax, in.CPUQuota, in.TasksMax)
	collect(limErr)
	s.Limits = lim
	if s.Env, err = parseEnv(in.Env); err != nil {
		collect(err)
	}
	if s.Domains, err = parseDomains(in.Domains); err != nil {
		collect(err)
	}
	if s.OnUnhealthy, err = parseOnUnhealthy(in.OnUnhealthy); err != nil {
		collect(err)
	}
	// Each relation is checked whenever both of its fields parsed, so one
	// bad field never hides another problem.
	if poolOK.memoryLimit && s.Limits.MemoryMax != 0 && s.Pool.MemoryLimit > s.Limits.MemoryMax {
		collect(invalid("memory_limit", s.Pool.MemoryLimit.String(), "must not exceed memory_max "+s.Limits.MemoryMax.String()))
	}
	if poolOK.maxChildren && s.Limits.TasksMax != 0 && s.Limits.TasksMax < s.Pool.MaxChildren+1 {
		// The master and max_children workers must fit in the task limit.
		collect(invalid("tasks_max", strconv.Itoa(s.Limits.TasksMax), fmt.Sprintf("must be at least max_children+1 (%d)", s.Pool.MaxChildren+1)))
	}
	if len(errs) > 0 {
		return Spec{}, errs
	}
	return s, nil
}

func parseCMS(s string) (CMS, error) {
	for _, c := range allCMS {
		if string(c) == s {
			return c, nil
		}
	}
	return "", invalid("cms", s, "must be one of wordpress, joomla, drupal, dokuwiki, php")
}

func parsePHP(s string, installed []PHPVersion) (PHPVersion, error) {
	if !phpVersionRe.MatchString(s) {
		return "", invalid("php", s, "must be a PHP version like 8.2")
	}
	v := PHPVersion(s)
	if len(installed) == 0 {
		return v, nil
	}
	names := make([]string, len(installed))
	for i, iv := range installed {
		if iv == v {
			return v, nil
		}
		names[i] = string(iv)
	}
	return "", invalid("php", s, "must be an installed PHP version ("+strings.Join(names, ", ")+")")
}

// poolParsed says which pool fields parsed, for the cross-field checks.
type poolParsed struct{ maxChildren, memoryLimit bool }

func parsePool(in SpecInput, collect func(error)) (PoolSettings, poolParsed) {
	var p PoolSettings
	var ok poolParsed
	bad := false
	keep := func(err error) {
		bad = true
		collect(err)
	}
	switch PMMode(in.PM) {
	case PMStatic, PMDynamic, PMOndemand:
		p.PM = PMMode(in.PM)
	default:
		keep(invalid("pm", in.PM, "must be one of static, dynamic, ondemand"))
	}
	var err error
	if p.MaxChildren, err = parseInt("max_children", in.MaxChildren, 1, maxChildrenLimit); err != nil {
		keep(err)
	} else {
		ok.maxChildren = true
	}
	var startOK, minOK, maxOK bool
	if p.StartServers, err = parseInt("start_servers", in.StartServers, 1, maxChildrenLimit); err != nil {
		keep(err)
	} else {
		startOK = true
	}
	if p.MinSpareServers, err = parseInt("min_spare_servers", in.MinSpareServers, 1, maxChildrenLimit); err != nil {
		keep(err)
	} else {
		minOK = true
	}
	if p.MaxSpareServers, err = parseInt("max_spare_servers", in.MaxSpareServers, 1, maxChildrenLimit); err != nil {
		keep(err)
	} else {
		maxOK = true
	}
	if p.MaxRequests, err = parseInt("max_requests", in.MaxRequests, 0, maxRequestsLimit); err != nil {
		keep(err)
	}
	if p.MemoryLimit, err = parseBytes("memory_limit", in.MemoryLimit, 16<<20, 64<<30); err != nil {
		keep(err)
	} else {
		ok.memoryLimit = true
	}
	// 0 (no limit) is refused: a stuck script would hold its worker for
	// ever, and request_terminate_timeout is derived from this.
	if p.MaxExecutionTime, err = parseInt("max_execution_time", in.MaxExecutionTime, 1, maxExecLimit); err != nil {
		keep(err)
	}
	if p.UploadMax, err = parseBytes("upload_max", in.UploadMax, 1<<10, 16<<30); err != nil {
		keep(err)
	}
	if p.PM == PMDynamic {
		// php-fpm's own rules for dynamic pools, checked here so the service
		// never fails to start over them; each is checked when its fields
		// parsed.
		if minOK && maxOK && p.MinSpareServers > p.MaxSpareServers {
			keep(invalid("min_spare_servers", strconv.Itoa(p.MinSpareServers), "must not exceed max_spare_servers"))
		} else if startOK && minOK && maxOK && (p.StartServers < p.MinSpareServers || p.StartServers > p.MaxSpareServers) {
			keep(invalid("start_servers", strconv.Itoa(p.StartServers), "must be between min_spare_servers and max_spare_servers"))
		}
		if maxOK && ok.maxChildren && p.MaxSpareServers > p.MaxChildren {
			keep(invalid("max_spare_servers", strconv.Itoa(p.MaxSpareServers), "must not exceed max_children"))
		}
	}
	if !bad && p.PM != PMDynamic {
		// Spare-server settings mean nothing to static and ondemand pools;
		// keep them canonical so that equal pools compare equal.
		p.StartServers, _ = strconv.Atoi(Defaults.StartServers)
		p.MinSpareServers, _ = strconv.Atoi(Defaults.MinSpareServers)
		p.MaxSpareServers, _ = strconv.Atoi(Defaults.MaxSpareServers)
	}
	return p, ok
}

// ParseLimits validates the service limits on their own, as `panel set` uses
// them. Empty fields are errors here: the caller fills in current values.
func ParseLimits(memoryMax, cpuQuota, tasksMax string) (Limits, error) {
	var errs FieldErrors
	var l Limits
	var err error
	if l.MemoryMax, err = parseBytes("memory_max", memoryMax, 32<<20, 1<<40); err != nil {
		errs = append(errs, err.(*FieldError))
	}
	if m := cpuRe.FindStringSubmatch(cpuQuota); m == nil {
		errs = append(errs, invalid("cpu_quota", cpuQuota, fmt.Sprintf("must be a percentage of one CPU between 1%% and %d%% (for example 40%%)", maxCPUPercent)))
	} else if n, _ := strconv.Atoi(m[1]); n < 1 || n > maxCPUPercent {
		errs = append(errs, invalid("cpu_quota", cpuQuota, fmt.Sprintf("must be a percentage of one CPU between 1%% and %d%% (for example 40%%)", maxCPUPercent)))
	} else {
		l.CPUQuota = CPUPercent(n)
	}
	if l.TasksMax, err = parseInt("tasks_max", tasksMax, minTasks, maxTasks); err != nil {
		errs = append(errs, err.(*FieldError))
	}
	if len(errs) > 0 {
		// The fields that parsed are kept, so callers can still check
		// relations against them.
		return l, errs
	}
	return l, nil
}

func parseEnv(kvs []string) ([]EnvVar, error) {
	if len(kvs) > maxEnvVars {
		return nil, invalid("env", strconv.Itoa(len(kvs))+" variables", fmt.Sprintf("must have at most %d variables", maxEnvVars))
	}
	var errs FieldErrors
	seen := map[string]bool{}
	out := make([]EnvVar, 0, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			errs = append(errs, invalid("env", kv, "must be KEY=VALUE"))
		case !envKeyRe.MatchString(k):
			errs = append(errs, invalid("env", kv, "key must be an uppercase letter followed by up to 63 uppercase letters, digits or underscores"))
		case reservedEnv[k] || strings.HasPrefix(k, "LD_"):
			errs = append(errs, invalid("env", kv, "key "+k+" is reserved (set by the panel, or changes which code PHP loads)"))
		case seen[k]:
			errs = append(errs, invalid("env", kv, "key "+k+" is given twice"))
		case len(v) > maxEnvValueLen || !envValueRe.MatchString(v):
			errs = append(errs, invalid("env", kv, fmt.Sprintf("value must be 1 to %d characters of letters, digits, space and _ . , : / @ + = -", maxEnvValueLen)))
		default:
			seen[k] = true
			out = append(out, EnvVar{Key: k, Value: v})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// MarshalSpec and UnmarshalSpec store a spec as JSON. UnmarshalSpec validates
// again: a stored spec is input like any other.
func MarshalSpec(s Spec) ([]byte, error) { return json.Marshal(s.Input()) }

// UnmarshalSpec parses a spec stored by MarshalSpec.
func UnmarshalSpec(id string, data []byte) (Spec, error) {
	var in SpecInput
	if err := json.Unmarshal(data, &in); err != nil {
		return Spec{}, fmt.Errorf("procmgr: stored spec of %s: %w", id, err)
	}
	if in.MaxExecutionTime == "0" {
		// Stored before "no limit" was refused: the longest limit there is.
		in.MaxExecutionTime = strconv.Itoa(maxExecLimit)
	}
	return ParseSpec(id, in, nil)
}
