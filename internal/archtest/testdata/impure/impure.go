// Package impure is the purity check's negative control: every kind of
// violation it must find, once (see purity_test.go for the expected list).
package impure

// #include <stdlib.h>
import "C"

import (
	"net/netip"
	"os"
	"syscall"
	clk "time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	_ = netip.Addr{}
	_ = os.Getpid
	_ = syscall.Getpid
	_ = unix.Getpid
	_ = unsafe.Sizeof(0)
)

func reads() clk.Duration {
	start := clk.Now()
	clk.Sleep(clk.Millisecond)
	since := clk.Since
	<-clk.After(1)
	t := clk.NewTimer(1)
	t.Stop()
	_ = clk.Unix(0, 0) // allowed: a conversion, not a clock read
	return since(start)
}
