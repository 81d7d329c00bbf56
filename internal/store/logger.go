package store

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	gormlogger "gorm.io/gorm/logger"
)

// gormLogger sends GORM's own messages and slow queries to slog. It does not log failed
// queries: the error goes back to the caller, who logs it once at the edge. SQL is logged
// without its arguments, which may be password hashes, token hashes or tenants' data.
type gormLogger struct {
	log  *slog.Logger
	slow time.Duration
}

var _ gormlogger.Interface = gormLogger{}

func (l gormLogger) LogMode(gormlogger.LogLevel) gormlogger.Interface { return l }

func (l gormLogger) Info(ctx context.Context, msg string, args ...any) {
	l.log.DebugContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

func (l gormLogger) Warn(ctx context.Context, msg string, args ...any) {
	l.log.WarnContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

func (l gormLogger) Error(ctx context.Context, msg string, args ...any) {
	l.log.ErrorContext(ctx, "gorm: "+fmt.Sprintf(msg, args...))
}

func (l gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if err != nil {
		return
	}
	if elapsed := time.Since(begin); elapsed >= l.slow {
		query, rows := fc()
		l.log.WarnContext(ctx, "slow database query", "sql", query, "rows", rows, "duration", elapsed)
	}
}

// ParamsFilter keeps query arguments out of the SQL text that Trace receives.
func (l gormLogger) ParamsFilter(_ context.Context, query string, _ ...any) (string, []any) {
	return query, nil
}
