package systemd

import (
	"context"
	"fmt"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/ikabud/panel/internal/procmgr"
)

// On the system bus any client may send the panel's connection a
// PropertiesChanged signal for an instance's unit (a unicast signal passes
// every match rule). Only systemd's are believed: a forged "running with
// PID 1" from another sender changes nothing.
func TestSignalsFromOtherSendersIgnored(t *testing.T) {
	l := procmgr.DefaultLayout()
	id := procmgr.InstanceID("wp-a")
	b := &Backend{
		host:  &procmgr.Host{Layout: l},
		props: map[procmgr.InstanceID]map[string]any{id: {"ActiveState": "inactive", "SubState": "dead"}},
		exits: map[procmgr.InstanceID]procmgr.ExitInfo{},
		dirty: map[procmgr.InstanceID]bool{},
		kick:  make(chan struct{}, 1),
	}
	b.conn.onBus, b.conn.owner, b.conn.checked = true, ":1.5", time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := b.feed.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	signal := func(sender string) *godbus.Signal {
		return &godbus.Signal{
			Sender: sender,
			Path:   godbus.ObjectPath(unitPathPrefix + escapeUnit(l.UnitName(id))),
			Name:   "org.freedesktop.DBus.Properties.PropertiesChanged",
			Body: []any{"org.freedesktop.systemd1.Unit", map[string]godbus.Variant{
				"ActiveState": godbus.MakeVariant("active"), "SubState": godbus.MakeVariant("running"),
			}, []string{}},
		}
	}
	for _, forger := range []string{":1.99", "", "org.freedesktop.systemd1"} {
		b.handleSignal(signal(forger))
	}
	select {
	case ev := <-events:
		t.Fatalf("a forged signal was published: %+v", ev.Status)
	default:
	}
	if got := b.props[id]["ActiveState"]; got != "inactive" {
		t.Fatalf("a forged signal changed the cached state to %v", got)
	}
	b.handleSignal(signal(":1.5"))
	select {
	case ev := <-events:
		if ev.Status.State != procmgr.StateRunning {
			t.Errorf("systemd's signal published %s, want running", ev.Status.State)
		}
	default:
		t.Fatal("systemd's own signal was not published")
	}
	// On the private socket only systemd speaks: no sender to check.
	var private conn
	if !private.fromSystemd("") {
		t.Error("a signal on systemd's private socket was refused")
	}
}

// escapeUnit is systemd's object path escaping of a unit name (every byte
// but [A-Za-z0-9] as _xx), the inverse of unitFromPath.
func escapeUnit(name string) string {
	var out []byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			out = append(out, c)
		} else {
			out = append(out, []byte(fmt.Sprintf("_%02x", c))...)
		}
	}
	return string(out)
}

// Limits systemd reports back differently from what was asked (clamped,
// rounded, overridden by a drop-in) fail SetLimits, naming both; the same
// values pass.
func TestLimitsReadBackMustMatch(t *testing.T) {
	want := limitProps(procmgr.Limits{MemoryMax: 300 << 20, CPUQuota: 40, TasksMax: 77})
	same := map[string]any{"MemoryMax": uint64(300 << 20), "CPUQuotaPerSecUSec": uint64(400_000), "TasksMax": uint64(77)}
	if err := checkLimits("u", want, same); err != nil {
		t.Errorf("the same limits: %v", err)
	}
	for name, v := range map[string]any{"MemoryMax": uint64(256 << 20), "CPUQuotaPerSecUSec": uint64(410_000), "TasksMax": uint64(4915)} {
		props := map[string]any{}
		for k, x := range same {
			props[k] = x
		}
		props[name] = v
		if err := checkLimits("u", want, props); err == nil {
			t.Errorf("systemd reporting %s=%v (asked otherwise) was accepted", name, v)
		}
	}
}
