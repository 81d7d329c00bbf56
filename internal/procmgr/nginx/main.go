package nginx

import (
	"bytes"
	"fmt"
)

// MainOptions shape a whole nginx.conf of the panel's own: the one a
// supervised nginx runs, and the one each change is checked with first.
type MainOptions struct {
	HTTPConf string // the http.conf to include
	WebUser  string // nginx's worker user ("" leaves nginx's default)
	PIDFile  string
	ErrorLog string // "" : stderr
}

// RenderMain writes a whole nginx.conf that serves the panel's sites.
func RenderMain(o MainOptions) []byte {
	var b bytes.Buffer
	b.WriteString("# nginx config of Ikabud Panel, written by the panel. Do not edit: it is rewritten.\n")
	if o.WebUser != "" {
		fmt.Fprintf(&b, "user %s;\n", o.WebUser)
	}
	b.WriteString("worker_processes auto;\n")
	fmt.Fprintf(&b, "pid %s;\n", o.PIDFile)
	if o.ErrorLog == "" {
		b.WriteString("error_log stderr notice;\n")
	} else {
		fmt.Fprintf(&b, "error_log %s notice;\n", o.ErrorLog)
	}
	b.WriteString("events {\n    worker_connections 4096;\n}\n")
	b.WriteString("http {\n")
	b.WriteString("    include /etc/nginx/mime.types;\n")
	b.WriteString("    default_type application/octet-stream;\n")
	b.WriteString("    sendfile on;\n")
	b.WriteString("    tcp_nopush on;\n")
	b.WriteString("    keepalive_timeout 65;\n")
	b.WriteString("    server_tokens off;\n")
	b.WriteString("    access_log off;\n")
	fmt.Fprintf(&b, "    include %s;\n", o.HTTPConf)
	b.WriteString("}\n")
	return b.Bytes()
}
