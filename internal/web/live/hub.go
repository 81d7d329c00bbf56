// Package live owns the panel's websockets: one per open page, on which the
// server pushes what changes (state rows, usage samples, log lines). Nothing
// travels the other way; actions are ordinary POSTs.
//
// One goroutine (Hub.Run) owns the set of sockets and the ONE subscription to
// the instances service; it builds each changed row once per role variant and
// hands the encoded bytes to every socket that may see it, without ever
// waiting for one. Each socket has a reader goroutine (read limit, pong
// deadline) and a writer goroutine (write deadlines, pings, session re-check)
// that drains what the hub and the log follows left for it. See
// docs/websocket.md for the protocol.
package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ikabud/panel/internal/auth"
	"github.com/ikabud/panel/internal/instances"
	"github.com/ikabud/panel/internal/procmgr"
	"github.com/ikabud/panel/internal/web/viewmodel"
)

// Source is what live needs of the instances service (*instances.Service
// satisfies it).
type Source interface {
	// Subscribe streams every changed view until ctx ends; a removed
	// instance comes as a view with Phase "removed", and a view marked
	// Lost says earlier ones were dropped.
	Subscribe(ctx context.Context) (<-chan instances.View, error)
	// List returns the instances p may see, sorted by id.
	List(ctx context.Context, p auth.Principal) []instances.View
	// FollowLogs streams the last n lines of id's log and then new ones
	// until ctx ends.
	FollowLogs(ctx context.Context, p auth.Principal, id string, n int) (<-chan procmgr.LogLine, error)
	// Health probes id's pool.
	Health(ctx context.Context, p auth.Principal, id string) (procmgr.Health, error)
}

// Viewer is who holds a socket.
type Viewer struct {
	Principal auth.Principal
	SessionID string
}

// Resume is where a reconnecting instance socket left its log: the epoch of
// the follow it read and the seq of the last line it got. It comes from the
// query string: /ws?instance=ID&epoch=E&after=N. The zero Resume asks for
// the last lines.
type Resume struct {
	Epoch string
	After uint64
}

// Close codes the hub sends.
const (
	// CloseServiceRestart (1012) ends every socket when the panel shuts
	// down; browsers reconnect on it.
	CloseServiceRestart = websocket.CloseServiceRestart
	// CloseSessionEnded (4401) ends the sockets of a session that was
	// logged out, expired or revoked; browsers must not reconnect but
	// reload (to the login page).
	CloseSessionEnded = 4401
	// CloseInstanceGone (4404) ends an instance page's socket after a gone
	// message: the instance was removed or is no longer the viewer's.
	// Browsers must not reconnect.
	CloseInstanceGone = 4404
)

// Errors Serve returns before upgrading; the caller answers with HTTP.
var (
	// ErrTooMany: the viewer's user already holds MaxPerUser sockets (429).
	ErrTooMany = errors.New("live: too many open sockets for this user")
	// ErrClosed: the hub is not running or shutting down (503).
	ErrClosed = errors.New("live: hub is shutting down")
)

// Options configure a Hub. Zero limits take the default named beside them.
type Options struct {
	Log *slog.Logger
	// System is the principal of the shared subscription, the log follows
	// and the health probes; it must be an admin.
	System auth.Principal
	// CheckOrigin is passed to the upgrader. Required: when nil every
	// upgrade is refused (fail closed).
	CheckOrigin func(*http.Request) bool
	// StillValid is asked every PingPeriod whether a socket's session still
	// holds; false closes the socket with 4401. Nil re-checks nothing, so
	// only CloseUser and CloseSession end a session's sockets.
	StillValid func(ctx context.Context, v Viewer) bool
	// Now is the clock of rows and usage samples (time.Now when nil).
	// Socket deadlines always use the real clock.
	Now func() time.Time

	PingPeriod time.Duration // 25s: inside the 60s idle timeout of common proxies
	PongWait   time.Duration // 60s: a socket with no pong for this long is dropped
	WriteWait  time.Duration // 10s: one frame may take this long to write
	ReadLimit  int64         // 4 KiB: a bigger client frame closes the socket
	MaxPerUser int           // 20 sockets per user
	// QueueLines bounds the log lines waiting for one socket (2000); the
	// oldest are dropped beyond it and a skipped marker says how many.
	QueueLines int
	// LogBacklog is how many lines a follow keeps for resuming (5000).
	LogBacklog int
	// InitialLines is how many lines a socket gets when it cannot resume (200).
	InitialLines int
	// FollowLinger keeps a follow open after its last socket left (60s), so
	// a reconnect resumes instead of restarting the log.
	FollowLinger time.Duration
	// MaxFollows bounds the log follows open at once (32, the systemd
	// backend's journal reader cap).
	MaxFollows        int
	HealthEvery       time.Duration // 30s between health probes of a running instance
	HealthConcurrency int           // 4 probes at once
}

