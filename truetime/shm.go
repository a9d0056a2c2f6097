package truetime

// Shared-memory segment layout, version 1. Little-endian, one 4096-byte
// file under /run/meridian (configurable). Every field is a 64-bit word at an
// 8-byte aligned offset and is read and written with atomic operations.
//
//	offset size  field
//	0      8     magic "MRDNTTSH"
//	8      4     layout version (1)
//	12     4     header size (64)
//	16     4     payload words (17)
//	20     44    reserved, zero
//	64     8     seq: odd while the writer is inside an update, 0 before the first
//	72     8     w0  clock.Linear BaseNS (int64)
//	80     8     w1  clock.Linear BaseRawNS (int64, CLOCK_MONOTONIC_RAW ns)
//	88     8     w2  clock.Linear FreqPPB (float64 bits)
//	96     8     w3  Status | Leap<<8 | Stratum<<16 | RefID<<32
//	104    8     w4  Estimate.LocalNS
//	112    8     w5  Estimate.OffsetNS (float64 bits)
//	120    8     w6  Estimate.SkewPPB (float64 bits)
//	128    8     w7  Estimate.Eps0NS
//	136    8     w8  Estimate.DriftBoundPPB (float64 bits)
//	144    8     w9  Estimate.FreqUncPPB (float64 bits)
//	152    8     w10 Estimate.MaxErrorNS
//	160    8     w11 Estimate.HoldoverAfterNS
//	168    8     w12 Estimate.FreqPPB (float64 bits)
//	176    8     w13 Estimate.RootDelayNS
//	184    8     w14 Estimate.RootDispersionNS
//	192    8     w15 Estimate.LastSampleNS
//	200    8     w16 checksum: word-wise FNV-1a over seq and w0..w15
//
// Protocol (seqlock): the writer increments seq to an odd value, stores the
// words and the checksum, and increments seq to even. A reader loads seq,
// retries while it is odd, copies the words, and accepts the copy only if
// seq is unchanged; the checksum catches anything else (a torn copy or a
// corrupt file). Later versions may append words; readers reject a newer
// version rather than misread it.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock"
)

const (
	shmMagic      = "MRDNTTSH"
	shmVersion    = 1
	shmHeaderSize = 64
	shmWords      = 17
	shmFileSize   = 4096
	shmSeqOff     = 64
	shmWordsOff   = 72
	shmMinSize    = shmWordsOff + 8*shmWords
	shmSpins      = 64      // tight retries before yielding
	shmMaxRetries = 200_000 // then give up with ErrShmBusy (≈ 0.1–1 s of yields)
)

// Errors from opening or reading a segment.
var (
	ErrShmMagic     = errors.New("truetime: not a Meridian TrueTime segment")
	ErrShmVersion   = errors.New("truetime: unsupported shm layout version")
	ErrShmTruncated = errors.New("truetime: shm segment too small")
	ErrShmCorrupt   = errors.New("truetime: shm checksum mismatch")
	ErrShmBusy      = errors.New("truetime: shm writer did not finish an update")
)

func wordPtr(b []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&b[off])) }

func checksum(seq uint64, w *[shmWords]uint64) uint64 {
	// FNV-1a over whole words: cheap enough for every read.
	h := (uint64(14695981039346656037) ^ seq) * 1099511628211
	for i := 0; i < shmWords-1; i++ {
		h = (h ^ w[i]) * 1099511628211
	}
	return h
}

func encode(m clock.Linear, e Estimate) (w [shmWords]uint64) {
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
	return w
}

