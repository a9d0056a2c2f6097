package accuracy

import (
	"fmt"
	"strings"
	"time"

	"github.com/meridiantime/meridian/impair"
)

// Path is one impairment; A is the clients' side, so AtoB is the request
// direction. Loss is per direction.
type Path struct {
	Name   string
	Impair impair.Config
}

// Path names.
const (
	PathClean       = "clean"
	PathJitter      = "jitter"
	PathLossy       = "lossy"
	PathAsymmetric  = "asymmetric"
	PathRouteChange = "route-change"
)

// PathNames lists every path, in the order Paths returns them.
var PathNames = []string{PathClean, PathJitter, PathLossy, PathAsymmetric, PathRouteChange}

// Paths returns the named paths (all when names is empty). The route
// change happens halfway through the measured span, warm + measure/2 after
// the wire is configured: the request direction's base delay grows from
// 1 ms to 2.5 ms, so the physics moves from 0 to +750 µs.
func Paths(names []string, warm, measure time.Duration) ([]Path, error) {
	const ms, us = time.Millisecond, time.Microsecond
	sym := func(p impair.Path, seed uint64) impair.Config { return impair.Config{AtoB: p, BtoA: p, Seed: seed} }
	all := map[string]impair.Config{
		PathClean:  sym(impair.Path{Delay: ms}, 1),
		PathJitter: sym(impair.Path{Delay: ms, Jitter: impair.Jitter{Dist: impair.Exponential, Mean: ms}, LossPct: 20}, 2),
		PathLossy:  sym(impair.Path{Delay: ms, Jitter: impair.Jitter{Dist: impair.Uniform, Max: 200 * us}, LossPct: 30}, 3),
		PathAsymmetric: {
			AtoB: impair.Path{Delay: 2 * ms, Jitter: impair.Jitter{Dist: impair.Exponential, Mean: 100 * us}, LossPct: 5},
			BtoA: impair.Path{Delay: 500 * us, Jitter: impair.Jitter{Dist: impair.Exponential, Mean: 100 * us}, LossPct: 5},
			Seed: 4},
		PathRouteChange: {
			AtoB: impair.Path{Delay: ms, Jitter: impair.Jitter{Dist: impair.Exponential, Mean: 100 * us},
				Changes: []impair.Change{{At: warm + measure/2, Delay: 2500 * us}}},
			BtoA: impair.Path{Delay: ms, Jitter: impair.Jitter{Dist: impair.Exponential, Mean: 100 * us}},
			Seed: 5},
	}
	if len(names) == 0 {
		names = PathNames
	}
	var out []Path
	seen := map[string]bool{}
	for _, n := range names {
		cfg, ok := all[n]
		if !ok {
			return nil, fmt.Errorf("accuracy: unknown path %q (known: %s)", n, strings.Join(PathNames, ", "))
		}
		if seen[n] {
			return nil, fmt.Errorf("accuracy: path %q named twice", n)
		}
		seen[n] = true
		out = append(out, Path{Name: n, Impair: cfg})
	}
	return out, nil
}

// delayAt is p's base delay at since after the wire was configured.
func delayAt(p impair.Path, since time.Duration) time.Duration {
	d := p.Delay
	for _, ch := range p.Changes {
		if ch.At <= since {
			d = ch.Delay
		}
	}
	return d
}

// PhysicsNS is the offset any two-way client must show on c at since after
// it was configured: half the asymmetry of the base delays (request minus
// response), the jitter being symmetric on every path here.
func PhysicsNS(c impair.Config, since time.Duration) int64 {
	return int64(delayAt(c.AtoB, since)-delayAt(c.BtoA, since)) / 2
}

// Describe is a one-line description of c.
func Describe(c impair.Config) string {
	d := func(p impair.Path) string {
		s := p.Delay.String()
		switch p.Jitter.Dist {
		case impair.Exponential:
			s += fmt.Sprintf("+exp(%v)", p.Jitter.Mean)
		case impair.Uniform:
			s += fmt.Sprintf("+U[0,%v)", p.Jitter.Max)
		}
		if p.LossPct > 0 {
			s += fmt.Sprintf(" %g%%loss", p.LossPct)
		}
		for _, ch := range p.Changes {
			s += fmt.Sprintf(" →%v at %v", ch.Delay, ch.At)
		}
		return s
	}
	return "req " + d(c.AtoB) + " / resp " + d(c.BtoA)
}
