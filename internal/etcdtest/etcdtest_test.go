package etcdtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, LeakOptions()...) }

// A 3-member embedded cluster replicates a write to every member.
func TestEmbeddedReplicates(t *testing.T) {
	c := Embedded(t, 3)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	for _, ep := range c.Endpoints {
		one := (&Cluster{Endpoints: []string{ep}}).Client(t)
		r, err := one.Get(ctx, "k")
		if err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
			t.Fatalf("%s: got %v", ep, r.Kvs)
		}
	}
}

// Killing one process (by PID) of three leaves a cluster that still
// commits writes; killing a second leaves none (no quorum): the first
// result is not an artefact of a client that never reached the cluster.
func TestProcessKillOne(t *testing.T) {
	c := Processes(t, 3)
	cli := c.Client(t)
	put := func(k string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, k, "v")
		return err
	}
	if err := put("before"); err != nil {
		t.Fatal(err)
	}
	if c.PID(0) <= 0 {
		t.Fatalf("PID(0) = %d", c.PID(0))
	}
	c.Kill(0)
	var err error
	for i := range 20 { // the client moves to another endpoint
		if err = put(fmt.Sprint("after-", i)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("one member of three killed: put failed: %v", err)
	}
	c.Kill(1)
	if err := put("no-quorum"); err == nil {
		t.Fatal("two members of three killed: a put still succeeded")
	}
}