// Defaults of Options.
const (
	DefaultPingPeriod        = 25 * time.Second
	DefaultPongWait          = 60 * time.Second
	DefaultWriteWait         = 10 * time.Second
	DefaultReadLimit         = 4 << 10
	DefaultMaxPerUser        = 20
	DefaultQueueLines        = 2000
	DefaultLogBacklog        = 5000
	DefaultInitialLines      = 200
	DefaultFollowLinger      = 60 * time.Second
	DefaultMaxFollows        = 32
	DefaultHealthEvery       = 30 * time.Second
	DefaultHealthConcurrency = 4
)

func (o *Options) fill() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.CheckOrigin == nil {
		o.CheckOrigin = func(*http.Request) bool { return false }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	def(&o.PingPeriod, DefaultPingPeriod)
	def(&o.PongWait, DefaultPongWait)
	def(&o.WriteWait, DefaultWriteWait)
	def(&o.FollowLinger, DefaultFollowLinger)
	def(&o.HealthEvery, DefaultHealthEvery)
	if o.PongWait <= o.PingPeriod {
		// A pong can only come after a ping: waiting less than a ping
		// period would drop every idle socket.
		o.PongWait = 2 * o.PingPeriod
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = DefaultReadLimit
	}
	defInt(&o.MaxPerUser, DefaultMaxPerUser)
	defInt(&o.QueueLines, DefaultQueueLines)
	defInt(&o.LogBacklog, DefaultLogBacklog)
	defInt(&o.InitialLines, DefaultInitialLines)
	defInt(&o.MaxFollows, DefaultMaxFollows)
	defInt(&o.HealthConcurrency, DefaultHealthConcurrency)
	o.InitialLines = min(o.InitialLines, o.LogBacklog)
}

// phaseRemoved is the Phase of the view the service publishes for a removed
// instance.
const phaseRemoved = "removed"

// Hub owns the sockets. Make it with New, run it with Run, and hand it
// upgrade requests with Serve.
type Hub struct {
	src      Source
	opt      Options
	log      *slog.Logger
	upgrader websocket.Upgrader
	track    *tracker
	logs     *logs

	running  atomic.Bool
	register chan *client
	leave    chan *client
	closeReq chan func(*client) bool
	refresh  chan string // ids whose health changed, from the health loop
	probeNow chan string // ids that just started running, to the health loop
	stopping chan struct{}
	stopped  chan struct{}

	mu      sync.Mutex
	perUser map[string]int

	// rowsBuilt counts rows built for changes (not snapshots), so a test
	// can see that a change is rendered once per role variant.
	rowsBuilt atomic.Int64

	// Owned by the Run goroutine.
	clients    map[*client]struct{}
	dashboards map[*client]struct{}
	byInstance map[string]map[*client]struct{}
	views      map[string]instances.View
}

// New makes a Hub; call Run to start it.
func New(src Source, opt Options) *Hub {
	opt.fill()
	h := &Hub{
		src:        src,
		opt:        opt,
		log:        opt.Log,
		track:      newTracker(),
		register:   make(chan *client),
		leave:      make(chan *client),
		closeReq:   make(chan func(*client) bool),
		refresh:    make(chan string, 64),
		probeNow:   make(chan string, 256),
		stopping:   make(chan struct{}),
		stopped:    make(chan struct{}),
		perUser:    map[string]int{},
		clients:    map[*client]struct{}{},
		dashboards: map[*client]struct{}{},
		byInstance: map[string]map[*client]struct{}{},
		views:      map[string]instances.View{},
	}
	h.logs = newLogs(src, &h.opt)
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		// Idle sockets hold no write buffer: it is taken from the pool
		// for each frame.
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     opt.CheckOrigin,
	}
	return h
}

