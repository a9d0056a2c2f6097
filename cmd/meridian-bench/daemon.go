package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/meridiantime/meridian/client"
)

// localDaemon is a meridiand serving this host's clock as a local
// reference (local_stratum: no source, no network but its own unix
// socket; the daemon's clock is virtual, so the host's clock is never
// touched), its gRPC on a unix socket and its segment in a temporary
// directory. It dies with meridian-bench (Pdeathsig) and on stop.
type localDaemon struct {
	dir, sock, shm string
	cmd            *exec.Cmd
}

func startLocalDaemon(meridiand string) (*localDaemon, error) {
	if _, err := os.Stat(meridiand); err != nil {
		return nil, fmt.Errorf("--meridiand: %w (build it: go build -o bin/meridiand ./cmd/meridiand)", err)
	}
	dir, err := os.MkdirTemp("", "meridian-bench-")
	if err != nil {
		return nil, err
	}
	d := &localDaemon{dir: dir, sock: filepath.Join(dir, "grpc.sock"), shm: filepath.Join(dir, "tt.shm")}
	cfg := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("local_stratum: 1\nmetrics: {listen: \"\"}\ngrpc: {listen: [\"unix://%s\"]}\nshm: {path: %s}\nstate_dir: %s\nlog_level: warn\n",
		d.sock, d.shm, filepath.Join(dir, "state"))), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d.cmd = diesWithUs(exec.Command(meridiand, "--config", cfg))
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// Ready when gRPC Now answers synchronized.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := d.ready()
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("meridiand never served Now on unix://%s: %v", d.sock, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *localDaemon) ready() error {
	g, err := client.DialGRPC("unix://"+d.sock, client.TLS{})
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = g.Now(ctx)
	return err
}

func (d *localDaemon) stop() {
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
	_ = os.RemoveAll(d.dir)
}
