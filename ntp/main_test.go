package ntp

import (
	"testing"

	"go.uber.org/goleak"
)

// Server workers and the tests' spoofers are goroutines: none may outlive
// the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
