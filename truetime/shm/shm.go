package shm

// Shared-memory segment layout, version 3. Little-endian, one 4096-byte
// file under /run/meridian (configurable). Every field is a 64-bit word at an
// 8-byte aligned offset and is read and written with atomic operations.
//
//	offset size  field
//	0      8     magic "MRDNTTSH"
//	8      4     layout version (3)
//	12     4     header size (64)
//	16     4     payload words (24)
//	20     4     pid of the writer that last initialised the segment (informational)
//	24     40    reserved, zero
//	64     8     seq: odd while the writer is inside an update, 0 before the first
//	72     8     w0  clock.Linear BaseNS (int64)
//	80     8     w1  clock.Linear BaseRawNS (int64, CLOCK_MONOTONIC_RAW ns)
//	88     8     w2  clock.Linear FreqPPB (float64 bits)
//	96     8     w3  truetime.Status | truetime.Leap<<8 | Stratum<<16 | RefID<<32
//	104    8     w4  truetime.Estimate.LocalNS
//	112    8     w5  truetime.Estimate.OffsetNS (float64 bits)
//	120    8     w6  truetime.Estimate.SkewPPB (float64 bits)
//	128    8     w7  truetime.Estimate.Eps0NS
//	136    8     w8  truetime.Estimate.DriftBoundPPB (float64 bits)
//	144    8     w9  truetime.Estimate.FreqUncPPB (float64 bits)
//	152    8     w10 truetime.Estimate.MaxErrorNS
//	160    8     w11 truetime.Estimate.HoldoverAfterNS
//	168    8     w12 truetime.Estimate.FreqPPB (float64 bits)
//	176    8     w13 truetime.Estimate.RootDelayNS
//	184    8     w14 truetime.Estimate.RootDispersionNS
//	192    8     w15 truetime.Estimate.LastSampleNS
//	200    8     w16 checksum: word-wise FNV-1a over seq, w0..w15 and w17..w23
//	-- appended in version 2 (version 1 ends at 208) --
//	208    8     w17 truetime.Stamp.RawNS: CLOCK_MONOTONIC_RAW at the publish (the heartbeat)
//	216    8     w18 truetime.Stamp.BootNS: CLOCK_BOOTTIME at the publish
//	224    8     w19 truetime.Stamp.VoidAfterNS: CLOCK_BOOTTIME after which the snapshot is void (0: writer stopped)
//	232    8     w20 truetime.Stamp.GapSlackNS
//	240    8     w21 truetime.Stamp.GapTolPPB (float64 bits)
//	248    8     w22 truetime.Stamp.Marker: VMClock disruption marker at the publish (0: no device)
//	-- appended in version 3 --
//	256    8     w23 truetime.Stamp.WallToMonoNS: the kernel's wall_to_monotonic, read before w17 (0: none)
//
// Protocol (seqlock): the writer increments seq to an odd value, stores the
// words and the checksum, and increments seq to even. A reader loads seq,
// retries while it is odd, copies the words, and accepts the copy only if
// seq is unchanged; the checksum catches anything else (a torn copy or a
// corrupt file). Versions only append words, so every field keeps its
// offset; a reader accepts exactly the version it was built for and tells
// the operator which side to upgrade otherwise.
//
// Ownership: the writer holds an exclusive flock on the segment file for its
// life. A second writer fails to take it and refuses before changing a byte.
// Liveness: every publish refreshes the stamp; a reader past VoidAfterNS
// (by CLOCK_BOOTTIME) reads unsynchronized, and Close sets VoidAfterNS to 0.
// Disruption: see truetime.Judge and truetime.Guard (disrupt.go).

import (
	"github.com/meridiantime/meridian/truetime"

	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/internal/fsown"
)

const (
	shmMagic      = "MRDNTTSH"
	shmVersion    = 3
	shmHeaderSize = 64
	shmWords      = 24
	shmCkWord     = 16 // index of the checksum word
	shmFileSize   = 4096
	shmPidOff     = 20
	shmSeqOff     = 64
	shmWordsOff   = 72
	shmMinSize    = shmWordsOff + 8*shmWords
	shmSpins      = 64      // tight retries before yielding
	shmMaxRetries = 200_000 // then give up with ErrBusy (≈ 0.1–1 s of yields)
)

