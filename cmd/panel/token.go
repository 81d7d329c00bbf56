package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/web"
)

const tokenUsage = "panel token add USER [--name NAME] | panel token list [USER] | panel token revoke ID"

// cmdToken manages API tokens through the daemon, so that every change is
// checked and audited like any other action.
func cmdToken(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, tokenUsage)
	}
	verb := args[0]
	fs := newFlagSet("token " + verb)
	socket := fs.String("socket", envOr("IKABUD_SOCKET", defaultSocket), "daemon socket")
	asJSON := fs.Bool("json", false, "print JSON")
	name := fs.String("name", "", "a name to tell the token by (add)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	c := newClient(*socket)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch verb {
	case "add":
		if len(pos) != 1 {
			return fmt.Errorf("%w: panel token add takes one user name", errUsage)
		}
		var out web.NewToken
		if err := c.do(ctx, "POST", "/api/v1/tokens", web.TokenRequest{User: pos[0], Name: *name}, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "Token %d for %s (%s), shown once:\n%s\n", out.ID, out.User, out.Name, out.Token)
		return nil
	case "list":
		if len(pos) > 1 {
			return fmt.Errorf("%w: panel token list takes at most one user name", errUsage)
		}
		q := "/api/v1/tokens"
		if len(pos) == 1 {
			q += "?user=" + url.QueryEscape(pos[0])
		}
		var toks []auth.TokenView
		if err := c.do(ctx, "GET", q, nil, &toks); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, toks)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSER\tNAME\tSTARTS\tCREATED\tLAST USED")
		for _, t := range toks {
			used := "never"
			if t.LastUsedAt != nil {
				used = t.LastUsedAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\tikb_%s\t%s\t%s\n", t.ID, t.User, escapeControls(t.Name), t.Prefix, t.CreatedAt.Local().Format(time.DateTime), used)
		}
		return tw.Flush()
	case "revoke":
		if len(pos) != 1 {
			return fmt.Errorf("%w: panel token revoke takes one token id", errUsage)
		}
		id, err := strconv.ParseUint(pos[0], 10, 32)
		if err != nil {
			return fmt.Errorf("%w: token id %q is not a number (see panel token list)", errUsage, pos[0])
		}
		if err := c.do(ctx, "DELETE", "/api/v1/tokens/"+strconv.FormatUint(id, 10), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Revoked token %d\n", id)
		return nil
	}
	return fmt.Errorf("%w: %s", errUsage, tokenUsage)
}
