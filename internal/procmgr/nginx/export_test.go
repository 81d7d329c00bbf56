package nginx

import (
	"context"
	"os"
	"path/filepath"
	"sort"

	"github.com/ikabud/panel/internal/procmgr"
)

// ApplyFiles replaces the whole tree with the given site files as they are,
// as a transaction like every change: for the test that breaks a config on
// purpose (sites made from specs always pass nginx -t).
func (m *Manager) ApplyFiles(ctx context.Context, files map[string][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.transact(ctx, m.gen+1, func(dir string) error {
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, "sites", filepath.Base(name)), data, 0o600); err != nil {
				return err
			}
		}
		return nil
	}, nil, nil)
}

// Sites lists the ids with a published site, in order.
func (m *Manager) Sites() []procmgr.InstanceID {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]procmgr.InstanceID, 0, len(m.sites))
	for id := range m.sites {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
