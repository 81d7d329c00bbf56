// Package pages holds the panel's pages; each takes one view model from
// internal/web/viewmodel and nothing else.
package pages

import (
	"net/url"
	"strconv"

	"github.com/ikabud/panel/internal/web/viewmodel"
)

func uitoa(n uint) string { return strconv.FormatUint(uint64(n), 10) }

func auditNext(m viewmodel.AuditPage) string {
	q := url.Values{}
	for k, v := range map[string]string{"user": m.User, "instance": m.Instance, "action": m.Action, "since": m.Since, "until": m.Until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("before", strconv.FormatUint(m.NextBefore, 10))
	return "/audit?" + q.Encode()
}
