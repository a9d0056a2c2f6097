// Package testdaemon runs an in-process meridiand for tests of other
// packages: files in a temporary directory, stopped (and its Run error
// checked) when the test ends.
package testdaemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/daemon"
)

// TempPaths points the shm segment, state directory and gRPC socket of cfg
// into a fresh temporary directory (a test never touches /run/meridian).
func TempPaths(t testing.TB, cfg *config.Config) {
	dir := t.TempDir()
	cfg.Shm.Path = filepath.Join(dir, "tt.shm")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.GRPC.Listen = config.ListenList{"unix://" + filepath.Join(dir, "grpc.sock")}
}

// Start creates, starts and runs a daemon on cfg until the test ends.
func Start(t testing.TB, cfg *config.Config, opt daemon.Options) *daemon.Daemon {
	t.Helper()
	d, err := daemon.New(cfg, slog.New(slog.DiscardHandler), opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("meridiand Run: %v", err)
		}
	})
	return d
}
