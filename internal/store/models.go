package store

import "time"

// User is a row of users: a person (or a Unix account) who may act on the panel.
type User struct {
	ID   uint   `gorm:"column:id;primaryKey;autoIncrement"`
	Name string `gorm:"column:name"`
	// Role is "admin", "support" or "customer"; package auth validates it.
	Role string `gorm:"column:role"`
	// PasswordHash is an argon2id PHC string (or a bcrypt hash from before argon2id, replaced
	// at the next sign-in), or "" for a user who signs in only by Unix uid.
	PasswordHash string `gorm:"column:password_hash" json:"-"`
	// UnixUID maps a local Unix account (seen as the peer of the panel socket) to this user.
	UnixUID *int `gorm:"column:unix_uid"`
	// Disabled users cannot sign in, and their sessions and API tokens do not work.
	Disabled  bool      `gorm:"column:disabled"`
	CreatedAt time.Time `gorm:"column:created_at"`
	UpdatedAt time.Time `gorm:"column:updated_at"`
}

// TableName implements GORM's tabler.
func (User) TableName() string { return "users" }

// Session is a row of sessions: a browser sign-in. ID is a hash of the session token, never the
// token itself. ExpiresAt is the absolute end of the session; package auth also ends it after a
// time without use, measured from LastSeenAt.
type Session struct {
	ID         string    `gorm:"column:id;primaryKey"`
	UserID     uint      `gorm:"column:user_id"`
	CreatedAt  time.Time `gorm:"column:created_at"`
	ExpiresAt  time.Time `gorm:"column:expires_at"`
	LastSeenAt time.Time `gorm:"column:last_seen_at"`
}

// TableName implements GORM's tabler.
func (Session) TableName() string { return "sessions" }

// APIToken is a row of api_tokens: a bearer token for the JSON API, stored as a hash.
type APIToken struct {
	ID        uint   `gorm:"column:id;primaryKey;autoIncrement"`
	UserID    uint   `gorm:"column:user_id"`
	Name      string `gorm:"column:name"`
	TokenHash string `gorm:"column:token_hash" json:"-"`
	// TokenPrefix is the start of the token, kept in the clear so that people can tell their
	// tokens apart; it is far too short to stand for the token.
	TokenPrefix string     `gorm:"column:token_prefix"`
	CreatedAt   time.Time  `gorm:"column:created_at"`
	LastUsedAt  *time.Time `gorm:"column:last_used_at"`
	ExpiresAt   *time.Time `gorm:"column:expires_at"`
}

// TableName implements GORM's tabler.
func (APIToken) TableName() string { return "api_tokens" }

// Instance is a row of instances: the stored intent for one site. What the machine actually runs
// is observed state and lives in memory, not here.
type Instance struct {
	ID string `gorm:"column:id;primaryKey"`
	// OwnerID is the customer who owns the instance; nil when nobody does (also after the owner
	// is deleted).
	OwnerID    *uint  `gorm:"column:owner_id"`
	CMS        string `gorm:"column:cms"`
	PHPVersion string `gorm:"column:php_version"`
	// Spec is the instance's settings as JSON, owned by package instances.
	Spec string `gorm:"column:spec"`
	// DesiredState is "running" or "stopped": what a person asked for.
	DesiredState string `gorm:"column:desired_state"`
	// Phase is "provisioning", "ready", "removing", "purging" (removing and deleting the files) or "failed".
	Phase string `gorm:"column:phase"`
	// Generation goes up by one on each change of intent, so the reconciler can tell whether
	// what it acted on is still current.
	Generation int64 `gorm:"column:generation"`
	// LastError is the last provisioning or reconcile error, "" when none. At most
	// MaxTextBytes bytes are stored.
	LastError string    `gorm:"column:last_error"`
	CreatedAt time.Time `gorm:"column:created_at"`
	UpdatedAt time.Time `gorm:"column:updated_at"`
}

// TableName implements GORM's tabler.
func (Instance) TableName() string { return "instances" }

// AuditEvent is a row of audit_events: who did what, when, to which instance, and how it went.
// It has no foreign keys: the log outlives the users and instances it names.
type AuditEvent struct {
	ID uint64 `gorm:"column:id;primaryKey;autoIncrement"`
	// At is when it happened; AddAudit fills it from the store's clock when zero.
	At time.Time `gorm:"column:at"`
	// Actor is the acting user's name ("root" for the local root over the Unix socket).
	Actor string `gorm:"column:actor"`
	// ActorID is the acting user's id; nil for root.
	ActorID *uint  `gorm:"column:actor_id"`
	Action  string `gorm:"column:action"`
	// InstanceID is "" for actions about no instance (such as adding a user).
	InstanceID string `gorm:"column:instance_id"`
	// Result is "ok" or "error".
	Result string `gorm:"column:result"`
	// Detail is free text; at most MaxTextBytes bytes are stored.
	Detail string `gorm:"column:detail"`
}

// TableName implements GORM's tabler.
func (AuditEvent) TableName() string { return "audit_events" }
