package impair

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// frameBytes holds one Ethernet frame at the default MTU of 1500 (1514
// bytes, 1518 with a VLAN tag) with room to spare.
const frameBytes = 2048

// latenessRing is how many recent delivery latenesses each direction keeps.
const latenessRing = 4096

// DirStats is one direction's counters and how late the wire delivered.
type DirStats struct {
	LinkStats
	Queued int // frames in flight now
	// Delivery lateness (write started − due) and the write's own time
	// (into the kernel's receive path), over the last frames delivered.
	LatenessP50NS, LatenessP99NS int64
	WriteP50NS, WriteP99NS       int64
}

// Stats is both directions'.
type Stats struct{ AtoB, BtoA DirStats }

// Wire copies frames between two descriptors with the configured
// impairment. Create it with New; Close stops it.
type Wire struct {
	dirs     [2]*direction
	files    [2]*os.File
	baseMono int64     // CLOCK_MONOTONIC at baseTime
	baseTime time.Time // Go's monotonic reading is CLOCK_MONOTONIC as well
	wg       sync.WaitGroup
	stopCtx  func() bool
	once     sync.Once
	errMu    sync.Mutex
	err      error
	// overheadNS is the last calibrated one-way overhead (Pair.Calibrate).
	overheadNS atomic.Int64
}

type direction struct {
	name    string
	in, out *os.File
	mu      sync.Mutex
	l       *link
	tfd     int      // the timer, armed by number (timer.Fd() would make it blocking)
	timer   *os.File // the same timer, read through Go's netpoller
	armedNS int64    // the timer's instant; MaxInt64 when disarmed, 0 when arm must set it
	closed  bool
	late    [latenessRing]int64
	write   [latenessRing]int64
	lateN   int
	pool    sync.Pool
}

// New starts a wire between a and b (two TAP devices, or any descriptors
// that carry one frame per read and write; they must be non-blocking so
// Close can interrupt reads). Frames read from a go to b with cfg.AtoB,
// and back with cfg.BtoA. The wire owns a and b and closes them; it stops
// when ctx ends or on Close.
func New(ctx context.Context, a, b *os.File, cfg Config) (*Wire, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return nil, fmt.Errorf("impair: clock_gettime: %w", err)
	}
	w := &Wire{files: [2]*os.File{a, b}, baseTime: time.Now(), baseMono: ts.Nano() - testMonoLagNS}
	now := w.monoNS()
	for i, io := range [][2]*os.File{{a, b}, {b, a}} {
		tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
		if err != nil {
			for _, d := range w.dirs[:i] {
				_ = d.timer.Close()
			}
			return nil, fmt.Errorf("impair: timerfd_create: %w", err)
		}
		p := cfg.AtoB
		name := "a_to_b"
		if i == 1 {
			p, name = cfg.BtoA, "b_to_a"
		}
		d := &direction{name: name, in: io[0], out: io[1], tfd: tfd, timer: os.NewFile(uintptr(tfd), "timerfd:"+name), armedNS: math.MaxInt64,
			l: newLink(p, cfg.Seed, uint64(i), cfg, now)}
		d.pool.New = func() any { return &frame{buf: make([]byte, frameBytes)} }
		w.dirs[i] = d
	}
	for _, d := range w.dirs {
		w.wg.Add(2)
		go w.read(d)
		go w.deliver(d)
	}
	w.stopCtx = context.AfterFunc(ctx, func() { w.shutdown() })
	return w, nil
}

// testMonoLagNS is a test knob: monoNS runs this far behind the timerfd's
// CLOCK_MONOTONIC (a little of it is always there: baseMono is read before
// baseTime).
var testMonoLagNS int64

// monoNS is CLOCK_MONOTONIC without a syscall.
func (w *Wire) monoNS() int64 { return w.baseMono + int64(time.Since(w.baseTime)) }

// Configure replaces the impairment in both directions; route changes count
// from now, the RNGs restart from cfg.Seed and the counters from zero.
// Frames in flight keep their due instants.
func (w *Wire) Configure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	now := w.monoNS()
	for i, d := range w.dirs {
		p := cfg.AtoB
		if i == 1 {
			p = cfg.BtoA
		}
		d.mu.Lock()
		d.l.configure(p, cfg.Seed, uint64(i), cfg, now)
		d.l.stats = LinkStats{}
		d.lateN = 0
		d.mu.Unlock()
	}
	return nil
}

// OverheadNS is the one-way delay the wire itself adds with zero
// impairment, as last calibrated (Pair.Calibrate); 0 before that. Set
// Config.SubtractNS to it to have configured delays be what the path shows.
func (w *Wire) OverheadNS() int64 { return w.overheadNS.Load() }

// Stats returns both directions' counters since New or the last Configure.
func (w *Wire) Stats() Stats {
	return Stats{AtoB: w.dirs[0].stats(), BtoA: w.dirs[1].stats()}
}

