package main

import "github.com/spf13/cobra"

// The ntp-server and grpc subcommands keep their own flag parsing (package
// flag, in main.go and grpc.go): cobra passes their arguments through
// untouched. They print their own tables and take no --json or --out yet.

func newNTPServerCmd(*globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:                "ntp-server [--duration 10s] [--clients 2] [--inflight 64] [--batched] [--meridiand PATH]",
		Short:              "NTP replies/s and per server-CPU-second: meridiand against chronyd -x (prints its own table; no --json/--out yet)",
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { ntpServerMain(args) },
	}
}

func newGRPCCmd(*globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:                "grpc [--duration 5s] [--conns 4] [--concurrency 32] [--pin] [--meridiand PATH]",
		Short:              "gRPC Now against grpc.health.v1 Check on the same meridiand (prints its own table; no --json/--out yet)",
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { grpcMain(args) },
	}
}
