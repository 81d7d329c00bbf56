// Package nginx publishes instances' sites through nginx: a pure renderer of
// one server block per instance (golden files under testdata/), a config
// tree that changes as a transaction (render, nginx -t, swap, reload, probe,
// or put the previous tree back), and the two ways nginx runs: as Debian's
// nginx.service under systemd, or supervised by the panel where there is no
// systemd.
package nginx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/ikabud/panel/internal/procmgr"
)

// Listen is the address nginx serves sites on.
type Listen struct {
	// Host is an IP literal, or "" for every IPv4 address.
	Host string
	Port int
}

// ParseListen reads an address such as ":80", "127.0.0.1:8080" or
// "[::1]:8080". The host must be an IP address: a name would be resolved by
// nginx at each reload.
func ParseListen(s string) (Listen, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Listen{}, &procmgr.FieldError{Field: "http-listen", Value: s, Rule: "must be HOST:PORT or :PORT (for example :80 or 127.0.0.1:8080)"}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return Listen{}, &procmgr.FieldError{Field: "http-listen", Value: s, Rule: "port must be a number from 1 to 65535"}
	}
	if host != "" {
		ip := net.ParseIP(host)
		if ip == nil || strings.Contains(host, "%") {
			return Listen{}, &procmgr.FieldError{Field: "http-listen", Value: s, Rule: "host must be an IP address, or empty for every address"}
		}
		host = ip.String()
	}
	return Listen{Host: host, Port: p}, nil
}

// directive is the value of nginx's listen directive.
func (l Listen) directive() string {
	switch {
	case l.Host == "":
		return strconv.Itoa(l.Port)
	case strings.Contains(l.Host, ":"):
		return "[" + l.Host + "]:" + strconv.Itoa(l.Port)
	}
	return l.Host + ":" + strconv.Itoa(l.Port)
}

// ProbeAddr is where the panel reaches nginx itself: the loopback address
// when nginx listens on every address.
func (l Listen) ProbeAddr() string {
	host := l.Host
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, strconv.Itoa(l.Port))
}

func (l Listen) String() string {
	if l.Host == "" {
		return ":" + strconv.Itoa(l.Port)
	}
	return l.directive()
}

// Site is what one instance's server block is made of; only SiteOf makes
// one, from a validated spec.
type Site struct {
	ID      procmgr.InstanceID
	Domains []procmgr.Domain
	Root    string // the document root, public/
	Socket  string
	// BodyMax is the largest request body: the pool's post_max_size.
	BodyMax procmgr.Bytes
	// ReadTimeout is how long nginx waits for the pool's answer, in seconds:
	// a little past php-fpm's request_terminate_timeout, so that php-fpm
	// ends a stuck request first and nginx's timeout is the bound for a
	// pool that does not answer at all (frozen).
	ReadTimeout int
	// AccessLog is the file visitors' requests are logged to, one for
	// every site, each line starting with the instance's id ("": none).
	AccessLog string
}

// SiteOf is the site of an instance.
func SiteOf(l procmgr.Layout, s procmgr.Spec) Site {
	return Site{
		ID: s.ID, Domains: s.Domains, Root: l.PublicDir(s.ID), Socket: l.SocketPath(s.ID),
		BodyMax:     s.Pool.UploadMax + 1<<20,
		ReadTimeout: s.Pool.RequestTerminateTimeout() + 5,
	}
}

// The paths on every site that only the panel (loopback) may ask for.
const (
	// PingPath reaches the pool's ping through nginx: the front door's
	// health probe.
	PingPath = "/.ikabud/ping"
	// SitePath answers the site's fingerprint, so that a probe after a
	// reload knows the new config serves (old workers may still answer
	// for a moment).
	SitePath = "/.ikabud/site"
)

