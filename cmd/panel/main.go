// Command panel is Ikabud Panel: `panel serve` runs the daemon, and every
// other verb is a client of it over its Unix socket.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Ikabud Panel: PHP sites as real, contained PHP-FPM services.

Usage:
  panel serve [flags]                 run the daemon: the web panel on http://127.0.0.1:8080, the CLI socket
  panel migrate [--db DSN]            apply database migrations
  panel user add NAME --role R [--uid N]
                                      add a panel user; prints a generated password
  panel token add USER [--name NAME]  make an API token for /api/v1 (printed once)
  panel token list [USER]             list API tokens
  panel token revoke ID               revoke one

  panel create ID [spec flags]        provision an instance and start it
  panel set ID [spec flags]           change settings (limits apply live)
  panel start ID | --all              start an instance, or every stopped one
  panel stop ID                       stop an instance
  panel restart ID                    restart an instance
  panel reload ID                     reload its pool gracefully (USR2)
  panel kill ID [--signal S]          signal the master (TERM KILL HUP USR1 USR2 INT QUIT)
  panel status ID [--json]            state, real PID, restarts, resources
  panel list [--json]                 every instance
  panel health ID [--json]            FastCGI ping and pool status
  panel logs ID [-f] [-n N]           FPM and PHP error log
  panel logs ID --access [-n N]       the site's access log (visitors' requests)
  panel remove ID [--purge]           remove an instance (files kept unless --purge)
  panel audit [ID] [-n N]             who did what

Spec flags: --cms --php --pm --max-children --start-servers --min-spare --max-spare
  --max-requests --memory-limit --max-execution-time --upload-max --memory-max
  --cpu-quota --tasks-max --env KEY=VALUE (repeatable); on create also --owner USER-ID

Clients find the daemon at --socket (default /run/ikabud/panel.sock, or $IKABUD_SOCKET).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a usage error: exit code 2.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(stdout, "panel", version)
		return 0
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stdout, stderr)
	case "migrate":
		err = cmdMigrate(args[1:], stdout)
	case "user":
		err = cmdUser(args[1:], stdout)
	case "token":
		err = cmdToken(args[1:], stdout)
	default:
		err = cmdClient(args[0], args[1:], stdout)
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "panel: ") {
		msg = "panel: " + msg
	}
	fmt.Fprintln(stderr, msg)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// parseInterspersed parses flags that may come before or after positional
// arguments (`panel create wp-1 --php 8.2`), returning the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("panel "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// envInt returns the environment variable as an integer, or def when unset
// or not a number (the flag's own check then sees def).
func envInt(key string, def int) int {
	if v := os.Getenv(key); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// envOr returns the environment variable or def.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
