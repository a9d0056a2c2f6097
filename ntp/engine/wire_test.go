package engine

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// NSToShort is ceil(ns·2¹⁶/10⁹) saturated to 32 bits, exactly: checked
// against rational arithmetic on edges (where rounding down would shrink a
// bound by one unit) and on random values over the whole range.
func TestNSToShortExact(t *testing.T) {
	want := func(ns int64) uint32 {
		if ns <= 0 {
			return 0
		}
		r := new(big.Rat).SetFrac(new(big.Int).Lsh(big.NewInt(ns), 16), big.NewInt(1e9))
		q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
		if m.Sign() != 0 {
			q.Add(q, big.NewInt(1))
		}
		if !q.IsUint64() || q.Uint64() > math.MaxUint32 {
			return math.MaxUint32
		}
		return uint32(q.Uint64())
	}
	cases := []int64{math.MinInt64, -1, 0, 1, 15258, 15259, 15625, 1e9 - 1, 1e9, 1e9 + 1, 65535e9, 65536e9 - 1, 65536e9, math.MaxInt64}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		cases = append(cases, rng.Int64N(1<<uint(rng.IntN(62)+1)), rng.Int64())
	}
	for _, ns := range cases {
		if got, w := NSToShort(ns), want(ns); got != w {
			t.Fatalf("NSToShort(%d) = %d, want %d", ns, got, w)
		}
	}
	if NSToShort(15259) != 2 || NSToShort(15258) != 1 { // 1.00001 and 0.99998 units: rounded up
		t.Fatal("not rounded up")
	}
}

// ToNTP is exact for every time from 1900 on: the seconds since 1900 in
// the top 32 bits (mod 2³², the era), and floor(frac·2³²/10⁹) below.
func TestToNTPExact(t *testing.T) {
	want := func(ns int64) uint64 {
		sec := new(big.Int).Div(big.NewInt(ns), big.NewInt(1e9)) // Euclidean: floor
		frac := new(big.Int).Mod(big.NewInt(ns), big.NewInt(1e9))
		frac.Lsh(frac, 32).Div(frac, big.NewInt(1e9))
		sec.Add(sec, big.NewInt(unixToNTPSeconds))
		return sec.Uint64()<<32 | frac.Uint64()
	}
	cases := []int64{0, 1, 1e9 - 1, 1e9, 2085978495e9 + 999999999, 2085978496e9, math.MaxInt64,
		-1, -1e9 + 1, -1e9, -1e9 - 1, -unixToNTPSeconds * 1e9}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		cases = append(cases, rng.Int64N(1<<uint(rng.IntN(62)+1)), rng.Int64N(math.MaxInt64), -rng.Int64N(unixToNTPSeconds*1e9))
	}
	for _, ns := range cases {
		if got, w := ToNTP(ns), want(ns); got != w {
			t.Fatalf("ToNTP(%d) = %#x, want %#x", ns, got, w)
		}
	}
}
