//go:build !amd64

package hostclock

// Other architectures read their clocks through the system call: the vDSO
// caller is written for x86-64 only.
var vdso = struct{ path ReadPathInfo }{ReadPathInfo{Method: "syscall", Reason: "no vDSO caller for this architecture"}}

func clockNS(id int32) int64 { return syscallNS(id) }

func clockPairNS(id0, id1 int32) (int64, int64) {
	a := syscallNS(id0)
	return a, syscallNS(id1)
}

func clockTripleNS(id0, id1, id2 int32) (int64, int64, int64) {
	a := syscallNS(id0)
	b := syscallNS(id1)
	return a, b, syscallNS(id2)
}