// errSubscriptionEnded: the service closed the hub's subscription (it
// allows a bounded number of subscribers).
var errSubscriptionEnded = errors.New("live: the instances subscription ended")

// Run holds ONE subscription to the source for the hub's life and fans its
// changes out to the sockets. It returns after ctx ends and every socket was
// sent close code 1012 (service restart) so that browsers reconnect, or
// earlier with an error if the source closes the subscription. Run may be
// called once.
func (h *Hub) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("live: Run called twice")
	}
	defer close(h.stopped)
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe first, then read the state: a change between the two is
	// in the channel, not lost.
	views, err := h.src.Subscribe(subCtx)
	if err != nil {
		return fmt.Errorf("live: subscribe to the instances: %w", err)
	}
	now := h.opt.Now()
	for _, v := range h.src.List(ctx, h.opt.System) {
		h.views[v.ID] = v
		h.track.observe(v, now)
	}
	h.logs.start(subCtx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.healthLoop(subCtx)
	}()

loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case v, ok := <-views:
			if !ok {
				if ctx.Err() == nil {
					err = errSubscriptionEnded // the caller logs it
				}
				break loop
			}
			if v.Lost {
				h.relist(ctx)
				continue
			}
			h.apply(v)
		case c := <-h.register:
			h.add(c)
		case c := <-h.leave:
			h.remove(c)
		case match := <-h.closeReq:
			for c := range h.clients {
				if match(c) {
					c.close(CloseSessionEnded, "session ended", false)
				}
			}
		case id := <-h.refresh:
			if v, ok := h.views[id]; ok {
				h.fan(v, v, true)
			}
		}
	}
	close(h.stopping)
	cancel()
	h.shutdown()
	h.logs.stop()
	wg.Wait()
	return err
}

// shutdown closes every socket with 1012 and waits until they are gone. A
// socket stuck in a write is cut after WriteWait and a little more.
func (h *Hub) shutdown() {
	for c := range h.clients {
		c.close(CloseServiceRestart, "service restart", false)
	}
	grace := time.NewTimer(h.opt.WriteWait + closeWait + time.Second)
	defer grace.Stop()
	aborted := false
	for len(h.clients) > 0 {
		select {
		case c := <-h.leave:
			h.remove(c)
		case <-grace.C:
			if aborted {
				h.log.Warn("live: sockets still open at shutdown", "count", len(h.clients))
				return
			}
			aborted = true
			for c := range h.clients {
				c.abort()
			}
			grace.Reset(5 * time.Second)
		}
	}
}

func (h *Hub) add(c *client) {
	h.clients[c] = struct{}{}
	if c.instance == "" {
		h.dashboards[c] = struct{}{}
		return
	}
	// No probe here: the instance page was rendered with a fresh probe a
	// moment ago, which it handed over (NoteHealth).
	set := h.byInstance[c.instance]
	if set == nil {
		set = map[*client]struct{}{}
		h.byInstance[c.instance] = set
	}
	set[c] = struct{}{}
}

func (h *Hub) remove(c *client) {
	delete(h.clients, c)
	delete(h.dashboards, c)
	if set := h.byInstance[c.instance]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(h.byInstance, c.instance)
		}
	}
}

// apply takes one changed view from the subscription.
// relist reads every instance again after the hub's subscription dropped
// views it was too slow to take, and applies what differs, so no socket
// keeps a stale row.
func (h *Hub) relist(ctx context.Context) {
	h.log.Warn("live: instance changes were dropped; reading every instance again")
	listed := map[string]bool{}
	for _, v := range h.src.List(ctx, h.opt.System) {
		listed[v.ID] = true
		// Only what changed goes out: the hub got here by falling behind,
		// and every socket is sent each row applied.
		if prev, ok := h.views[v.ID]; ok && reflect.DeepEqual(prev, v) {
			continue
		}
		h.apply(v)
	}
	for id, v := range h.views {
		if !listed[id] {
			h.apply(instances.View{ID: id, OwnerID: v.OwnerID, Phase: phaseRemoved,
				Status: procmgr.Status{ID: procmgr.InstanceID(id), State: procmgr.StateAbsent}})
		}
	}
}