// Errors from opening or reading a segment.
var (
	ErrMagic     = errors.New("truetime: not a Meridian TrueTime segment")
	ErrVersion   = errors.New("truetime: unsupported shm layout version")
	ErrTruncated = errors.New("truetime: shm segment too small")
	ErrCorrupt   = errors.New("truetime: shm checksum mismatch")
	ErrBusy      = errors.New("truetime: shm writer did not finish an update")
	// ErrUntrusted: the segment or its directory could have been
	// written by a user other than root, this user or the daemon's user.
	ErrUntrusted = errors.New("truetime: shm segment is not trustworthy")
	// ErrInUse: another writer holds the segment's lock.
	ErrInUse = errors.New("truetime: shm segment is in use by another writer")
)

func wordPtr(b []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&b[off])) }

func checksum(seq uint64, w *[shmWords]uint64) uint64 {
	// FNV-1a over whole words: cheap enough for every read.
	h := (uint64(14695981039346656037) ^ seq) * 1099511628211
	for i := 0; i < shmWords; i++ {
		if i != shmCkWord {
			h = (h ^ w[i]) * 1099511628211
		}
	}
	return h
}

func encode(m clock.Linear, e truetime.Estimate, s truetime.Stamp) (w [shmWords]uint64) {
	w[0] = uint64(m.BaseNS)
	w[1] = uint64(m.BaseRawNS)
	w[2] = math.Float64bits(m.FreqPPB)
	w[3] = uint64(e.Status) | uint64(e.Leap)<<8 | uint64(e.Stratum)<<16 | uint64(e.RefID)<<32
	w[4] = uint64(e.LocalNS)
	w[5] = math.Float64bits(e.OffsetNS)
	w[6] = math.Float64bits(e.SkewPPB)
	w[7] = uint64(e.Eps0NS)
	w[8] = math.Float64bits(e.DriftBoundPPB)
	w[9] = math.Float64bits(e.FreqUncPPB)
	w[10] = uint64(e.MaxErrorNS)
	w[11] = uint64(e.HoldoverAfterNS)
	w[12] = math.Float64bits(e.FreqPPB)
	w[13] = uint64(e.RootDelayNS)
	w[14] = uint64(e.RootDispersionNS)
	w[15] = uint64(e.LastSampleNS)
	w[17] = uint64(s.RawNS)
	w[18] = uint64(s.BootNS)
	w[19] = uint64(s.VoidAfterNS)
	w[20] = uint64(s.GapSlackNS)
	w[21] = math.Float64bits(s.GapTolPPB)
	w[22] = s.Marker
	w[23] = uint64(s.WallToMonoNS)
	return w
}

func decode(w *[shmWords]uint64) (clock.Linear, truetime.Estimate) {
	m := clock.Linear{BaseNS: int64(w[0]), BaseRawNS: int64(w[1]), FreqPPB: math.Float64frombits(w[2])}
	e := truetime.Estimate{
		Status:           truetime.Status(w[3] & 0xff),
		Leap:             truetime.Leap(w[3] >> 8 & 0xff),
		Stratum:          uint8(w[3] >> 16 & 0xff),
		RefID:            uint32(w[3] >> 32),
		LocalNS:          int64(w[4]),
		OffsetNS:         math.Float64frombits(w[5]),
		SkewPPB:          math.Float64frombits(w[6]),
		Eps0NS:           int64(w[7]),
		DriftBoundPPB:    math.Float64frombits(w[8]),
		FreqUncPPB:       math.Float64frombits(w[9]),
		MaxErrorNS:       int64(w[10]),
		HoldoverAfterNS:  int64(w[11]),
		FreqPPB:          math.Float64frombits(w[12]),
		RootDelayNS:      int64(w[13]),
		RootDispersionNS: int64(w[14]),
		LastSampleNS:     int64(w[15]),
	}
	return m, e
}

func decodeStamp(w *[shmWords]uint64) truetime.Stamp {
	return truetime.Stamp{
		RawNS: int64(w[17]), BootNS: int64(w[18]), VoidAfterNS: int64(w[19]),
		GapSlackNS: int64(w[20]), GapTolPPB: math.Float64frombits(w[21]), Marker: w[22],
		WallToMonoNS: int64(w[23]),
	}
}

