package daemon

import (
	"fmt"
	"net/http"
	"time"

	"github.com/meridiantime/meridian/truetime"
)

// readyz is the readiness probe: 200 while TrueTime promises an interval
// (synchronized or holdover), else 503 with the reason.
func (d *Daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	iv, err := d.tt.Now()
	if err == nil && (iv.Status == truetime.Synchronized || iv.Status == truetime.Holdover) {
		fmt.Fprintf(w, "ready: %s, ε %v\n", iv.Status, time.Duration(iv.EpsNS()))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "not ready: %s\n", d.statusReason())
}

// healthz is the liveness probe: 200 while the update loop runs (its last
// update is recent), else 503.
func (d *Daemon) healthz(w http.ResponseWriter, _ *http.Request) {
	last := time.Unix(0, d.lastUpdate.Load())
	if age := time.Since(last); age > 10*d.opt.Tick+time.Second {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "update loop stalled: last update %v ago\n", age.Round(time.Millisecond))
		return
	}
	fmt.Fprintln(w, "ok")
}
