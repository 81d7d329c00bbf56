// Package procmgr is the privileged, operating-system side of Ikabud Panel.
//
// It turns a validated Spec into a running PHP-FPM master under a Backend
// (systemd over D-Bus in production, a built-in supervisor elsewhere), and
// reports what really runs: states, PIDs, restarts, exit reasons, health and
// logs. It knows nothing of HTTP or SQL; every value crossing its boundary is
// plain data, so that it can later move behind an RPC to a root helper.
package procmgr