// Options tune a writer or a reader. Zero values take defaults.
type Options struct {
	// VoidAfter is how long after a publish the snapshot stays valid
	// without a newer one (writer; 0 → truetime.DefaultVoidAfter). It must exceed
	// the publish period by a few periods.
	VoidAfter time.Duration
	// GapSlack and GapTolPPB bound how far CLOCK_BOOTTIME may run ahead of
	// CLOCK_MONOTONIC_RAW before it counts as a disruption (writer; 0 →
	// truetime.DefaultGapSlack, truetime.DefaultGapTolPPB).
	GapSlack  time.Duration
	GapTolPPB float64
	// Clocks reads (CLOCK_MONOTONIC_RAW, CLOCK_BOOTTIME); nil → the vDSO
	// (hostclock.RawBootRawNS for a writer, hostclock.BootRawNS for a reader).
	// Tests and the simulator pass fakes.
	Clocks func() (raw, boot int64)
	// WallToMono reads CLOCK_MONOTONIC_RAW and then the kernel's
	// wall_to_monotonic offset (hostclock.RawWallToMonoNS; a writer keeps
	// only the offset). With Clocks set and WallToMono nil, a writer
	// records no offset and a reader never takes the fast path
	// (truetime.JudgeFast); tests pass both to drive it.
	WallToMono func() (raw, w2m int64)
	// VMClock is the VMClock device; "" → /dev/vmclock0 when it exists,
	// "-" → none.
	VMClock string
	// NoGuard turns the publish-side disruption truetime.Guard off: negative
	// controls only (meridiand never sets it).
	NoGuard bool
}

const defaultVMClock = "/dev/vmclock0"

// Writer publishes snapshots. One goroutine may call Publish at a time.
type Writer struct {
	disruptions atomic.Uint64
	f           *os.File
	data        []byte
	clocks      func() (raw, boot int64)
	w2m         func() (raw, w2m int64) // fake; nil: hostclock.WallToMonoNS unless fake
	vm          *vmClock
	void        int64
	slack       int64
	tol         float64
	guard       truetime.Guard
	lastM       clock.Linear
	lastE       truetime.Estimate
	closed      bool

	noGuard bool // test hook: the negative control without the publish-side truetime.Guard

	// The last stamp, under a seqlock of its own in process memory, for
	// Check (concurrent with Publish, and safe after Close).
	stampSeq atomic.Uint64
	stampW   [6]atomic.Uint64
	fake     bool
}

// Create is CreateWith(path, Options{}).
func Create(path string) (*Writer, error) { return CreateWith(path, Options{}) }

// CreateWith creates (or reuses, keeping its inode so mapped readers
// follow along) the segment at path and takes its lock; only then does it
// write the header and an unsynchronized snapshot. The parent directory
// must exist. The file is opened without following a symlink and must be a
// regular file owned by this user that nobody else can write. A segment
// another writer holds is refused with ErrInUse before any byte changes.
func CreateWith(path string, o Options) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("truetime: create shm %s: it is a symlink, which the writer never follows: remove it", path)
		}
		return nil, fmt.Errorf("truetime: create shm: %w", err)
	}
	if err := fsown.Lock(f, "truetime: shm "+path); err != nil {
		pid := ownerPid(f)
		f.Close()
		if errors.Is(err, fsown.ErrLocked) {
			return nil, fmt.Errorf("%w: %s is held by pid %d: stop that meridiand or set a different shm.path", ErrInUse, path, pid)
		}
		return nil, err
	}
	if err := fsown.CheckOwnFile(f, path); err != nil {
		f.Close()
		return nil, fmt.Errorf("truetime: shm %w", err)
	}
	if err := f.Truncate(shmFileSize); err != nil {
		f.Close()
		return nil, fmt.Errorf("truetime: size shm %s: %w", path, err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, shmFileSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("truetime: mmap %s: %w", path, err)
	}
	w := &Writer{f: f, data: data, clocks: o.Clocks, w2m: o.WallToMono, void: int64(o.VoidAfter), noGuard: o.NoGuard,
		slack: int64(o.GapSlack), tol: o.GapTolPPB, fake: o.Clocks != nil}
	if w.clocks == nil {
		w.clocks = hostclock.RawBootNS
	}
	if w.void <= 0 {
		w.void = int64(truetime.DefaultVoidAfter)
	}
	if w.slack <= 0 {
		w.slack = int64(truetime.DefaultGapSlack)
	}
	if w.tol <= 0 {
		w.tol = truetime.DefaultGapTolPPB
	}
	w.guard = truetime.Guard{GapSlackNS: w.slack, GapTolPPB: w.tol}
	w.vm = openVMClock(o.VMClock)
	// Mark "writing" while the header changes so readers of an old segment
	// at this inode retry rather than mix versions.
	seq := wordPtr(data, shmSeqOff)
	if atomic.LoadUint64(seq)&1 == 0 {
		atomic.AddUint64(seq, 1)
	}
	copy(data[0:8], shmMagic)
	*(*uint32)(unsafe.Pointer(&data[8])) = shmVersion
	*(*uint32)(unsafe.Pointer(&data[12])) = shmHeaderSize
	*(*uint32)(unsafe.Pointer(&data[16])) = shmWords
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&data[shmPidOff])), uint32(os.Getpid()))
	w.Publish(clock.Linear{}, truetime.Estimate{})
	return w, nil
}