func decode(w *[shmWords]uint64) (clock.Linear, Estimate) {
	m := clock.Linear{BaseNS: int64(w[0]), BaseRawNS: int64(w[1]), FreqPPB: math.Float64frombits(w[2])}
	e := Estimate{
		Status:           Status(w[3] & 0xff),
		Leap:             Leap(w[3] >> 8 & 0xff),
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

// ShmWriter publishes snapshots. One goroutine may call Publish at a time.
type ShmWriter struct {
	f    *os.File
	data []byte
}

// CreateShm creates (or reuses, keeping its inode so mapped readers follow
// along) the segment at path, writes the header and an unsynchronized
// snapshot. The parent directory must exist.
func CreateShm(path string) (*ShmWriter, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("truetime: create shm: %w", err)
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
	w := &ShmWriter{f: f, data: data}
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
	w.store(clock.Linear{}, Estimate{})
	return w, nil
}

func (w *ShmWriter) store(m clock.Linear, e Estimate) {
	seq := wordPtr(w.data, shmSeqOff)
	s := atomic.LoadUint64(seq)
	if s&1 == 0 {
		s = atomic.AddUint64(seq, 1)
	}
	words := encode(m, e)
	words[shmWords-1] = checksum(s+1, &words)
	for i, v := range words {
		atomic.StoreUint64(wordPtr(w.data, shmWordsOff+8*i), v)
	}
	atomic.StoreUint64(seq, s+1)
}

// Publish writes one snapshot under the seqlock. It does not allocate.
func (w *ShmWriter) Publish(m clock.Linear, e Estimate) { w.store(m, e) }

// Close unmaps the segment; the file stays for readers to find.
func (w *ShmWriter) Close() error {
	err := unix.Munmap(w.data)
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ShmReader reads snapshots lock-free from a read-only mapping.
type ShmReader struct {
	data  []byte
	seq   *uint64
	words *[shmWords]uint64
	path  string
}

// OpenShm maps the segment at path read-only and validates its header.
func OpenShm(path string) (*ShmReader, error) {
	f, err := os.Open(path)
	if err != nil {
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
	if st.Size() < shmMinSize {
		return nil, fmt.Errorf("%w: %s has %d bytes, need at least %d", ErrShmTruncated, path, st.Size(), shmMinSize)
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
	return &ShmReader{
		data:  data,
		seq:   wordPtr(data, shmSeqOff),
		words: (*[shmWords]uint64)(unsafe.Pointer(&data[shmWordsOff])),
		path:  path,
	}, nil
}

func checkHeader(data []byte, path string) error {
	if string(data[0:8]) != shmMagic {
		return fmt.Errorf("%w: %s starts with %q", ErrShmMagic, path, data[0:8])
	}
	v := *(*uint32)(unsafe.Pointer(&data[8]))
	if v > shmVersion {
		return fmt.Errorf("%w: %s has layout version %d, newer than this reader's %d: upgrade the reader", ErrShmVersion, path, v, shmVersion)
	}
	if v < shmVersion {
		return fmt.Errorf("%w: %s has layout version %d, this reader needs %d: restart meridiand", ErrShmVersion, path, v, shmVersion)
	}
	if hs := *(*uint32)(unsafe.Pointer(&data[12])); hs != shmHeaderSize {
		return fmt.Errorf("%w: %s header size %d, want %d", ErrShmMagic, path, hs, shmHeaderSize)
	}
	if n := *(*uint32)(unsafe.Pointer(&data[16])); n < shmWords {
		return fmt.Errorf("%w: %s holds %d words, want %d", ErrShmTruncated, path, n, shmWords)
	}
	return nil
}

// load copies one consistent set of words under the seqlock. seq is 0 before
// the first publish. The first attempt is the fast path; contention goes to
// loadSlow.
func (r *ShmReader) load(w *[shmWords]uint64) (seq uint64, ok bool) {
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

func (r *ShmReader) loadSlow(w *[shmWords]uint64) (seq uint64, ok bool) {
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
// unsynchronized estimate.
func (r *ShmReader) Snapshot() (clock.Linear, Estimate, error) {
	var w [shmWords]uint64
	seq, ok := r.load(&w)
	switch {
	case !ok:
		return clock.Linear{}, Estimate{}, ErrShmBusy
	case seq == 0:
		return clock.Linear{}, Estimate{}, nil
	case checksum(seq, &w) != w[shmWords-1]:
		return clock.Linear{}, Estimate{}, ErrShmCorrupt
	}
	m, e := decode(&w)
	return m, e, nil
}

// Now reads CLOCK_MONOTONIC_RAW (vDSO), applies the published clock model
// and returns the TrueTime interval, or ErrUnsynchronized when no bound can
// be promised. It does not allocate. The seqlock alone guarantees a whole
// snapshot here; the checksum (a corruption check) is left to Snapshot to
// keep this path within 1.5× of a bare clock read.
func (r *ShmReader) Now() (Interval, error) { return r.NowAtRaw(clock.MonoRawNS()) }

// NowAtRaw is Now for a raw counter reading taken by the caller (the
// simulator reads its simulated oscillator).
func (r *ShmReader) NowAtRaw(raw int64) (Interval, error) {
	var w [shmWords]uint64
	seq, ok := r.load(&w)
	if !ok {
		return Interval{}, ErrShmBusy
	}
	if seq == 0 {
		return Interval{}, ErrUnsynchronized
	}
	m, e := decode(&w)
	iv := Bound(m.At(raw), e)
	if iv.Status == Unsynchronized {
		return iv, ErrUnsynchronized
	}
	return iv, nil
}

// Path is the file the reader mapped.
func (r *ShmReader) Path() string { return r.path }

// Close unmaps the segment.
func (r *ShmReader) Close() error { return unix.Munmap(r.data) }
