package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ikabud/panel/internal/procmgr"
)

// The state file that lets the next panel adopt a master (adopt.go).

// savedState is the root-only state file StateDir/<id>.json, written at
// every start and change, that lets the next panel adopt the master.
type savedState struct {
	PID int `json:"pid"`
	// StartTicks is field 22 of /proc/<pid>/stat: with the PID it names
	// one process for good, since a reused PID starts later.
	StartTicks uint64 `json:"start_ticks"`
	Restarts   int    `json:"restarts"`
	// Running says a master should run (a person left it running and it
	// has not failed or stopped on its own).
	Running bool           `json:"running"`
	Failed  bool           `json:"failed,omitempty"`
	Limits  procmgr.Limits `json:"limits"`
}

func (b *Backend) statePath(id procmgr.InstanceID) string {
	return filepath.Join(b.opt.StateDir, string(id)+".json")
}

// saveState writes the instance's state file.
func (b *Backend) saveState(inst *instance) {
	inst.saveMu.Lock()
	defer inst.saveMu.Unlock()
	b.mu.Lock()
	if inst.removed {
		b.mu.Unlock()
		return
	}
	s := savedState{Restarts: inst.restarts, Limits: inst.limits, Failed: inst.state == procmgr.StateFailed}
	switch inst.state {
	case procmgr.StateStarting, procmgr.StateRunning, procmgr.StateReloading, procmgr.StateCrashLooping:
		s.Running = true
	}
	if m := inst.m; m != nil {
		s.PID, s.StartTicks = m.pid, m.ticks
	}
	b.mu.Unlock()
	data, err := json.Marshal(s)
	if err == nil {
		_, err = procmgr.WriteFileAtomic(b.statePath(inst.id), append(data, '\n'), 0, 0, 0o600)
	}
	if err != nil {
		b.logFor(inst.id, "save-state").Warn("write state file", "err", err)
	}
}

func (b *Backend) readState(id procmgr.InstanceID) (savedState, bool, error) {
	data, err := os.ReadFile(b.statePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return savedState{}, false, nil
	}
	if err != nil {
		return savedState{}, false, fmt.Errorf("supervise: %w", err)
	}
	var s savedState
	if err := json.Unmarshal(data, &s); err != nil {
		return savedState{}, false, fmt.Errorf("supervise: state file %s: %w", b.statePath(id), err)
	}
	return s, true, nil
}
