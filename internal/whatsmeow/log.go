package whatsmeow

import (
	"context"
	"fmt"
	"log/slog"

	waLog "go.mau.fi/whatsmeow/util/log"
)

// waLogger adapts slog to whatsmeow's printf-style logger. whatsmeow's
// Debugf is very chatty (every frame), so it maps to slog's Debug level.
type waLogger struct {
	log    *slog.Logger
	module string
}

func newWALogger(log *slog.Logger, module string) waLog.Logger {
	return waLogger{log: log, module: module}
}

func (w waLogger) Errorf(msg string, args ...any) { w.logf(slog.LevelError, msg, args) }
func (w waLogger) Warnf(msg string, args ...any)  { w.logf(slog.LevelWarn, msg, args) }
func (w waLogger) Infof(msg string, args ...any)  { w.logf(slog.LevelInfo, msg, args) }
func (w waLogger) Debugf(msg string, args ...any) { w.logf(slog.LevelDebug, msg, args) }

// Sub keeps one "wa_module" attribute with the full path (Client/Socket)
// instead of stacking duplicate keys.
func (w waLogger) Sub(module string) waLog.Logger {
	return waLogger{log: w.log, module: w.module + "/" + module}
}

func (w waLogger) logf(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !w.log.Enabled(ctx, level) {
		return // skip formatting debug noise nobody reads
	}
	w.log.Log(ctx, level, fmt.Sprintf(msg, args...), "wa_module", w.module)
}
