package viewmodel

import "time"

// Page is what every page's frame needs: who is looking and what they may
// reach. Nav links are shown only where the viewer's role may go.
type Page struct {
	Title    string
	UserName string
	Role     string
	CSRF     string
	// Active names the nav entry to highlight: dashboard, audit, users, tokens, account.
	Active    string
	ShowNew   bool // create instances (admin)
	ShowAudit bool // whole audit log (admin, support)
	ShowUsers bool // manage users (admin)
	Flash     string
	FlashBad  bool
	Version   string
}

// Dashboard is the instance list.
type Dashboard struct {
	Page
	Rows   []Row
	Query  string
	State  string
	States []string // the filter's choices
	Counts Counts
}

// Counts summarise the rows by tone for the dashboard's header.
type Counts struct{ All, Running, Stopped, Trouble int }

// CountRows counts rows by tone.
func CountRows(rows []Row) Counts {
	c := Counts{All: len(rows)}
	for _, r := range rows {
		switch r.Tone {
		case ToneOK:
			c.Running++
		case ToneIdle:
			c.Stopped++
		case ToneBad:
			c.Trouble++
		}
	}
	return c
}

// KV is a labelled value of a details list.
type KV struct {
	Label string
	Value string
	Mono  bool
}

// AuditRow is one audit record on a page.
type AuditRow struct {
	ID       uint64
	At       string // exact, local
	AtISO    string // RFC 3339, for the relative display
	Actor    string
	Action   string
	Instance string
	Result   string
	Tone     Tone
	Detail   string
}

// InstancePage is one instance: its row, its details, its pool, its trail.
type InstancePage struct {
	Page
	Row         Row
	Details     []KV
	Pool        []KV // from the health probe, empty when unknown
	HealthError string
	Settings    []KV
	Audit       []AuditRow
	// HistoryJSON seeds the charts: a JSON array of samples, already
	// encoded (html/template-safe: it goes in a data attribute, escaped).
	HistoryJSON string
	Signals     []string
	Owner       string
	LogLines    int // how many lines the log panel keeps
	// AccessLog is the last lines of the site's access log; HasSite says
	// whether the instance has a site (domains) at all.
	AccessLog []string
	HasSite   bool
	// Installed is the CMS admin login the create made, on the one view
	// the create redirects to; nil otherwise.
	Installed *InstalledLogin
}

// InstalledLogin is a new CMS's admin login, shown once.
type InstalledLogin struct {
	CMS, User, Password, URL string
}

// Field is one input of a form, with the value entered and the rule it broke.
type Field struct {
	Name    string // the API's JSON field name, also the form field's name
	Label   string
	Value   string
	Error   string
	Help    string
	Kind    string // text, number, select, textarea
	Options []Option
}

// Option is one choice of a select.
type Option struct {
	Value string
	Label string
}

// InstanceForm is the create and edit form.
type InstanceForm struct {
	Page
	Editing bool
	ID      string // the instance being edited
	Action  string // the form's URL
	Groups  []FieldGroup
	Error   string // a problem not tied to one field
}

// FieldGroup is a fieldset of the form.
type FieldGroup struct {
	Legend string
	Fields []Field
}

// RemovePage asks for a typed confirmation.
type RemovePage struct {
	Page
	ID    string
	Error string
}

// AuditPage is the whole audit log with filters.
type AuditPage struct {
	Page
	User, Instance, Action, Since, Until string
	Rows                                 []AuditRow
	NextBefore                           uint64
	Error                                string
}

// TokenRow is one API token.
type TokenRow struct {
	ID       uint
	User     string
	Name     string
	Prefix   string
	Created  string
	LastUsed string
}

// TokensPage lists and makes API tokens.
type TokensPage struct {
	Page
	Tokens   []TokenRow
	NewToken string // shown once, right after it was made
	NewName  string
	Error    string
	ForUser  bool // the viewer may make tokens for others (admin)
	UserName string
}

// UserRow is one panel user.
type UserRow struct {
	ID       uint
	Name     string
	Role     string
	Disabled bool
	Created  string
	Self     bool
}

// UsersPage manages users.
type UsersPage struct {
	Page
	Users     []UserRow
	Roles     []string
	NewName   string
	NewRole   string
	Errors    map[string]string
	Generated string // a password made for a new user, shown once
	GenFor    string
}

// AccountPage changes one's own password.
type AccountPage struct {
	Page
	Errors map[string]string
	Done   bool
}

// LoginPage is the sign-in form.
type LoginPage struct {
	Username string
	Error    string
	Next     string
	Version  string
}

// ErrorPage is a plain error with a way back.
type ErrorPage struct {
	Page
	Status  int
	Message string
}

// FormatTime is the exact local time shown on hover.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}
