package daemon

import (
	"log/slog"
	"math"
	"runtime/debug"

	"github.com/meridiantime/meridian/config"
)

// MemorySettings is what ApplyMemory put into effect.
type MemorySettings struct {
	GCPercent   int   // -1: off
	LimitBytes  int64 // math.MaxInt64: none
	FromEnvGOGC bool  // GOGC in the environment decided GCPercent
	FromEnvLim  bool  // GOMEMLIMIT in the environment decided LimitBytes
}

// ApplyMemory sets the Go runtime's GC target and soft memory limit for
// the whole process from m (config key memory; docs/memory.md), except
// where GOGC or GOMEMLIMIT in the environment (read through getenv)
// already set them: the operator's override wins, as the Go runtime
// documents. It belongs to meridiand's main, not to a daemon embedded in
// another program.
func ApplyMemory(m config.Memory, getenv func(string) string, log *slog.Logger) MemorySettings {
	s := MemorySettings{GCPercent: m.GCPercent, LimitBytes: math.MaxInt64}
	if m.LimitMiB > 0 {
		s.LimitBytes = int64(m.LimitMiB) << 20
	}
	if getenv("GOGC") != "" {
		s.FromEnvGOGC = true
		s.GCPercent = debug.SetGCPercent(-1) // read it back ...
		debug.SetGCPercent(s.GCPercent)      // ... unchanged
	} else {
		debug.SetGCPercent(s.GCPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		s.FromEnvLim = true
		s.LimitBytes = debug.SetMemoryLimit(-1) // a negative value only reads it
	} else {
		debug.SetMemoryLimit(s.LimitBytes)
	}
	if log != nil && (s.FromEnvGOGC || s.FromEnvLim) {
		log.Info("Go runtime memory settings from the environment override the configuration's memory key",
			"gc_percent", s.GCPercent, "limit_bytes", s.LimitBytes, "GOGC", getenv("GOGC"), "GOMEMLIMIT", getenv("GOMEMLIMIT"))
	}
	return s
}
