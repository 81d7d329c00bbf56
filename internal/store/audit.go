package store

import (
	"context"
	"fmt"
	"time"
)

// Bounds of ListAudit's limit.
const (
	MinAuditLimit = 1
	MaxAuditLimit = 1000
)

// AddAudit appends ev to the audit log and sets ev.ID. A zero ev.At is set from the store's
// clock; Detail is bounded as described at MaxTextBytes.
func (db *DB) AddAudit(ctx context.Context, ev *AuditEvent) error {
	if ev.At.IsZero() {
		ev.At = db.now()
	}
	ev.At = normTime(ev.At)
	ev.Detail = boundText(ev.Detail)
	err := db.gorm.WithContext(ctx).Create(ev).Error
	return translate(err, fmt.Sprintf("add audit event %q for instance %q", ev.Action, ev.InstanceID))
}

// ListAudit returns the newest audit events first (in the order they were added), for one
// instance or, with instanceID "", for all. limit is clamped to MinAuditLimit..MaxAuditLimit.
func (db *DB) ListAudit(ctx context.Context, instanceID string, limit int) ([]AuditEvent, error) {
	limit = min(max(limit, MinAuditLimit), MaxAuditLimit)
	q := db.gorm.WithContext(ctx).Order("id DESC").Limit(limit)
	if instanceID != "" {
		q = q.Where("instance_id = ?", instanceID)
	}
	out := []AuditEvent{}
	if err := q.Find(&out).Error; err != nil {
		return nil, translate(err, fmt.Sprintf("list audit events for instance %q", instanceID))
	}
	return out, nil
}

// AuditFilter selects audit events. Empty fields match everything.
type AuditFilter struct {
	InstanceID string
	Actor      string
	Action     string
	// Since and Until bound At (inclusive, exclusive); zero means unbounded.
	Since, Until time.Time
	// BeforeID pages backwards: only events with an id below it; 0 means from the newest.
	BeforeID uint64
	// Limit is clamped to MinAuditLimit..MaxAuditLimit.
	Limit int
}

// FindAudit returns the audit events f selects, newest first.
func (db *DB) FindAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	limit := min(max(f.Limit, MinAuditLimit), MaxAuditLimit)
	q := db.gorm.WithContext(ctx).Order("id DESC").Limit(limit)
	if f.InstanceID != "" {
		q = q.Where("instance_id = ?", f.InstanceID)
	}
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if !f.Since.IsZero() {
		q = q.Where("at >= ?", normTime(f.Since))
	}
	if !f.Until.IsZero() {
		q = q.Where("at < ?", normTime(f.Until))
	}
	if f.BeforeID != 0 {
		q = q.Where("id < ?", f.BeforeID)
	}
	out := []AuditEvent{}
	if err := q.Find(&out).Error; err != nil {
		return nil, translate(err, "find audit events")
	}
	return out, nil
}

// DeleteAuditBefore deletes the audit events that happened before t and
// returns how many, in batches so that a large backlog does not hold one long
// transaction over the table.
func (db *DB) DeleteAuditBefore(ctx context.Context, t time.Time) (int64, error) {
	const batch = 5000
	var total int64
	for {
		var ids []uint64
		if err := db.gorm.WithContext(ctx).Model(&AuditEvent{}).Where("at < ?", normTime(t)).
			Order("id").Limit(batch).Pluck("id", &ids).Error; err != nil {
			return total, translate(err, "find old audit events")
		}
		if len(ids) == 0 {
			return total, nil
		}
		res := db.gorm.WithContext(ctx).Where("id IN ?", ids).Delete(&AuditEvent{})
		if res.Error != nil {
			return total, translate(res.Error, "delete old audit events")
		}
		total += res.RowsAffected
		if len(ids) < batch {
			return total, nil
		}
	}
}