// ownerPid reads the pid a writer recorded in the header (0 if none).
func ownerPid(f *os.File) uint32 {
	var b [4]byte
	if n, _ := f.ReadAt(b[:], shmPidOff); n != 4 {
		return 0
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (w *Writer) store(m clock.Linear, e truetime.Estimate, s truetime.Stamp) {
	seq := wordPtr(w.data, shmSeqOff)
	sq := atomic.LoadUint64(seq)
	if sq&1 == 0 {
		sq = atomic.AddUint64(seq, 1)
	}
	words := encode(m, e, s)
	words[shmCkWord] = checksum(sq+1, &words)
	for i, v := range words {
		atomic.StoreUint64(wordPtr(w.data, shmWordsOff+8*i), v)
	}
	atomic.StoreUint64(seq, sq+1)
}

// Publish writes one snapshot under the seqlock, stamped with the clocks
// (the heartbeat: readers treat it as void VoidAfter later), and returns
// the estimate as published: e, or e with truetime.Status truetime.Disrupted while the
// writer's truetime.Guard holds a disruption it noticed between publishes (suspend,
// VMClock marker change). Callers that also serve the estimate in process
// should use the returned one. It does not allocate.
func (w *Writer) Publish(m clock.Linear, e truetime.Estimate) truetime.Estimate {
	// The kernel's wall_to_monotonic first: sleep injected after this read
	// makes a reader's offset differ, so it takes the careful path.
	var w2m int64
	switch {
	case w.w2m != nil:
		_, w2m = w.w2m()
	case !w.fake:
		w2m, _ = hostclock.WallToMonoNS()
	}
	var raw, boot, raw1 int64
	if w.fake {
		raw, boot = w.clocks()
		raw1 = raw
	} else {
		raw, boot, raw1 = hostclock.RawBootRawNS()
	}
	marker := w.vm.marker()
	if !w.noGuard {
		var gap int64
		if e, gap = w.guard.Check(raw, boot, raw1, marker, m.At(raw), e); gap > 0 {
			w.disruptions.Add(1)
		}
	}
	w.lastM, w.lastE = m, e
	s := truetime.Stamp{RawNS: raw, BootNS: boot, VoidAfterNS: boot + w.void, GapSlackNS: w.slack, GapTolPPB: w.tol, Marker: marker, WallToMonoNS: w2m}
	w.store(m, e, s)
	w.keepStamp(s)
	return e
}

func (w *Writer) keepStamp(s truetime.Stamp) {
	w.stampSeq.Add(1)
	for i, v := range [6]uint64{uint64(s.RawNS), uint64(s.BootNS), uint64(s.VoidAfterNS), uint64(s.GapSlackNS), math.Float64bits(s.GapTolPPB), s.Marker} {
		w.stampW[i].Store(v)
	}
	w.stampSeq.Add(1)
}

// Check judges the clocks now against the last publish, as a reader of the
// segment would (truetime.Judge): nil while live, truetime.ErrUnsynchronized when void (no
// publish within VoidAfter, or Close), truetime.ErrDisrupted on a gap. In-process
// readers install it with truetime.Clock.SetCheck so that they fail exactly when
// shm readers do — notably right after a resume, before the next publish.
// Safe to call concurrently with Publish and after Close.
func (w *Writer) Check() error {
	var v [6]uint64
	for {
		s1 := w.stampSeq.Load()
		if s1&1 != 0 {
			runtime.Gosched()
			continue
		}
		for i := range v {
			v[i] = w.stampW[i].Load()
		}
		if w.stampSeq.Load() == s1 {
			break
		}
	}
	s := truetime.Stamp{RawNS: int64(v[0]), BootNS: int64(v[1]), VoidAfterNS: int64(v[2]), GapSlackNS: int64(v[3]),
		GapTolPPB: math.Float64frombits(v[4]), Marker: v[5]}
	// The clocks after the stamp: a publish racing this check cannot make
	// the stamp look newer than the reading.
	var raw, boot int64
	if w.fake {
		raw, boot = w.clocks()
	} else {
		raw, boot = hostclock.BootRawNS()
	}
	switch truetime.Judge(s, raw, boot, w.vm.marker()) {
	case truetime.Void:
		return truetime.ErrUnsynchronized
	case truetime.Gap:
		return truetime.ErrDisrupted
	}
	return nil
}

// Heartbeat republishes the last snapshot with fresh stamps, for a caller
// that has no new estimate this period.
func (w *Writer) Heartbeat() truetime.Estimate { return w.Publish(w.lastM, w.lastE) }

// Disruptions counts the disruptions (suspends, VMClock events) noticed by
// Publish so far: a change tells the caller to forget what it measured
// before (discipline.Loop.Disrupted).
func (w *Writer) Disruptions() uint64 { return w.disruptions.Load() }

// Disruption reports whether the writer holds a disruption (publishing
// truetime.Disrupted) and the last gap it detected, in ns.
func (w *Writer) Disruption() (held bool, gapNS int64) { return w.guard.Held() }

// Close marks the segment stopped — readers get unsynchronized at once —
// unmaps it and releases its lock; the file stays for readers to find.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	raw, boot := w.clocks()
	s := truetime.Stamp{RawNS: raw, BootNS: boot, GapSlackNS: w.slack, GapTolPPB: w.tol}
	w.store(w.lastM, truetime.Estimate{}, s)
	w.keepStamp(s)
	err := unix.Munmap(w.data) // the VMClock page stays mapped: Check may still run
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Reader reads snapshots lock-free from a read-only mapping.
type Reader struct {
	data       []byte
	seq        *uint64
	words      *[shmWords]uint64
	path       string
	clocks     func() (raw, boot int64)
	w2m        func() (raw, w2m int64) // fakes (Options.WallToMono, or Clocks with no offset); nil: the vDSO
	vm         *vmClock
	fakeClocks bool
	noJudge    bool // test hook: the negative control without liveness and gap checks
	noCache    bool // test hook: decode every read (the path before the cache)
	trustCache bool // test hook, the negative control: never revalidate the cache
	// cache holds the last snapshot this reader decoded, with the sequence
	// and checksum words it was published under (see Now).
	cache atomic.Pointer[decodedSnapshot]
}

// decodedSnapshot is one validated snapshot, decoded; immutable once
// stored in Reader.cache.
type decodedSnapshot struct {
	seq, ck uint64
	m       clock.Linear
	e       truetime.Estimate
	s       truetime.Stamp
	fast    truetime.FastJudge // s, prepared for the fast path
}

// Open is OpenWith(path, Options{}).
func Open(path string) (*Reader, error) { return OpenWith(path, Options{}) }

// OpenWith maps the segment at path read-only and validates its header.
// The segment must be a regular file reached without a symlink in its last
// component, in a directory only root, this user or a user root handed the
// directory to could have written (fsown.CheckTrustedDir), owned by one of
// them and writable by nobody else; otherwise ErrUntrusted.
func OpenWith(path string, o Options) (*Reader, error) {
	dirOwner, err := fsown.CheckTrustedDir(filepath.Dir(path))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("truetime: open shm: %w", err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symlink: readers do not follow it (another user may have planted it): use the real path", ErrUntrusted, path)
		}
		return nil, fmt.Errorf("truetime: open shm: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("truetime: stat shm %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("truetime: shm %s is not a regular file (%v)", path, st.Mode().Type())
	}
	if err := fsown.CheckTrustedFile(f, path, dirOwner); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if st.Size() < shmMinSize {
		return nil, fmt.Errorf("%w: %s has %d bytes, need at least %d", ErrTruncated, path, st.Size(), shmMinSize)
	}
	size := int(min(st.Size(), shmFileSize))
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("truetime: mmap %s: %w", path, err)
	}
	if err := checkHeader(data, path); err != nil {
		_ = unix.Munmap(data)
		return nil, err
	}
	r := &Reader{
		data:   data,
		seq:    wordPtr(data, shmSeqOff),
		words:  (*[shmWords]uint64)(unsafe.Pointer(&data[shmWordsOff])),
		path:   path,
		clocks: o.Clocks,
		w2m:    o.WallToMono,
		vm:     openVMClock(o.VMClock),
	}
	if r.clocks == nil {
		r.clocks = hostclock.BootRawNS
	}
	r.fakeClocks = o.Clocks != nil
	if r.fakeClocks && r.w2m == nil {
		// Fake clocks and no offset: never the fast path (an offset of 0
		// decides nothing), the raw reading from the fakes.
		r.w2m = func() (int64, int64) { raw, _ := o.Clocks(); return raw, 0 }
	}
	return r, nil
}

func checkHeader(data []byte, path string) error {
	if string(data[0:8]) != shmMagic {
		return fmt.Errorf("%w: %s starts with %q", ErrMagic, path, data[0:8])
	}
	v := *(*uint32)(unsafe.Pointer(&data[8]))
	if v > shmVersion {
		return fmt.Errorf("%w: %s has layout version %d, newer than this reader's %d: upgrade the reader", ErrVersion, path, v, shmVersion)
	}
	if v < shmVersion {
		return fmt.Errorf("%w: %s has layout version %d, this reader needs %d: upgrade and restart meridiand", ErrVersion, path, v, shmVersion)
	}
	if hs := *(*uint32)(unsafe.Pointer(&data[12])); hs != shmHeaderSize {
		return fmt.Errorf("%w: %s header size %d, want %d", ErrMagic, path, hs, shmHeaderSize)
	}
	if n := *(*uint32)(unsafe.Pointer(&data[16])); n < shmWords {
		return fmt.Errorf("%w: %s holds %d words, want %d", ErrTruncated, path, n, shmWords)
	}
	return nil
}

// load copies one consistent set of words under the seqlock. seq is 0 before
// the first publish. The first attempt is the fast path; contention goes to
// loadSlow.
func (r *Reader) load(w *[shmWords]uint64) (seq uint64, ok bool) {
	s1 := atomic.LoadUint64(r.seq)
	if s1&1 == 0 {
		for i := range w {
			w[i] = atomic.LoadUint64(&r.words[i])
		}
		if atomic.LoadUint64(r.seq) == s1 {
			return s1, true
		}
	}
	return r.loadSlow(w)
}

func (r *Reader) loadSlow(w *[shmWords]uint64) (seq uint64, ok bool) {
	for try := 0; try < shmMaxRetries; try++ {
		if try >= shmSpins {
			// The writer is inside an update and not running (preempted,
			// or another process descheduled): let it run.
			runtime.Gosched()
		}
		s1 := atomic.LoadUint64(r.seq)
		if s1&1 != 0 {
			continue
		}
		for i := range w {
			w[i] = atomic.LoadUint64(&r.words[i])
		}
		if atomic.LoadUint64(r.seq) == s1 {
			return s1, true
		}
	}
	return 0, false
}

// Snapshot copies the newest complete snapshot and verifies its checksum. It
// is lock-free and does not allocate. Before the first Publish it returns an
// unsynchronized estimate. It does not judge liveness: see Inspect and Now.
func (r *Reader) Snapshot() (clock.Linear, truetime.Estimate, error) {
	m, e, _, err := r.snapshot()
	return m, e, err
}

func (r *Reader) snapshot() (clock.Linear, truetime.Estimate, truetime.Stamp, error) {
	var w [shmWords]uint64
	seq, ok := r.load(&w)
	switch {
	case !ok:
		return clock.Linear{}, truetime.Estimate{}, truetime.Stamp{}, ErrBusy
	case seq == 0:
		return clock.Linear{}, truetime.Estimate{}, truetime.Stamp{}, nil
	case checksum(seq, &w) != w[shmCkWord]:
		return clock.Linear{}, truetime.Estimate{}, truetime.Stamp{}, ErrCorrupt
	}
	m, e := decode(&w)
	return m, e, decodeStamp(&w), nil
}

// Inspection is a checked snapshot with the reader's verdict, for status
// tools.
type Inspection struct {
	Model    clock.Linear
	Estimate truetime.Estimate
	Stamp    truetime.Stamp
	Verdict  truetime.Verdict
	LocalNS  int64             // the model's reading at the read instant
	BootNS   int64             // CLOCK_BOOTTIME at the read instant
	Interval truetime.Interval // what Now would return at LocalNS
}

// Inspect is Snapshot (checksum verified) plus the liveness and disruption
// verdict and the interval Now would return.
func (r *Reader) Inspect() (Inspection, error) {
	m, e, s, err := r.snapshot()
	if err != nil {
		return Inspection{}, err
	}
	raw, boot := r.clocks()
	marker := r.vm.marker()
	in := Inspection{Model: m, Estimate: e, Stamp: s, LocalNS: m.At(raw), BootNS: boot, Verdict: truetime.Judge(s, raw, boot, marker)}
	in.Interval = r.bound(m, e, s, raw, boot, marker)
	return in, nil
}

func (r *Reader) bound(m clock.Linear, e truetime.Estimate, s truetime.Stamp, raw, boot int64, marker uint64) truetime.Interval {
	if !r.noJudge {
		switch truetime.Judge(s, raw, boot, marker) {
		case truetime.Void:
			return truetime.Interval{}
		case truetime.Gap:
			return truetime.Interval{Status: truetime.Disrupted}
		}
	}
	return truetime.Bound(m.At(raw), e)
}

// Now reads CLOCK_MONOTONIC_RAW and the kernel's wall_to_monotonic offset
// from the two coarse clocks (the vDSO, three reads in one call, the
// coarse ones without the time counter); while the offset is the one the
// writer recorded, no suspend happened since the publish and the liveness
// and disruption verdict needs no CLOCK_BOOTTIME (truetime.JudgeFast).
// Otherwise — a resume, a clock set, a tick between the coarse reads — it
// reads CLOCK_BOOTTIME and CLOCK_MONOTONIC_RAW again and judges with
// truetime.Judge. It applies the published clock model and returns the
// TrueTime interval. It returns truetime.ErrUnsynchronized when no bound can be
// promised — including a snapshot whose writer stopped or missed its
// heartbeat (void) — and truetime.ErrDisrupted when the clocks diverged
// since the publish (truetime.Judge). It does not allocate while the
// snapshot is unchanged.
//
// The fast path skips copying and decoding: when the sequence word is
// even, the checksum word equals the one the reader last decoded under the
// same sequence, and the sequence is unchanged after the checksum was
// loaded, no write started in between and the segment holds exactly the
// snapshot decoded before (the checksum covers the sequence and every
// word, so a re-created segment that restarted its sequence differs in it).
// Otherwise the words are copied under the seqlock, checksummed, decoded
// and cached (one allocation per publish the reader sees).
//
// The clocks are read after the snapshot is loaded: the stamp then never
// looks newer than the reading, however long the reader was preempted.
func (r *Reader) Now() (truetime.Interval, error) {
	c := r.cache.Load()
	s1 := atomic.LoadUint64(r.seq)
	if c == nil || !r.trustCache && (c.seq != s1 || atomic.LoadUint64(&r.words[shmCkWord]) != c.ck || atomic.LoadUint64(r.seq) != s1) {
		var err error
		if c, err = r.refresh(); err != nil {
			return truetime.Interval{}, err
		}
	}
	var raw, w2m int64
	if r.w2m != nil {
		raw, w2m = r.w2m()
	} else {
		raw, w2m = hostclock.RawWallToMonoNS() // a direct call: the fast path
	}
	// r.bound, written out: the call and its by-value estimate cost
	// about 2 ns of a ~45 ns read (BenchmarkShmNowVsTimeNow).
	var iv truetime.Interval
	if r.noJudge {
		iv = truetime.BoundOf(c.m.At(raw), &c.e)
	} else {
		marker := r.vm.marker()
		v, decided := c.fast.Judge(raw, w2m, marker)
		if !decided {
			var boot int64
			if r.fakeClocks {
				raw, boot = r.clocks()
			} else {
				raw, boot = hostclock.BootRawNS()
			}
			v = truetime.Judge(c.s, raw, boot, marker)
		}
		switch v {
		case truetime.Void:
			iv = truetime.Interval{}
		case truetime.Gap:
			iv = truetime.Interval{Status: truetime.Disrupted}
		default:
			iv = truetime.BoundOf(c.m.At(raw), &c.e)
		}
	}
	return iv, truetime.StatusErr(iv.Status)
}

// refresh copies, verifies and decodes the current snapshot and caches it.
func (r *Reader) refresh() (*decodedSnapshot, error) {
	var w [shmWords]uint64
	seq, ok := r.load(&w)
	if !ok {
		return nil, ErrBusy
	}
	if seq == 0 {
		return nil, truetime.ErrUnsynchronized
	}
	if w[shmCkWord] != checksum(seq, &w) {
		return nil, ErrCorrupt
	}
	d := &decodedSnapshot{seq: seq, ck: w[shmCkWord], s: decodeStamp(&w)}
	d.fast = d.s.Fast()
	d.m, d.e = decode(&w)
	if !r.noCache {
		r.cache.Store(d)
	}
	return d, nil
}

// loadCurrent copies the newest snapshot: ErrBusy when the writer did not
// finish, truetime.ErrUnsynchronized before the first publish.
func (r *Reader) loadCurrent(w *[shmWords]uint64) error {
	seq, ok := r.load(w)
	if !ok {
		return ErrBusy
	}
	if seq == 0 {
		return truetime.ErrUnsynchronized
	}
	return nil
}

// intervalAt applies a copied snapshot at clock readings, judging liveness
// and disruption first when judge is set.
func (r *Reader) intervalAt(w *[shmWords]uint64, raw, boot int64, marker uint64, judge bool) (truetime.Interval, error) {
	m, e := decode(w)
	var iv truetime.Interval
	if judge {
		iv = r.bound(m, e, decodeStamp(w), raw, boot, marker)
	} else {
		iv = truetime.Bound(m.At(raw), e)
	}
	return iv, truetime.StatusErr(iv.Status)
}

// Path is the file the reader mapped.
func (r *Reader) Path() string { return r.path }

// Close unmaps the segment.
func (r *Reader) Close() error {
	r.vm.close()
	return unix.Munmap(r.data)
}

// NowAt is Now at clock readings the caller took (raw: CLOCK_MONOTONIC_RAW
// or a simulated oscillator; boot: CLOCK_BOOTTIME or its simulation),
// judged against the segment's stamps like Now. The simulator reads through
// it with a writer created with Options.Clocks on the same simulated
// clocks.
func (r *Reader) NowAt(raw, boot int64) (truetime.Interval, error) {
	var w [shmWords]uint64
	if err := r.loadCurrent(&w); err != nil {
		return truetime.Interval{}, err
	}
	return r.intervalAt(&w, raw, boot, 0, true)
}

// NowAtRaw is the interval at a raw reading the caller took, WITHOUT the
// liveness and disruption judgement (no boottime is known): the model and
// the estimate only. The simulator's negative control for suspends reads
// through it; prefer NowAt.
func (r *Reader) NowAtRaw(raw int64) (truetime.Interval, error) {
	var w [shmWords]uint64
	if err := r.loadCurrent(&w); err != nil {
		return truetime.Interval{}, err
	}
	return r.intervalAt(&w, raw, 0, 0, false)
}

// VMClock (Linux include/uapi/linux/vmclock-abi.h): a page the hypervisor
// shares with the guest. Meridian reads only what signals a disruption:
//
//	offset  field
//	0       magic u32 0x4b4c4356 ("VCLK")
//	4       size u32
//	8       version u16
//	12      seq_count u32 (odd while the hypervisor updates the page)
//	16      disruption_marker u64 (changes on live migration)
//	24      flags u64 (bit 8: vm_generation_counter present)
//	104     vm_generation_counter u64 (changes on a snapshot restore)
const (
	vmclockMagic      = 0x4b4c4356
	vmclockSeqOff     = 12
	vmclockMarkerOff  = 16
	vmclockFlagsOff   = 24
	vmclockGenOff     = 104
	vmclockMinSize    = 112
	vmclockFlagGen    = 1 << 8
	vmclockMaxRetries = 1000
)

// vmClock is a read-only mapping of the VMClock page; a nil *vmClock (no
// device) reads marker 0.
type vmClock struct{ data []byte }

// openVMClock maps path ("" → /dev/vmclock0, "-" → none). A missing or
// unreadable device, or one with the wrong magic, gives nil: the check is
// then the boottime comparison alone.
func openVMClock(path string) *vmClock {
	if path == "-" {
		return nil
	}
	if path == "" {
		path = defaultVMClock
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := unix.Mmap(int(f.Fd()), 0, os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	if *(*uint32)(unsafe.Pointer(&data[0])) != vmclockMagic {
		_ = unix.Munmap(data)
		return nil
	}
	return &vmClock{data: data}
}

func (v *vmClock) close() {
	if v != nil {
		_ = unix.Munmap(v.data)
	}
}

// marker folds the disruption marker and (when present) the VM generation
// counter into one non-zero word that changes when either changes; 0 when
// there is no device or the page never settles.
func (v *vmClock) marker() uint64 {
	if v == nil {
		return 0
	}
	seq := (*uint32)(unsafe.Pointer(&v.data[vmclockSeqOff]))
	for try := 0; try < vmclockMaxRetries; try++ {
		s1 := atomic.LoadUint32(seq)
		if s1&1 != 0 {
			continue
		}
		dm := atomic.LoadUint64((*uint64)(unsafe.Pointer(&v.data[vmclockMarkerOff])))
		flags := atomic.LoadUint64((*uint64)(unsafe.Pointer(&v.data[vmclockFlagsOff])))
		var gen uint64
		if flags&vmclockFlagGen != 0 && *(*uint32)(unsafe.Pointer(&v.data[4])) >= vmclockMinSize {
			gen = atomic.LoadUint64((*uint64)(unsafe.Pointer(&v.data[vmclockGenOff])))
		}
		if atomic.LoadUint32(seq) == s1 {
			return (dm*0x9e3779b97f4a7c15 ^ gen*0xc2b2ae3d27d4eb4f) | 1
		}
	}
	return 0
}
