package hostclock

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"strings"
	"testing"
)

// liveVDSO copies this process's whole vDSO mapping, as /proc/self/maps
// gives its extent (the section headers lie past the loaded segment).
func liveVDSO(t testing.TB) []byte {
	base := auxvValue(atSysinfoEHDR)
	if base == 0 {
		t.Skip("no vDSO mapped")
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if !strings.HasSuffix(line, "[vdso]") {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(line, "%x-%x", &lo, &hi); err != nil || uintptr(lo) != base {
			t.Fatalf("vdso mapping %q does not start at AT_SYSINFO_EHDR %#x", line, base)
		}
		return bytes.Clone(bytesAt(base, hi-lo))
	}
	t.Fatal("no [vdso] line in /proc/self/maps")
	return nil
}

// loadVaddr is the virtual address of the PT_LOAD segment at offset 0, as
// the standard library's ELF reader sees it.
func loadVaddr(t *testing.T, f *elf.File) uint64 {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Off == 0 {
			return p.Vaddr
		}
	}
	t.Fatal("no PT_LOAD at offset 0")
	return 0
}

// Every versioned function the standard library's ELF reader (an
// independent parser, working from the section headers) finds in the live
// vDSO is found by findELFSymbol at the same place — through DT_HASH, and
// again through DT_GNU_HASH alone.
func TestFindELFSymbolAgreesWithDebugELF(t *testing.T) {
	img := liveVDSO(t)
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	vaddr := loadVaddr(t, f)
	gnuOnly := withoutDTHash(t, img)
	checked := 0
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF {
			continue
		}
		for name, image := range map[string][]byte{"DT_HASH": img, "DT_GNU_HASH": gnuOnly} {
			got, err := findELFSymbol(image, s.Name, s.Version)
			if err != nil {
				t.Fatalf("%s: %s@%s: %v", name, s.Name, s.Version, err)
			}
			if got.Offset != s.Value-vaddr || got.Size != s.Size {
				t.Fatalf("%s: %s@%s at %#x size %d, debug/elf says %#x size %d", name, s.Name, s.Version, got.Offset, got.Size, s.Value-vaddr, s.Size)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("debug/elf found no function in the vDSO")
	}
	t.Logf("%d vDSO functions found at the places debug/elf reports", checked)
	// The version is checked: the right name with the wrong version is
	// not found.
	if _, err := findELFSymbol(img, vdsoSymbol, "LINUX_9.9"); err == nil {
		t.Fatal("found __vdso_clock_gettime with a version the image does not define")
	}
	if _, err := findELFSymbol(img, "__vdso_no_such_function", vdsoVersion); err == nil {
		t.Fatal("found a function the image does not have")
	}
}

// withoutDTHash returns a copy of img whose DT_HASH entry is renamed to an
// ignored tag, leaving only DT_GNU_HASH to count the symbols.
func withoutDTHash(t *testing.T, img []byte) []byte {
	out := bytes.Clone(img)
	f, err := elf.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_DYNAMIC {
			continue
		}
		hasGNU := false
		for d := p.Off; d+16 <= p.Off+p.Filesz; d += 16 {
			if le.Uint64(out[d:]) == dtGNUHash {
				hasGNU = true
			}
		}
		if !hasGNU {
			t.Skip("this vDSO has no DT_GNU_HASH")
		}
		for d := p.Off; d+16 <= p.Off+p.Filesz; d += 16 {
			if le.Uint64(out[d:]) == dtHash {
				le.PutUint64(out[d:], 0x10) // DT_SYMBOLIC: ignored
				return out
			}
		}
	}
	return out // no DT_HASH to remove: already GNU-only
}

// An image cut short of its loaded segment is refused, never read past
// its end.
func TestFindELFSymbolTruncated(t *testing.T) {
	img := liveVDSO(t)
	_, loadSize, err := elfHeaderSize(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := findELFSymbol(img[:loadSize], vdsoSymbol, vdsoVersion); err != nil {
		t.Fatalf("the whole loaded segment: %v", err)
	}
	for n := 0; n < int(loadSize); n += 61 {
		if _, err := findELFSymbol(img[:n], vdsoSymbol, vdsoVersion); err == nil {
			t.Fatalf("found the symbol in the first %d of %d bytes", n, len(img))
		}
	}
}

// Any bytes: no panic, and a symbol found lies inside the image.
func FuzzFindELFSymbol(f *testing.F) {
	img := liveVDSO(f)
	f.Add(img, vdsoSymbol, vdsoVersion)
	f.Add(img[:512], vdsoSymbol, vdsoVersion)
	damaged := bytes.Clone(img)
	for i := 64; i < len(damaged) && i < 1200; i += 97 {
		damaged[i] ^= 0xff
	}
	f.Add(damaged, vdsoSymbol, vdsoVersion)
	f.Add([]byte("\x7fELF\x02\x01"), "x", "")
	f.Fuzz(func(t *testing.T, b []byte, name, version string) {
		s, err := findELFSymbol(b, name, version)
		if err != nil {
			return
		}
		if s.Offset >= uint64(len(b)) {
			t.Fatalf("symbol %q at %#x outside an image of %d bytes", name, s.Offset, len(b))
		}
		again, err := findELFSymbol(b, name, version)
		if err != nil || again != s {
			t.Fatalf("not deterministic: %+v then %+v, %v", s, again, err)
		}
	})
}
