// Package migrations holds the panel's database schema as goose SQL migrations, one folder per
// dialect, embedded in the binary.
//
// Both folders describe the same schema: the same tables, columns, indexes and foreign keys, with
// types as close as the two dialects allow. A change to one folder needs the matching change to
// the other; the store tests compare the two schemas after migrating and fail when they drift.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
)

// FS holds both dialect folders, sqlite/ and mysql/.
//
//go:embed sqlite/*.sql mysql/*.sql
var FS embed.FS

// Dialect returns the migrations of one dialect ("sqlite" or "mysql") as a file system whose root
// holds the numbered .sql files, as goose expects.
func Dialect(name string) (fs.FS, error) {
	switch name {
	case "sqlite", "mysql":
		sub, err := fs.Sub(FS, name)
		if err != nil {
			return nil, fmt.Errorf("migrations: %s: %w", name, err)
		}
		return sub, nil
	default:
		return nil, fmt.Errorf("migrations: unknown dialect %q (want sqlite or mysql)", name)
	}
}
