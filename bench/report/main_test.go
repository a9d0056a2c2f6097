package report

import (
	"testing"

	"go.uber.org/goleak"
)

// The Chromium test runs child processes; nothing of them may outlive it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
