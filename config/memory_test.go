package config

import (
	"strings"
	"testing"
)

// The memory key: the defaults, and bad values refused with the key named.
func TestMemoryKey(t *testing.T) {
	c, err := Parse([]byte("memory: {limit_mib: 64, gc_percent: -1}\n"))
	if err != nil || c.Memory != (Memory{LimitMiB: 64, GCPercent: -1}) {
		t.Fatalf("%+v %v", c.Memory, err)
	}
	if d := Default().Memory; d != (Memory{LimitMiB: 24, GCPercent: 100}) {
		t.Fatalf("default %+v", d)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"memory: {limit_mib: -1}", "memory.limit_mib"},
		{"memory: {limit_mib: 2000000}", "memory.limit_mib"},
		{"memory: {gc_percent: 0}", "memory.gc_percent"},
		{"memory: {gc_percent: -2}", "memory.gc_percent"},
		{"memory: {limit_mib: 0, gc_percent: -1}", "needs a memory.limit_mib"},
		{"memory: {limit: 24}", `unknown key "limit"`},
	} {
		if _, err := Parse([]byte(bad.yaml + "\n")); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one naming %q", bad.yaml, err, bad.want)
		}
	}
}
