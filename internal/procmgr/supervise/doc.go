// Package supervise is the procmgr.Backend for hosts without systemd:
// containers (Dockerfile.dev), CI machines, WSL.
//
// The panel itself runs each instance's php-fpm master, with the same
// rendered config as under systemd (except that errors go to stderr), as the
// instance's user, in its own process group, and where the host allows in
// its own cgroups. It mirrors the systemd unit's policy: restart on failure,
// at most 5 starts in 10 s, then failed with result start-limit-hit until a
// person starts it again. Masters outlive the panel: a new panel adopts the
// ones still running (after checking that the PID is still the same process,
// ours, and a php-fpm master of that instance) and starts the ones that died.
//
// # Files
//
//   - backend.go: options, the Backend and instance types, New and Close
//   - actions.go: the procmgr.Backend actions (Provision ... SetLimits)
//   - status.go: statuses, the status feed and the usage loop
//   - lifecycle.go: start, stop and reload of a master, as actions use them
//   - spawn.go: starting one master (command, runtime directory, readiness)
//   - exit.go: a master's end and the restart policy
//   - master.go: the master process handle (pidfd, signals, reaping)
//   - limits.go, cgroup.go: limits and cgroup membership
//   - logs.go: the per-instance log (FIFO, ring, file, followers)
//   - statefile.go, adopt.go: what survives a panel restart, and adoption
//   - proc.go: what is read about processes from /proc
//
// # Lock order
//
// A mutex may be taken while holding only those listed before it:
//
//  1. the instance's action lock (procmgr.Locks, by id): held for a whole
//     action or automatic restart; taken with no mutex held. Kill never
//     takes it.
//  2. instance.saveMu: held while a state file is written (saveState,
//     teardown); it takes Backend.mu briefly to snapshot the state.
//  3. Backend.mu: guards the instance map, every instance's fields and
//     each master's expected, timedOut and oomBase. Never held across a
//     wait, a fork, a signal or a file write other than these below.
//  4. under Backend.mu, only leaf locks: the status feed's and its
//     subscribers' (publishLocked publishes under Backend.mu so that events
//     leave in the order of the changes; a publish never blocks), and
//     logSink.mu (instance closes the sink of an instance made after
//     Close).
//
// master.mu (orders killing the process group against reaping) and
// logSink.mu are leaves: nothing else is taken while holding either, and
// master.mu is never taken with Backend.mu held. cgroups holds no lock.
package supervise
