// Command txn is a runnable example of package txn: bank transfers as
// externally consistent transactions over three in-memory shards, with
// TrueTime taken from a running meridiand over shared memory or gRPC.
//
//	go run ./examples/txn                              # shm, the default segment
//	go run ./examples/txn --time grpc                  # the default unix socket
//	go run ./examples/txn --time grpc --grpc 10.0.0.5:9393
//
// If the daemon cannot be reached or is not synchronized it exits with an
// error: there is no fallback clock.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/daemon"
	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/memory"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "txn example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("txn", flag.ContinueOnError)
	fs.SetOutput(out)
	kind := fs.String("time", "shm", "TrueTime transport: shm or grpc")
	shmPath := fs.String("shm", daemon.DefaultShmPath(), "meridiand's shared-memory segment (--time shm)")
	addr := fs.String("grpc", "unix://"+daemon.DefaultGRPCSocketPath(), "meridiand's gRPC address, unix:///path or host:port (--time grpc)")
	transfers := fs.Int("transfers", 50, "transfers to run")
	accounts := fs.Int("accounts", 10, "accounts (keys) over the shards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *transfers < 1 || *accounts < 2 {
		return fmt.Errorf("--transfers must be ≥ 1 and --accounts ≥ 2, got %d and %d", *transfers, *accounts)
	}

	src, err := client.Open(client.Config{Kind: *kind, ShmPath: *shmPath, Address: *addr})
	if err != nil {
		return fmt.Errorf("TrueTime over %s: %w", *kind, err)
	}
	defer src.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	iv, err := src.Now(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("TrueTime over %s: no interval from meridiand: %w", *kind, err)
	}
	fmt.Fprintf(out, "TrueTime over %s: ε = %v\n", *kind, time.Duration(iv.EpsNS()))

	shards := []txn.Store{memory.New(memory.Options{}), memory.New(memory.Options{}), memory.New(memory.Options{})}
	db, err := txn.Open(txn.Options{Shards: shards, Time: src})
	if err != nil {
		return err
	}
	key := func(i int) string { return fmt.Sprintf("account/%03d", i) }
	const initial = 100
	if err := db.Update(ctx, func(tx *txn.Tx) error {
		for i := range *accounts {
			if err := tx.Put(key(i), []byte(strconv.Itoa(initial))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("opening accounts: %w", err)
	}

	var lat []time.Duration
	for i := range *transfers {
		from, to := key(i%*accounts), key((i*7+1)%*accounts)
		if from == to {
			continue
		}
		start := time.Now()
		ts, err := db.UpdateTS(ctx, func(tx *txn.Tx) error {
			fv, _, err := tx.Get(from)
			if err != nil {
				return err
			}
			tv, _, err := tx.Get(to)
			if err != nil {
				return err
			}
			f, _ := strconv.Atoi(string(fv))
			g, _ := strconv.Atoi(string(tv))
			if f == 0 {
				return nil
			}
			if err := tx.Put(from, []byte(strconv.Itoa(f-1))); err != nil {
				return err
			}
			return tx.Put(to, []byte(strconv.Itoa(g+1)))
		})
		if err != nil {
			return fmt.Errorf("transfer %d: %w", i, err)
		}
		lat = append(lat, time.Since(start))
		// Commit wait: the commit timestamp has surely passed.
		if after, err := src.After(ctx, ts); err != nil || !after {
			return fmt.Errorf("transfer %d acknowledged before TrueTime passed its timestamp %d (%v)", i, ts, err)
		}
	}

	total := 0
	snap, err := db.ViewTS(ctx, func(tx *txn.Tx) error {
		kvs, err := tx.Scan("account/", 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			n, _ := strconv.Atoi(string(kv.Value))
			total += n
		}
		return nil
	})
	if err != nil {
		return err
	}
	if want := initial * *accounts; total != want {
		return fmt.Errorf("audit at %d: total %d, want %d", snap, total, want)
	}
	slices.Sort(lat)
	fmt.Fprintf(out, "%d transfers committed; median commit latency %v (commit wait ≈ 2ε); audit at %d: total %d, as opened\n",
		len(lat), lat[len(lat)/2], snap, total)
	return nil
}
