package ptpload

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the test binary as the floor responder when asked
// (PTPLOAD_TEST_FLOOR=1, Floor's arguments after the program's name), so
// the tests need no build step; otherwise the tests, with goleak.
func TestMain(m *testing.M) {
	if os.Getenv("PTPLOAD_TEST_FLOOR") == "1" {
		fmt.Fprintln(os.Stderr, Floor(os.Args[1:]))
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}
