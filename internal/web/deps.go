package web

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/live"
	"github.com/ikabud/panel/internal/web/viewmodel"
)

// The web tier reaches the engine and the accounts only through the small
// interfaces below, which it defines itself. Today *instances.Service and
// *auth.Service satisfy them in one process; a page server without root
// would satisfy them with clients of the daemon's socket instead
// (docs/architecture.md, "Splitting the web tier off").

// Instances is every action and read the pages and the API make on instances.
type Instances interface {
	BackendName() string
	// WebServer says whether the web server in front of the sites runs.
	WebServer(ctx context.Context) instances.WebServerStatus
	List(ctx context.Context, p auth.Principal) []instances.View
	Get(ctx context.Context, p auth.Principal, id string) (instances.View, error)
	Create(ctx context.Context, p auth.Principal, req instances.CreateRequest) (instances.View, error)
	// BeginCreate validates and records a create and provisions in the
	// background; the page follows it live.
	BeginCreate(ctx context.Context, p auth.Principal, req instances.CreateRequest) (instances.View, error)
	Set(ctx context.Context, p auth.Principal, id string, in procmgr.SpecInput) (instances.View, error)
	SetOwner(ctx context.Context, p auth.Principal, id string, owner *uint) (instances.View, error)
	Remove(ctx context.Context, p auth.Principal, id string, purge bool) error
	Start(ctx context.Context, p auth.Principal, id string) (instances.View, error)
	Stop(ctx context.Context, p auth.Principal, id string) (instances.View, error)
	Restart(ctx context.Context, p auth.Principal, id string) (instances.View, error)
	Reload(ctx context.Context, p auth.Principal, id string) (instances.View, error)
	Kill(ctx context.Context, p auth.Principal, id, signal string) error
	StartAll(ctx context.Context, p auth.Principal) (instances.StartAllResult, error)
	Health(ctx context.Context, p auth.Principal, id string) (procmgr.Health, error)
	Logs(ctx context.Context, p auth.Principal, id string, n int) ([]procmgr.LogLine, error)
	AccessLog(ctx context.Context, p auth.Principal, id string, n int) ([]string, error)
	FollowLogs(ctx context.Context, p auth.Principal, id string, n int) (<-chan procmgr.LogLine, error)
	Audit(ctx context.Context, p auth.Principal, q instances.AuditQuery) ([]instances.AuditEntry, error)
	InstalledPHP() []string
	Subscribe(ctx context.Context) (<-chan instances.View, error)
}

// Principals resolves a Unix socket peer; *auth.Service satisfies it.
type Principals interface {
	PrincipalForUID(ctx context.Context, uid int) (auth.Principal, error)
}

// Accounts is sign-in, sessions, API tokens and users; *auth.Service
// satisfies it.
type Accounts interface {
	Principals
	Login(ctx context.Context, name, password string, client netip.Addr) (auth.Session, error)
	SessionPrincipal(ctx context.Context, token string) (auth.Session, error)
	Logout(ctx context.Context, token string) error
	TokenPrincipal(ctx context.Context, token string) (auth.Principal, error)
	SubscribeRevocations(ctx context.Context) (<-chan uint, error)

	Users(ctx context.Context, p auth.Principal) ([]auth.UserView, error)
	CreateUser(ctx context.Context, p auth.Principal, name string, role auth.Role, password string) (auth.UserView, error)
	SetRole(ctx context.Context, p auth.Principal, userID uint, role auth.Role) error
	SetDisabled(ctx context.Context, p auth.Principal, userID uint, disabled bool) error
	ChangePassword(ctx context.Context, p auth.Principal, current, next string) error
	ResetPassword(ctx context.Context, p auth.Principal, userID uint, next string) error

	CreateToken(ctx context.Context, p auth.Principal, userName, name string) (auth.TokenView, string, error)
	Tokens(ctx context.Context, p auth.Principal, userName string) ([]auth.TokenView, error)
	RevokeToken(ctx context.Context, p auth.Principal, id uint) error
}

// Live is the websocket side: one socket per open page.
type Live interface {
	Serve(w http.ResponseWriter, r *http.Request, v live.Viewer, instance string, resume live.Resume) error
	CloseUser(userID uint)
	CloseSession(sessionID string)
	Extra(id string) viewmodel.Extra
	History(id string) []live.Sample
	// NoteHealth hands over a probe a page made, so the hub need not
	// probe again.
	NoteHealth(id string, res procmgr.Health)
}