func (h *Hub) apply(v instances.View) {
	prev, had := h.views[v.ID]
	now := h.opt.Now()
	sample, recorded, started := h.track.observe(v, now)
	if v.Phase == phaseRemoved {
		delete(h.views, v.ID)
		h.logs.drop(v.ID)
	} else {
		h.views[v.ID] = v
	}
	if started {
		select {
		case h.probeNow <- v.ID:
		default: // the next round probes it
		}
	}
	h.fan(prev, v, had)
	if recorded {
		h.fanSample(v, sample)
	}
}

// variants renders one change once per role variant: the rows of a view
// differ between viewers only by their Perms.
type variants struct {
	h   *Hub
	v   instances.View
	x   viewmodel.Extra
	now time.Time
	enc [4][]byte
}

func (vs *variants) bytes(p viewmodel.Perms) []byte {
	i := 0
	if p.Power {
		i |= 1
	}
	if p.Manage {
		i |= 2
	}
	if vs.enc[i] == nil {
		vs.h.rowsBuilt.Add(1)
		vs.enc[i] = mustJSON(rowMsg{Type: "row", Row: viewmodel.NewRow(vs.v, vs.x, p, vs.now)})
	}
	return vs.enc[i]
}

// fan hands the row of v to every socket that may see it, and a gone to
// those that saw prev (had: prev is known) but may no longer see v. An
// instance socket whose instance is gone is closed after the gone.
func (h *Hub) fan(prev, v instances.View, had bool) {
	removed := v.Phase == phaseRemoved
	vs := variants{h: h, v: v, x: h.track.extra(v.ID), now: h.opt.Now()}
	var gone []byte
	visit := func(c *client) {
		p := c.viewer.Principal
		if !removed && instances.CanSee(p, v) {
			c.offerRow(v.ID, vs.bytes(viewmodel.PermsFor(p, v)))
			return
		}
		if c.instance == "" && !(had && instances.CanSee(p, prev)) {
			return // never saw it: a customer learns nothing of others' sites
		}
		if gone == nil {
			gone = mustJSON(goneMsg{Type: "gone", ID: v.ID})
		}
		c.offerRow(v.ID, gone)
		if c.instance != "" {
			c.close(CloseInstanceGone, "instance gone", true)
		}
	}
	for c := range h.dashboards {
		visit(c)
	}
	for c := range h.byInstance[v.ID] {
		visit(c)
	}
}

func (h *Hub) fanSample(v instances.View, s Sample) {
	set := h.byInstance[v.ID]
	if len(set) == 0 {
		return
	}
	b := mustJSON(usageMsg{Type: "usage", ID: v.ID, Samples: []Sample{s}})
	for c := range set {
		if instances.CanSee(c.viewer.Principal, v) {
			c.offerSample(b)
		}
	}
}

// userKey is what MaxPerUser counts by: the user id, or the name for root
// (UserID 0), which is not a stored user.
func userKey(p auth.Principal) string {
	if p.UserID == 0 {
		return "name:" + p.Name
	}
	return "id:" + strconv.FormatUint(uint64(p.UserID), 10)
}

func (h *Hub) reserve(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perUser[key] >= h.opt.MaxPerUser {
		return false
	}
	h.perUser[key]++
	return true
}

func (h *Hub) unreserve(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perUser[key]--; h.perUser[key] <= 0 {
		delete(h.perUser, key)
	}
}

// Serve upgrades r and serves the socket until it ends. instance is "" for
// the dashboard (every instance v may see) or the id of the one instance the
// page shows; resume says where that page's log left off.
//
// The caller has already checked the session, the Origin and, for an
// instance, that v may see it. Before upgrading, Serve returns ErrTooMany
// when v's user holds MaxPerUser sockets and ErrClosed when the hub is
// shutting down; an upgrade that fails returns its error (the upgrader has
// answered the request). Once upgraded Serve returns nil: a socket ending
// is not an error.
//
// Serve waits for Run to take the socket; call it only while Run runs.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, v Viewer, instance string, resume Resume) error {
	key := userKey(v.Principal)
	if !h.reserve(key) {
		return ErrTooMany
	}
	defer h.unreserve(key)

	c := newClient(h, v, instance)
	// Register before reading the state, so a change made meanwhile
	// reaches this socket after its snapshot instead of being lost.
	select {
	case h.register <- c:
	case <-h.stopping:
		return ErrClosed
	case <-r.Context().Done():
		return fmt.Errorf("live: waiting for the hub: %w", r.Context().Err())
	}
	defer func() {
		select {
		case h.leave <- c:
		case <-h.stopped:
		}
	}()

	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return fmt.Errorf("live: upgrade: %w", err)
	}
	c.setConn(conn)
	defer conn.Close()

	h.first(r.Context(), c, resume)
	if c.attachLogs {
		defer h.logs.detach(c)
	}
	readDone := make(chan struct{})
	go c.readLoop(readDone)
	end := c.writeLoop(readDone)
	conn.Close()
	<-readDone
	h.log.Debug("live: socket closed", "user", v.Principal.Name, "instance", instance, "why", end)
	return nil
}

