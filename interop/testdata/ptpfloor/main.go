// Command ptpfloor is the kernel's floor for a PTP grandmaster's packet
// load (ptpload.Floor), for BenchmarkPTPGrandmasterLoad.
//
//	ptpfloor ADDR EVENT_PORT GENERAL_PORT CLIENT_EVENT_PORT CLIENT_GENERAL_PORT
package main

import (
	"fmt"
	"os"

	"github.com/meridiantime/meridian/bench/ptpload"
)

func main() {
	err := ptpload.Floor(os.Args[1:])
	fmt.Fprintln(os.Stderr, "usage: ptpfloor", ptpload.FloorUsage+":", err)
	os.Exit(2)
}
