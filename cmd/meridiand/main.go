// Command meridiand is the Meridian time daemon.
//
//	meridiand [--config FILE] [--print-default-config] [--shm PATH] [--state-dir DIR]
//	          [--metrics-listen ADDR] [--clock-offset DURATION] [--version]
//
// Without --config it runs the embedded default configuration, which needs
// no privilege: a virtual clock with no sources, so unsynchronized (it says
// what to configure), shared memory and state under per-user directories
// when /run and /var/lib are not writable. --local-stratum N serves this
// host's clock as a local reference instead (a demonstration: intervals
// relative to this host's clock, not UTC). It never changes the host clock.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/daemon"
	"github.com/meridiantime/meridian/internal/sdnotify"
	"github.com/meridiantime/meridian/internal/version"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("meridiand", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "YAML configuration file (default: built-in, see --print-default-config)")
	printDefault := fs.Bool("print-default-config", false, "print the default configuration and exit")
	shm := fs.String("shm", "", "override shm.path")
	state := fs.String("state-dir", "", "override state_dir")
	metrics := fs.String("metrics-listen", "-", `override metrics.listen ("" disables)`)
	offset := fs.String("clock-offset", "", "override clock_offset (virtual clock), e.g. +2.5ms")
	grpcListen := fs.String("grpc-listen", "-", `override grpc.listen: comma-separated unix:///path or host:port ("" disables)`)
	showVersion := fs.Bool("version", false, "print the version and exit")
	localStratum := fs.Int("local-stratum", -1, "override local_stratum (0..15; >0 with no sources: serve this host's clock as a local reference, not UTC)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println(version.String("meridiand"))
		return 0
	}
	// SIGHUP reloads (below), SIGTERM and SIGINT stop: caught from the
	// start, so that an early one does not kill the daemon unclean.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *printDefault {
		os.Stdout.Write(config.DefaultYAML())
		return 0
	}
	// load reads the configuration with the command line's overrides
	// applied (at start, and again on SIGHUP).
	load := func() (*config.Config, error) {
		cfg := config.Default()
		if *cfgPath != "" {
			var err error
			if cfg, err = config.Load(*cfgPath); err != nil {
				return nil, err
			}
		}
		if *shm != "" {
			cfg.Shm.Path = *shm
		}
		if *state != "" {
			cfg.StateDir = *state
		}
		if *metrics != "-" {
			cfg.Metrics.Listen = *metrics
		}
		if *grpcListen != "-" {
			cfg.GRPC.Listen = nil
			for _, a := range strings.Split(*grpcListen, ",") {
				if a = strings.TrimSpace(a); a != "" {
					cfg.GRPC.Listen = append(cfg.GRPC.Listen, a)
				}
			}
			if err := cfg.Validate(); err != nil {
				return nil, fmt.Errorf("--grpc-listen: %w", err)
			}
		}
		if *localStratum >= 0 {
			cfg.LocalStratum = *localStratum
			if err := cfg.Validate(); err != nil {
				return nil, fmt.Errorf("--local-stratum: %w", err)
			}
		}
		if *offset != "" {
			d, err := time.ParseDuration(strings.TrimPrefix(*offset, "+"))
			if err != nil {
				return nil, fmt.Errorf("--clock-offset: bad duration %q", *offset)
			}
			cfg.ClockOffset = config.Duration(d)
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meridiand:", err)
		return 2
	}
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	daemon.ApplyMemory(cfg.Memory, os.Getenv, log) // process-wide: here, not in daemon.New
	notifier, nerr := sdnotify.FromEnv()
	if nerr != nil {
		log.Warn("not notifying systemd", "err", nerr)
	}
	d, err := daemon.New(cfg, log, daemon.Options{Notifier: notifier})
	if err != nil {
		fmt.Fprintln(os.Stderr, "meridiand:", err)
		return 2
	}
	if err := d.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "meridiand:", err)
		return 1
	}
	go reloadOnHUP(ctx, hup, d, log, load)
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "meridiand:", err)
		return 1
	}
	return 0
}

// reloadOnHUP re-reads the configuration on every SIGHUP and applies it
// (NTP sources at once; other keys need a restart, which the log says).
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, d *daemon.Daemon, log *slog.Logger, load func() (*config.Config, error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := load()
		if err != nil {
			log.Error("SIGHUP: configuration not reloaded", "err", err)
			continue
		}
		if err := d.Reload(ctx, cfg); err != nil {
			log.Warn("SIGHUP: reload incomplete", "err", err)
		}
	}
}