// fastcgiParams are the CGI variables every PHP request gets, written out
// here rather than included from the distribution's file, so that the
// server block names no file outside the panel's control.
var fastcgiParams = [][2]string{
	{"QUERY_STRING", "$query_string"},
	{"REQUEST_METHOD", "$request_method"},
	{"CONTENT_TYPE", "$content_type"},
	{"CONTENT_LENGTH", "$content_length"},
	{"SCRIPT_NAME", "$fastcgi_script_name"},
	{"SCRIPT_FILENAME", "$document_root$fastcgi_script_name"},
	{"PATH_INFO", "$fastcgi_path_info"},
	{"REQUEST_URI", "$request_uri"},
	{"DOCUMENT_URI", "$document_uri"},
	{"DOCUMENT_ROOT", "$document_root"},
	{"SERVER_PROTOCOL", "$server_protocol"},
	{"REQUEST_SCHEME", "$scheme"},
	{"HTTPS", "$https if_not_empty"},
	{"GATEWAY_INTERFACE", "CGI/1.1"},
	{"SERVER_SOFTWARE", "nginx"},
	{"REMOTE_ADDR", "$remote_addr"},
	{"REMOTE_PORT", "$remote_port"},
	{"SERVER_ADDR", "$server_addr"},
	{"SERVER_PORT", "$server_port"},
	{"SERVER_NAME", "$server_name"},
	{"REDIRECT_STATUS", "200"},
	// The name nginx matched, not the raw header (which an absolute-form
	// request line can make differ from it).
	{"HTTP_HOST", "$host"},
	// A request header "Proxy:" would otherwise become HTTP_PROXY, which
	// PHP libraries take for their outgoing proxy (httpoxy).
	{"HTTP_PROXY", `""`},
}

