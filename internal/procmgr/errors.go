package procmgr

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors that callers branch on.
var (
	// ErrInvalid wraps every validation failure.
	ErrInvalid = errors.New("invalid value")
	// ErrNotFound means the instance is not provisioned on this host.
	ErrNotFound = errors.New("instance not found")
	// ErrConflict means the request clashes with what is on the host (for
	// example a Unix user of the derived name that the panel did not create).
	ErrConflict = errors.New("conflict")
	// ErrUnsupported means this backend or host cannot do what was asked.
	ErrUnsupported = errors.New("not supported")
)

// FieldError names the field, the refused value and the rule it broke.
type FieldError struct {
	Field string
	Value string
	Rule  string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s (got %s)", e.Field, e.Rule, quoteForMessage(e.Value))
}

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// FieldErrors is a list of validation failures, reported together so a person
// can fix a whole form at once.
type FieldErrors []*FieldError

func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return "invalid spec: " + strings.Join(parts, "; ")
}

// Unwrap returns each field error (and so matches ErrInvalid), so that
// errors.As finds the individual fields.
func (es FieldErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// quoteForMessage shows a refused value safely: control characters escaped,
// and cut to a length that keeps an error message readable.
func quoteForMessage(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func invalid(field, value, rule string) *FieldError {
	return &FieldError{Field: field, Value: value, Rule: rule}
}
