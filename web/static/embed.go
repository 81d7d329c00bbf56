// Package static holds the panel's stylesheet, script and the front-end
// packages they build on, embedded in the binary. The vendored files and
// their versions and licences are listed in VENDOR.md.
package static

import "embed"

// Files are served under /static/.
//
//go:embed app.css app.js vendor
var Files embed.FS
