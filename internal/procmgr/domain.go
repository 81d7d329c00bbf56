package procmgr

import (
	"fmt"
	"regexp"
	"strings"
)

// Domain is a host name an instance answers to: a lowercase DNS name of at
// least two labels (IDNs in their punycode form, xn--...), each label 1-63
// letters, digits or inner hyphens, at most 253 characters in all. No
// wildcard, no trailing dot, no IP address.
type Domain string

// Limits of the domain list.
const (
	MaxDomainLen      = 253
	MaxDomainLabelLen = 63
	MaxDomains        = 32
)

var (
	domainLabelRe = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`)
	allDigitsRe   = regexp.MustCompile(`^[0-9]+$`)
)

// ParseDomain validates s as a domain.
func ParseDomain(s string) (Domain, error) {
	const field = "domains"
	if s == "" {
		return "", invalid(field, s, "a domain must not be empty")
	}
	if len(s) > MaxDomainLen {
		return "", invalid(field, s, fmt.Sprintf("a domain must be at most %d characters", MaxDomainLen))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80:
			return "", invalid(field, s, "a domain must be ASCII: write an international name in its punycode form (xn--...)")
		case c >= 'A' && c <= 'Z':
			return "", invalid(field, s, "a domain must be lowercase")
		case c == '*':
			return "", invalid(field, s, "wildcard domains are not accepted")
		}
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return "", invalid(field, s, "a domain must have at least two labels (for example example.com)")
	}
	for _, l := range labels {
		if l == "" {
			return "", invalid(field, s, "a domain must not have an empty label (two dots, or a dot at either end)")
		}
		if len(l) > MaxDomainLabelLen {
			return "", invalid(field, s, fmt.Sprintf("each label of a domain must be 1 to %d characters", MaxDomainLabelLen))
		}
		if !domainLabelRe.MatchString(l) {
			return "", invalid(field, s, "each label of a domain must be lowercase letters, digits and hyphens, not starting or ending with a hyphen")
		}
	}
	if allDigitsRe.MatchString(labels[len(labels)-1]) {
		return "", invalid(field, s, "a domain must be a name, not an IP address")
	}
	return Domain(s), nil
}

// parseDomains validates a domain list: each name, at most MaxDomains, none
// twice. The order is kept: the first domain is the instance's primary
// name, the one health probes ask for.
func parseDomains(in []string) ([]Domain, error) {
	if len(in) > MaxDomains {
		return nil, invalid("domains", fmt.Sprintf("%d domains", len(in)), fmt.Sprintf("must have at most %d domains", MaxDomains))
	}
	var errs FieldErrors
	seen := map[Domain]bool{}
	out := make([]Domain, 0, len(in))
	for _, s := range in {
		d, err := ParseDomain(s)
		switch {
		case err != nil:
			errs = append(errs, err.(*FieldError))
		case seen[d]:
			errs = append(errs, invalid("domains", s, "is given twice"))
		default:
			seen[d] = true
			out = append(out, d)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// OnUnhealthy is what the panel does with an instance whose pool stops
// answering its health probe.
type OnUnhealthy string

// The policies.
const (
	// UnhealthyRestart restarts the instance (the default).
	UnhealthyRestart OnUnhealthy = "restart"
	// UnhealthyAlert only reports it: status, events and the audit log.
	UnhealthyAlert OnUnhealthy = "alert"
)

func parseOnUnhealthy(s string) (OnUnhealthy, error) {
	switch OnUnhealthy(s) {
	case UnhealthyRestart, UnhealthyAlert:
		return OnUnhealthy(s), nil
	}
	return "", invalid("on_unhealthy", s, "must be restart or alert")
}
