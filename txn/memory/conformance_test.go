package memory_test

import (
	"testing"

	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/memory"
	"github.com/meridiantime/meridian/txn/storetest"
)

// The backend-neutral conformance suite (the same one the etcd backend
// passes) on the memory store: every handle is the same store, as every
// client of one process shares it.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, n int) []txn.Store {
		s := memory.New(memory.Options{})
		out := make([]txn.Store, n)
		for i := range out {
			out[i] = s
		}
		return out
	})
}