// stoppedPage is the body of a 502: the site's pool does not run.
const stoppedPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Site stopped</title></head>` +
	`<body style="font-family:sans-serif;max-width:36em;margin:4em auto;color:#333"><h1>This site is stopped</h1>` +
	`<p>The PHP service of this site is not running. If this is your site, start it from your hosting panel.</p></body></html>`

// RenderSite writes an instance's server block. Everything in it comes from
// validated values: domains, paths derived from the instance id, sizes.
func RenderSite(ln Listen, s Site) []byte {
	var body bytes.Buffer
	w := func(indent int, format string, a ...any) {
		body.WriteString(strings.Repeat("    ", indent))
		fmt.Fprintf(&body, format, a...)
		body.WriteString("\n")
	}
	names := make([]string, len(s.Domains))
	for i, d := range s.Domains {
		names[i] = string(d)
	}
	w(0, "server {")
	w(1, "listen %s;", ln.directive())
	w(1, "server_name %s;", strings.Join(names, " "))
	w(1, "root %s;", s.Root)
	w(1, "index index.php index.html index.htm;")
	if s.AccessLog != "" {
		// One file for every site, so one open file in each nginx
		// process however many sites there are (a file per site is a
		// thousand past the usual limit of 1,024, where nginx -t fails),
		// and buffered: a write per 64 KiB or 5 s, not per request.
		w(1, "set $ikabud_site %s;", s.ID)
		w(1, "access_log %s %s buffer=64k flush=5s;", s.AccessLog, accessLogFormat)
	} else {
		w(1, "access_log off;")
	}
	w(1, "server_tokens off;")
	// nginx's user is in every instance's group: without this, a link
	// the tenant plants in public/ would serve another instance's files
	// or /etc/passwd. A link is followed only to a file of the link's
	// owner.
	w(1, "disable_symlinks if_not_owner from=$document_root;")
	w(1, "client_max_body_size %d;", uint64(s.BodyMax))
	w(1, "error_page 502 @stopped;")
	w(1, "location @stopped {")
	w(2, "default_type text/html;")
	w(2, "return 502 '%s';", stoppedPage)
	w(1, "}")
	w(1, "location = %s {", PingPath)
	w(2, "access_log off;")
	w(2, "allow 127.0.0.1;")
	w(2, "allow ::1;")
	w(2, "deny all;")
	w(2, "fastcgi_param REQUEST_METHOD GET;")
	w(2, "fastcgi_param SCRIPT_NAME /ping;")
	w(2, "fastcgi_param SCRIPT_FILENAME /ping;")
	w(2, "fastcgi_param REQUEST_URI /ping;")
	w(2, "fastcgi_param QUERY_STRING \"\";")
	w(2, "fastcgi_pass unix:%s;", s.Socket)
	w(2, "fastcgi_connect_timeout 3s;")
	w(2, "fastcgi_read_timeout 3s;")
	w(1, "}")
	// Dot files (.htaccess, .git, .env, .user.ini) are never served;
	// .well-known is (ACME challenges, security.txt).
	w(1, "location ~ /\\.(?!well-known/) {")
	w(2, "return 404;")
	w(1, "}")
	w(1, "location / {")
	w(2, "try_files $uri $uri/ /index.php$is_args$args;")
	w(1, "}")
	w(1, "location ~ [^/]\\.php(/|$) {")
	// No try_files of the script: php-fpm answers 404 for a missing one,
	// security.limit_extensions keeps it to .php files, and the stat per
	// request (through disable_symlinks' checks) cost a tenth of the
	// requests/s of a tiny script.
	w(2, "fastcgi_split_path_info ^(.+?\\.php)(/.*)$;")
	for _, p := range fastcgiParams {
		w(2, "fastcgi_param %s %s;", p[0], p[1])
	}
	w(2, "fastcgi_pass unix:%s;", s.Socket)
	w(2, "fastcgi_connect_timeout 3s;")
	w(2, "fastcgi_send_timeout %ds;", s.ReadTimeout)
	w(2, "fastcgi_read_timeout %ds;", s.ReadTimeout)
	w(1, "}")
	// The fingerprint of everything above: what this site's config is.
	fp := Fingerprint(body.Bytes())
	w(1, "location = %s {", SitePath)
	w(2, "access_log off;")
	w(2, "allow 127.0.0.1;")
	w(2, "allow ::1;")
	w(2, "deny all;")
	w(2, "default_type text/plain;")
	w(2, "return 200 \"%s %s\\n\";", s.ID, fp)
	w(1, "}")
	w(0, "}")
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Site of instance %s, written by Ikabud Panel.\n", s.ID)
	out.WriteString("# Do not edit: the panel rewrites it from its database.\n")
	out.Write(body.Bytes())
	return out.Bytes()
}

// Fingerprint names a rendered server block in a few characters.
func Fingerprint(block []byte) string {
	sum := sha256.Sum256(block)
	return hex.EncodeToString(sum[:8])
}

// accessLogFormat names the sites' access log format (RenderHTTP).
const accessLogFormat = "ikabud_site"

// defaultBody is what the default server answers an unknown host.
const defaultBody = "No site is configured for this host name."

// RenderHTTP writes the http-level part of the panel's config: name hash
// sizes for the longest names accepted, the default server, and the sites.
func RenderHTTP(ln Listen, sitesDir string) []byte {
	var b bytes.Buffer
	b.WriteString("# Ikabud Panel's sites, written by the panel. Do not edit: it is rewritten.\n")
	// A valid 253-character name does not fit nginx's default bucket of
	// 64 bytes ("could not build server_names_hash").
	b.WriteString("server_names_hash_bucket_size 512;\n")
	b.WriteString("server_names_hash_max_size 131072;\n")
	// The sites' access log: the instance's id and the time (seconds since
	// 1970, for the panel), then nginx's combined format and the time the
	// request took.
	fmt.Fprintf(&b, "log_format %s '$ikabud_site $msec $remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_time';\n", accessLogFormat)
	b.WriteString("server {\n")
	fmt.Fprintf(&b, "    listen %s default_server;\n", ln.directive())
	b.WriteString("    server_name _;\n")
	// Defines the variable the sites' log format names, in a server
	// that always exists.
	b.WriteString("    set $ikabud_site \"\";\n")
	b.WriteString("    access_log off;\n")
	b.WriteString("    server_tokens off;\n")
	b.WriteString("    default_type text/plain;\n")
	fmt.Fprintf(&b, "    return 404 \"%s\\n\";\n", defaultBody)
	b.WriteString("}\n")
	fmt.Fprintf(&b, "include %s/*.conf;\n", sitesDir)
	return b.Bytes()
}
