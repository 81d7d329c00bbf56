// Package systemd is the production Backend: one template unit, one service
// instance per site, driven over D-Bus with go-systemd, and state pushed by
// systemd's PropertiesChanged signals.
package systemd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// conn is the backend's one D-Bus connection to systemd, for method calls
// (through go-systemd) and for unit signals alike. On systemd's private
// socket every signal is sent to every connection, so each extra connection
// would make systemd write, and the panel decode, every signal once more; a
// batch start of 200 instances emits thousands.
//
// go-systemd's own signal handling is used only for job results; unit
// changes are read from the signals here, because go-systemd's properties
// subscriber passes on only the Unit interface and makes a GetUnit call for
// every job that ends. Both the Unit interface (ActiveState, SubState) and
// the Service interface (MainPID, NRestarts, ExecMain*, Result) emit their
// changes, so an instance's status follows from signals alone.
//
// A closed connection (systemd re-executed) is made again on the next call;
// the watch loop then takes the new signal channel and re-reads everything.
type conn struct {
	mu  sync.Mutex
	sd  *sd.Conn
	raw *godbus.Conn
	ch  chan *godbus.Signal
	gen int // bumped on every new connection
	// onBus: connected through the system bus, where any client may send
	// this connection a signal; owner is then the unique bus name of
	// systemd (the owner of org.freedesktop.systemd1), read at connect
	// and again when a signal comes from another sender.
	onBus   bool
	owner   string
	checked time.Time
}

// systemdName is systemd's well-known name on the system bus.
const systemdName = "org.freedesktop.systemd1"

// fromSystemd reports whether a signal with this sender comes from systemd.
// On systemd's private socket only systemd speaks. On the system bus the
// sender must be the owner of systemd's name: PropertiesChanged from any
// other client (a tenant may connect to the bus) is ignored. A mismatch
// reads the owner again (systemd re-executed), at most once a second.
func (c *conn) fromSystemd(sender string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.onBus {
		return true
	}
	if sender != "" && sender == c.owner {
		return true
	}
	if c.raw == nil || time.Since(c.checked) < time.Second {
		return false
	}
	c.checked = time.Now()
	var owner string
	if err := c.raw.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, systemdName).Store(&owner); err == nil {
		c.owner = owner
	}
	return sender != "" && sender == c.owner
}

// signalBuffer is the signal channel's capacity. godbus never drops a
// signal: past this it parks each in a goroutine until the watch loop reads.
const signalBuffer = 8192

func (c *conn) get(ctx context.Context) (*sd.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sd != nil && c.raw.Connected() {
		return c.sd, nil
	}
	if c.sd != nil {
		c.sd.Close()
		c.sd, c.raw = nil, nil
	}
	raw, onBus, err := dialRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd: connect to systemd over D-Bus: %w", err)
	}
	owner := ""
	if onBus {
		if err := raw.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, systemdName).Store(&owner); err != nil {
			raw.Close()
			return nil, fmt.Errorf("systemd: who owns %s on the system bus: %w", systemdName, err)
		}
	}
	ch := make(chan *godbus.Signal, signalBuffer)
	raw.Signal(ch)
	// On the private socket systemd sends signals to every client; on the
	// system bus the match and Subscribe are needed. Each is harmless on
	// the other.
	_ = raw.AddMatchSignal(godbus.WithMatchSender(systemdName), godbus.WithMatchInterface("org.freedesktop.DBus.Properties"), godbus.WithMatchMember("PropertiesChanged"))
	obj := raw.Object(systemdName, "/org/freedesktop/systemd1")
	if err := obj.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Err; err != nil {
		raw.Close()
		return nil, fmt.Errorf("systemd: subscribe to unit signals: %w", err)
	}
	// go-systemd asks for two connections (calls and signals); it gets the
	// same one twice.
	sc, err := sd.NewConnection(func() (*godbus.Conn, error) { return raw, nil })
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("systemd: %w", err)
	}
	c.sd, c.raw, c.ch = sc, raw, ch
	c.onBus, c.owner, c.checked = onBus, owner, time.Now()
	c.gen++
	return sc, nil
}

// signals returns the current connection's signal channel and generation.
func (c *conn) signals() (<-chan *godbus.Signal, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch, c.gen
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sd != nil {
		c.sd.Close()
		c.sd, c.raw = nil, nil
	}
}

// dialRaw connects straight to systemd's private socket when root (no
// dbus-daemon needed), and falls back to the system bus (onBus).
func dialRaw(ctx context.Context) (c *godbus.Conn, onBus bool, err error) {
	conn, err := godbus.Dial("unix:path=/run/systemd/private", godbus.WithContext(ctx))
	if err == nil {
		// No Hello on the private socket: it is not a bus.
		if err = conn.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err == nil {
			return conn, false, nil
		}
		conn.Close()
	}
	bus, berr := godbus.ConnectSystemBus(godbus.WithContext(ctx))
	if berr != nil {
		return nil, false, fmt.Errorf("%w (system bus: %v)", err, berr)
	}
	return bus, true, nil
}

// waitJob waits for a job's result on ch (capacity 1, so go-systemd never
// blocks delivering it). Anything but "done" is an error naming the unit and
// the result.
func waitJob(ctx context.Context, unit, verb string, ch <-chan string) error {
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("systemd: %s %s: job %s", verb, unit, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("systemd: %s %s: %w", verb, unit, ctx.Err())
	case <-t.C:
		return fmt.Errorf("systemd: %s %s: no job result after 60s", verb, unit)
	}
}

const unitPathPrefix = "/org/freedesktop/systemd1/unit/"

// unitFromPath turns a unit object path back into the unit name: systemd
// escapes every byte that is not a letter or digit as _xx.
func unitFromPath(p godbus.ObjectPath) (string, bool) {
	esc, ok := strings.CutPrefix(string(p), unitPathPrefix)
	if !ok {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(esc); i++ {
		if esc[i] == '_' && i+2 < len(esc) {
			n, err := strconv.ParseUint(esc[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			b.WriteByte(byte(n))
			i += 2
			continue
		}
		b.WriteByte(esc[i])
	}
	return b.String(), true
}