// Err is the first read or timer error that stopped a direction, if any.
func (w *Wire) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *Wire) fail(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

func (d *direction) stats() DirStats {
	d.mu.Lock()
	s := DirStats{LinkStats: d.l.stats, Queued: len(d.l.q)}
	n := min(d.lateN, latenessRing)
	late := slices.Clone(d.late[:n])
	write := slices.Clone(d.write[:n])
	d.mu.Unlock()
	if n > 0 {
		slices.Sort(late)
		s.LatenessP50NS = late[n/2]
		s.LatenessP99NS = late[min(n-1, n*99/100)]
		slices.Sort(write)
		s.WriteP50NS = write[n/2]
		s.WriteP99NS = write[min(n-1, n*99/100)]
	}
	return s
}

// spinNS is how long before a frame's due instant the delivery thread
// wakes, to spin to the instant itself. A timerfd wake-up through epoll
// comes tens to a few hundred µs late on a busy machine, and unevenly: the
// request and the reply of an exchange go out at different moments of the
// machine's load, so the lateness was an asymmetry that no calibration
// (made without delay, hence without timers) could see, and that every
// client took for offset. Spinning costs at most spinNS of one CPU per
// delivery, a few per second at the rates of the accuracy runs.
const spinNS = 200_000

// arm sets the direction's timer to wake the delivery spinNS before dueNS
// (absolute); d.mu held.
func (d *direction) arm(dueNS int64) {
	if dueNS == d.armedNS {
		return
	}
	spec := unix.ItimerSpec{}
	if dueNS != math.MaxInt64 {
		spec.Value = unix.NsecToTimespec(max(dueNS-spinNS, 1)) // zero would disarm
	}
	// Errors only for a bad fd or value, neither possible here while open.
	_ = unix.TimerfdSettime(d.tfd, unix.TFD_TIMER_ABSTIME, &spec, nil)
	d.armedNS = dueNS
}

// read takes frames off d.in, stamps them and queues them.
func (w *Wire) read(d *direction) {
	defer w.wg.Done()
	for {
		f := d.pool.Get().(*frame)
		n, err := d.in.Read(f.buf)
		now := w.monoNS()
		if err != nil {
			d.pool.Put(f)
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			d.mu.Lock()
			closed := d.closed
			d.mu.Unlock()
			if !closed {
				w.fail(fmt.Errorf("impair: %s: read: %w", d.name, err))
			}
			return
		}
		f.n = n
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return
		}
		if d.l.admit(now, f) {
			if f.dueNS < d.armedNS {
				d.arm(f.dueNS)
			}
		} else {
			d.pool.Put(f)
		}
		d.mu.Unlock()
	}
}

// deliver writes frames out when they are due. It waits on the timerfd
// through Go's netpoller, which the kernel's hrtimer makes ready spinNS
// before the due instant, and spins the rest of the way — where Go's own
// timers round their sleeps to the millisecond, and a thread blocked in
// read(2) would hold a P until sysmon took it back.
func (w *Wire) deliver(d *direction) {
	defer w.wg.Done()
	var tick [8]byte
	var due []*frame
	var late, write []int64
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return
		}
		// Whatever the timer was armed for has fired (or is re-armed
		// below): arm must set it again even for the same instant, or
		// disarm it. Once monoNS read a hair behind the timer's clock at
		// its expiry, found nothing due, and arm skipped the instant it was
		// "already armed" for: the direction stalled for good. 0 is no
		// instant arm is asked for (as in shutdown), so it never skips.
		d.armedNS = 0
		if nx, ok := d.l.next(); ok {
			if wait := nx - w.monoNS(); wait > 0 && wait <= spinNS {
				// Woken early on purpose (arm): spin to the due instant.
				d.mu.Unlock()
				for w.monoNS() < nx {
				}
				d.mu.Lock()
				if d.closed {
					d.mu.Unlock()
					return
				}
			}
		}
		due = d.l.popDue(w.monoNS(), due[:0])
		if nx, ok := d.l.next(); ok {
			d.arm(nx)
		} else {
			d.arm(math.MaxInt64)
		}
		d.mu.Unlock()
		late, write = late[:0], write[:0]
		var fwd, werr uint64
		for _, f := range due {
			start := w.monoNS()
			if _, err := d.out.Write(f.buf[:f.n]); err != nil {
				werr++
			} else {
				fwd++
				late = append(late, start-f.dueNS)
				write = append(write, w.monoNS()-start)
			}
			d.pool.Put(f)
		}
		if len(due) > 0 {
			d.mu.Lock()
			d.l.stats.Forwarded += fwd
			d.l.stats.WriteErr += werr
			for i, v := range late {
				d.late[d.lateN%latenessRing] = v
				d.write[d.lateN%latenessRing] = write[i]
				d.lateN++
			}
			d.mu.Unlock()
		}
		if _, err := d.timer.Read(tick[:]); err != nil {
			d.mu.Lock()
			closed := d.closed
			d.mu.Unlock()
			if !closed && !errors.Is(err, os.ErrClosed) {
				w.fail(fmt.Errorf("impair: %s: timerfd read: %w", d.name, err))
			}
			return
		}
	}
}

// shutdown stops both directions and waits for their goroutines.
func (w *Wire) shutdown() {
	w.once.Do(func() {
		for _, d := range w.dirs {
			d.mu.Lock()
			d.closed = true
			d.armedNS = 0 // force arm
			d.arm(1)      // in the past: wakes the delivery thread now
			d.mu.Unlock()
		}
		for _, f := range w.files {
			_ = f.Close()
		}
		for _, d := range w.dirs {
			_ = d.timer.Close() // after closed is set: nobody arms it again
		}
		w.wg.Wait()
	})
}

// Close stops the wire, closes both descriptors and waits until every
// goroutine it started has returned.
func (w *Wire) Close() error {
	if w.stopCtx != nil {
		w.stopCtx()
	}
	w.shutdown()
	return nil
}
