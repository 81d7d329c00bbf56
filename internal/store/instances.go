package store

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"gorm.io/gorm"
)

// MaxTextBytes bounds the free-text columns that carry messages from outside the panel
// (instances.last_error, audit_events.detail): longer text is cut at a character boundary and
// marked. It keeps well inside MySQL's TEXT (64 KiB), so both dialects store the same thing.
const MaxTextBytes = 16 << 10

const truncatedMark = " [truncated]"

// boundText makes s storable in a free-text column: valid UTF-8 (MySQL rejects anything else
// under utf8mb4; error output from other programs is not always valid) and at most MaxTextBytes.
func boundText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxTextBytes {
		return s
	}
	cut := MaxTextBytes - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

// CreateInstance inserts inst. Zero CreatedAt and UpdatedAt are set from the store's clock; all
// times are stored in UTC. It returns an error wrapping ErrConflict if the id exists, and
// ErrInvalid if OwnerID names no user.
func (db *DB) CreateInstance(ctx context.Context, inst *Instance) error {
	inst.CreatedAt = normTime(inst.CreatedAt)
	inst.UpdatedAt = normTime(inst.UpdatedAt)
	inst.LastError = boundText(inst.LastError)
	err := db.gorm.WithContext(ctx).Create(inst).Error
	return translate(err, fmt.Sprintf("create instance %q", inst.ID))
}

// GetInstance returns the instance with the given id, or an error wrapping ErrNotFound.
func (db *DB) GetInstance(ctx context.Context, id string) (*Instance, error) {
	var inst Instance
	err := db.gorm.WithContext(ctx).Where("id = ?", id).Take(&inst).Error
	if err != nil {
		return nil, translate(err, fmt.Sprintf("get instance %q", id))
	}
	return &inst, nil
}

// ListInstances returns every instance, ordered by id.
func (db *DB) ListInstances(ctx context.Context) ([]Instance, error) {
	out := []Instance{}
	if err := db.gorm.WithContext(ctx).Order("id").Find(&out).Error; err != nil {
		return nil, translate(err, "list instances")
	}
	return out, nil
}

// ListInstancesByOwner returns the instances owned by the given user, ordered by id.
func (db *DB) ListInstancesByOwner(ctx context.Context, ownerID uint) ([]Instance, error) {
	out := []Instance{}
	err := db.gorm.WithContext(ctx).Where("owner_id = ?", ownerID).Order("id").Find(&out).Error
	if err != nil {
		return nil, translate(err, fmt.Sprintf("list instances of owner %d", ownerID))
	}
	return out, nil
}

// UpdateInstance writes every column of inst except id and created_at, and sets UpdatedAt (in
// inst too) from the store's clock. It returns an error wrapping ErrNotFound if no row has
// inst.ID, and ErrInvalid if OwnerID names no user. It does not check Generation: callers
// serialise changes to one instance.
func (db *DB) UpdateInstance(ctx context.Context, inst *Instance) error {
	op := fmt.Sprintf("update instance %q", inst.ID)
	if inst.ID == "" {
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	}
	inst.LastError = boundText(inst.LastError)
	// Model(inst): GORM takes the WHERE from the primary key and writes the new updated_at
	// (from NowFunc, the store's clock) back into inst.
	res := db.gorm.WithContext(ctx).Model(inst).Select("*").Omit("created_at").Updates(inst)
	if res.Error != nil {
		return translate(res.Error, op)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	}
	return nil
}

// DeleteInstance deletes the instance row. Its audit events stay. It returns an error wrapping
// ErrNotFound if there is no such row.
func (db *DB) DeleteInstance(ctx context.Context, id string) error {
	op := fmt.Sprintf("delete instance %q", id)
	res := db.gorm.WithContext(ctx).Where("id = ?", id).Delete(&Instance{})
	if res.Error != nil {
		return translate(res.Error, op)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, op)
	}
	return nil
}

// maxBatch bounds the ids of one batched statement, well inside both
// dialects' limits on bound parameters.
const maxBatch = 500

// SetDesiredStates records one desired state for many instances in a single
// transaction (one fsync instead of one per instance), bumping each row's
// generation. Ids with no row are ignored.
func (db *DB) SetDesiredStates(ctx context.Context, ids []string, desired string) error {
	if len(ids) == 0 {
		return nil
	}
	now := db.now()
	return translate(db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for start := 0; start < len(ids); start += maxBatch {
			chunk := ids[start:min(start+maxBatch, len(ids))]
			err := tx.Model(&Instance{}).Where("id IN ?", chunk).Updates(map[string]any{
				"desired_state": desired,
				"generation":    gorm.Expr("generation + 1"),
				"updated_at":    now,
			}).Error
			if err != nil {
				return err
			}
		}
		return nil
	}), "set desired states")
}