// first prepares what c sends before anything else: the snapshot, and on an
// instance socket the usage history and the log (attached last, so that
// its lines follow the snapshot).
func (h *Hub) first(ctx context.Context, c *client, resume Resume) {
	p := c.viewer.Principal
	now := h.opt.Now()
	all := h.src.List(ctx, p)
	rows := make([]viewmodel.Row, 0, len(all))
	var found bool
	for _, v := range all {
		if c.instance != "" && v.ID != c.instance {
			continue
		}
		found = true
		rows = append(rows, viewmodel.NewRow(v, h.track.extra(v.ID), viewmodel.PermsFor(p, v), now))
	}
	c.first = append(c.first, mustJSON(snapshotMsg{Type: "snapshot", Rows: rows}))
	if c.instance == "" {
		return
	}
	if !found {
		c.first = append(c.first, mustJSON(goneMsg{Type: "gone", ID: c.instance}))
		c.close(CloseInstanceGone, "instance gone", true)
		return
	}
	hist := h.track.history(c.instance)
	if hist == nil {
		hist = []Sample{}
	}
	c.first = append(c.first, mustJSON(usageMsg{Type: "usage", ID: c.instance, Samples: hist}))
	c.attachLogs = true
	h.logs.attach(c, c.instance, resume)
}

// CloseUser ends every socket of the user now, with 4401 (password or role
// changed, user disabled or removed). A socket still being set up when this
// runs is caught by StillValid at its first ping.
func (h *Hub) CloseUser(userID uint) {
	h.closeWhere(func(c *client) bool { return c.viewer.Principal.UserID == userID })
}

// CloseSession ends every socket of one session now, with 4401 (logout).
func (h *Hub) CloseSession(sessionID string) {
	h.closeWhere(func(c *client) bool { return c.viewer.SessionID == sessionID })
}

func (h *Hub) closeWhere(match func(*client) bool) {
	if !h.running.Load() {
		return // no socket is served before Run
	}
	select {
	case h.closeReq <- match:
	case <-h.stopping:
	}
}

// Extra is what the hub knows of an instance beside its view: the last
// health probe and the CPU rate, for server-rendered pages.
func (h *Hub) Extra(id string) viewmodel.Extra { return h.track.extra(id) }

// History returns the usage samples of the last 15 minutes, oldest first,
// for the charts' first render.
func (h *Hub) History(id string) []Sample { return h.track.history(id) }

// The messages, as the protocol spells them.
type (
	snapshotMsg struct {
		Type string          `json:"type"`
		Rows []viewmodel.Row `json:"rows"`
	}
	rowMsg struct {
		Type string        `json:"type"`
		Row  viewmodel.Row `json:"row"`
	}
	goneMsg struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	usageMsg struct {
		Type    string   `json:"type"`
		ID      string   `json:"id"`
		Samples []Sample `json:"samples"`
	}
	skippedMsg struct {
		Type   string `json:"type"`
		ID     string `json:"id"`
		Count  int    `json:"count"`
		Reason string `json:"reason"`
	}
)

// Reasons of skipped markers.
const (
	reasonSlow        = "slow connection"
	reasonRestarted   = "log restarted"
	reasonMissed      = "missed while disconnected"
	reasonTooMany     = "too many logs open; try again later"
	reasonUnavailable = "log not available yet; retrying"
)

func skipped(id string, n int, reason string) []byte {
	return mustJSON(skippedMsg{Type: "skipped", ID: id, Count: n, Reason: reason})
}

// mustJSON encodes the hub's own message types, which cannot fail to
// encode (no channels, funcs or NaN: CPU figures are rounded finite).
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("live: encode message: " + err.Error())
	}
	return b
}

// The instances service is the Source the panel runs with.
var _ Source = (*instances.Service)(nil)
