package main

import "github.com/spf13/cobra"

// The ntp-server and grpc subcommands keep their own flag parsing (package
// flag, in ntpserver.go and grpc.go): cobra passes their arguments through
// untouched, so their flags, --json and --out included, go after the
// subcommand's name. grpc takes no --json or --out yet.

func newNTPServerCmd(*globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:                "ntp-server [--duration 10s] [--rounds 3] [--clients 2] [--inflight 64] [--meridiand PATH] [--bare PATH] [--smoke] [--json] [--out DIR]",
		Short:              "NTP replies per server-CPU-second: meridiand against chronyd -x and a bare recvmmsg/sendmmsg responder (the socket API's limit)",
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
