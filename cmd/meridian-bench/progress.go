package main

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// progress reports a subcommand's phases on stderr: bars when stderr is a
// terminal, otherwise plain lines (never an escape code into a pipe or a
// file).
type progress interface {
	// task starts a phase of total steps; set reports steps done so far.
	task(name string, total int) (set func(done int))
	// wait ends every bar (call once, at the end).
	wait()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// hasWidth: a terminal that reports no size (a fresh pseudo-terminal)
// would get no bars drawn at all; it gets lines.
func hasWidth(w io.Writer) bool {
	ws, err := unix.IoctlGetWinsize(int(w.(*os.File).Fd()), unix.TIOCGWINSZ)
	return err == nil && ws.Col > 0
}

func newProgress(w io.Writer) progress {
	if isTerminal(w) && hasWidth(w) {
		return &bars{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(40))}
	}
	return &lines{w: w}
}

// lines prints "meridian-bench: name: done/total" at the start, at each
// tenth and at the end.
type lines struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lines) task(name string, total int) func(int) {
	l.mu.Lock()
	fmt.Fprintf(l.w, "meridian-bench: %s: 0/%d\n", name, total)
	l.mu.Unlock()
	last := 0
	return func(done int) {
		step := max(1, total/10)
		if done/step == last/step && done != total {
			return
		}
		last = done
		l.mu.Lock()
		defer l.mu.Unlock()
		fmt.Fprintf(l.w, "meridian-bench: %s: %d/%d\n", name, done, total)
	}
}

func (l *lines) wait() {}

type bars struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars []*mpb.Bar
}

func (b *bars) task(name string, total int) func(int) {
	bar := b.p.AddBar(int64(total),
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.CountersNoUnit("%d/%d")))
	b.mu.Lock()
	b.bars = append(b.bars, bar)
	b.mu.Unlock()
	return func(done int) { bar.SetCurrent(int64(done)) }
}

// wait aborts the bars of phases that failed midway (Wait would block on
// them) and waits for the rest to be drawn.
func (b *bars) wait() {
	b.mu.Lock()
	for _, bar := range b.bars {
		if !bar.Completed() {
			bar.Abort(false)
		}
	}
	b.mu.Unlock()
	b.p.Wait()
}
