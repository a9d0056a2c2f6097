// Command meridiand is the Meridian time daemon.
//
//	meridiand [--config FILE] [--print-default-config] [--shm PATH] [--state-dir DIR]
//	          [--metrics-listen ADDR] [--clock-offset DURATION] [--version]
//
// Without --config it runs the embedded default configuration, which needs
// no privilege: a virtual clock serving itself as a stratum-10 reference,
// shared memory and state under per-user directories when /run and /var/lib
// are not writable. It never changes the host clock.
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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println(version.String("meridiand"))
		return 0
	}
	if *printDefault {
		os.Stdout.Write(config.DefaultYAML())
		return 0
	}
	cfg := config.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			fmt.Fprintln(os.Stderr, "meridiand:", err)
			return 2
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
			fmt.Fprintln(os.Stderr, "meridiand: --grpc-listen:", err)
			return 2
		}
	}
	if *offset != "" {
		d, err := time.ParseDuration(strings.TrimPrefix(*offset, "+"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "meridiand: --clock-offset: bad duration %q\n", *offset)
			return 2
		}
		cfg.ClockOffset = config.Duration(d)
	}
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	notifier, err := sdnotify.FromEnv()
	if err != nil {
		log.Warn("not notifying systemd", "err", err)
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "meridiand:", err)
		return 1
	}
	return 0
}
