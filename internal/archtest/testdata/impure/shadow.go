package impure

import "time"

type fake struct{}

func (fake) Now() int { return 0 }

// A local name that shadows the package is not the package.
func shadowed() int {
	time := fake{}
	return time.Now()
}

func allowed() time.Duration { return time.Duration(3) * time.Second }

func notAllowed() time.Duration { return time.Until(time.Unix(0, 0)) }
