package hostclock

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file finds a function in an ELF64 little-endian shared object held
// in memory, the way the kernel's vDSO is laid out: one PT_LOAD segment at
// file offset 0, a PT_DYNAMIC segment naming the dynamic symbol table, its
// string table, a hash table (DT_HASH or DT_GNU_HASH, for the symbol count)
// and the symbol versions (DT_VERSYM, DT_VERDEF). It is pure: it reads only
// the bytes it is given and checks every offset against their length, so a
// damaged or hostile image yields an error, never a read out of bounds
// (FuzzFindELFSymbol).

const (
	ptLoad    = 1
	ptDynamic = 2

	dtNull    = 0
	dtHash    = 4
	dtStrtab  = 5
	dtSymtab  = 6
	dtStrsz   = 10
	dtGNUHash = 0x6ffffef5
	dtVersym  = 0x6ffffff0
	dtVerdef  = 0x6ffffffc

	sttFunc   = 2
	stbGlobal = 1
	stbWeak   = 2

	symSize = 24 // sizeof(Elf64_Sym)

	// maxSymbols bounds the symbol walk: a vDSO exports a dozen.
	maxSymbols = 1 << 16
)

var le = binary.LittleEndian

// elfImage is a bounds-checked view of the image.
type elfImage struct {
	b []byte
	// vaddr and off of the PT_LOAD segment at offset 0: a dynamic-section
	// address a maps to offset a - vaddr + off.
	vaddr, off uint64
}

func (m *elfImage) u16(off uint64) (uint16, bool) {
	if off > uint64(len(m.b)) || uint64(len(m.b))-off < 2 {
		return 0, false
	}
	return le.Uint16(m.b[off:]), true
}

func (m *elfImage) u32(off uint64) (uint32, bool) {
	if off > uint64(len(m.b)) || uint64(len(m.b))-off < 4 {
		return 0, false
	}
	return le.Uint32(m.b[off:]), true
}

func (m *elfImage) u64(off uint64) (uint64, bool) {
	if off > uint64(len(m.b)) || uint64(len(m.b))-off < 8 {
		return 0, false
	}
	return le.Uint64(m.b[off:]), true
}

// addr converts a virtual address from the dynamic section to an offset.
func (m *elfImage) addr(a uint64) (uint64, bool) {
	if a < m.vaddr {
		return 0, false
	}
	o := a - m.vaddr + m.off
	return o, o < uint64(len(m.b))
}

// cstring reads a NUL-terminated string at off, at most limit bytes long.
func (m *elfImage) cstring(off, limit uint64) (string, bool) {
	if off >= uint64(len(m.b)) {
		return "", false
	}
	end := off
	for end < uint64(len(m.b)) && end-off < limit {
		if m.b[end] == 0 {
			return string(m.b[off:end]), true
		}
		end++
	}
	return "", false
}

var errELF = errors.New("not a usable ELF64 little-endian x86-64/arm64 shared object")

// elfHeaderSize reports how many bytes from the start of an image are
// needed to hold its program headers, and the size of the PT_LOAD segment
// at offset 0 as far as the headers say (the whole vDSO image). The caller
// maps that many bytes and hands them to findELFSymbol.
func elfHeaderSize(hdr []byte) (phEnd, loadSize uint64, err error) {
	m := elfImage{b: hdr}
	if len(hdr) < 64 || string(hdr[:4]) != "\x7fELF" || hdr[4] != 2 /* ELFCLASS64 */ || hdr[5] != 1 /* LSB */ {
		return 0, 0, errELF
	}
	phoff, _ := m.u64(32)
	phentsize, _ := m.u16(54)
	phnum, _ := m.u16(56)
	if phentsize != 56 || phnum == 0 || phoff > 1<<20 {
		return 0, 0, fmt.Errorf("%w: program headers (entsize %d, count %d, offset %d)", errELF, phentsize, phnum, phoff)
	}
	phEnd = phoff + uint64(phnum)*56
	if phEnd > uint64(len(hdr)) {
		return phEnd, 0, nil // the caller must show more bytes
	}
	for i := uint64(0); i < uint64(phnum); i++ {
		p := phoff + i*56
		typ, _ := m.u32(p)
		off, _ := m.u64(p + 8)
		filesz, _ := m.u64(p + 32)
		if typ == ptLoad && off == 0 {
			return phEnd, filesz, nil
		}
	}
	return phEnd, 0, fmt.Errorf("%w: no PT_LOAD segment at offset 0", errELF)
}

// elfSymbol is what findELFSymbol returns: the symbol's offset from the
// image's load address, and its size in bytes.
type elfSymbol struct {
	Offset, Size uint64
}

// findELFSymbol looks up a function symbol by name in img, a whole image
// whose PT_LOAD segment starts at offset 0. When the image carries symbol
// versions, the symbol must be defined with version (the vDSO's
// "LINUX_2.6"); an unversioned image matches by name alone.
func findELFSymbol(img []byte, name, version string) (elfSymbol, error) {
	phEnd, loadSize, err := elfHeaderSize(img)
	if err != nil {
		return elfSymbol{}, err
	}
	if phEnd > uint64(len(img)) || loadSize > uint64(len(img)) || loadSize < 64 {
		return elfSymbol{}, fmt.Errorf("%w: image of %d bytes is shorter than its headers say", errELF, len(img))
	}
	m := elfImage{b: img[:loadSize]}
	phoff, _ := m.u64(32)
	phnum, _ := m.u16(56)
	var dynOff, dynSize uint64
	foundLoad, foundDyn := false, false
	for i := uint64(0); i < uint64(phnum); i++ {
		p := phoff + i*56
		typ, _ := m.u32(p)
		off, _ := m.u64(p + 8)
		vaddr, _ := m.u64(p + 16)
		filesz, _ := m.u64(p + 32)
		switch {
		case typ == ptLoad && off == 0 && !foundLoad:
			m.vaddr, m.off, foundLoad = vaddr, off, true
		case typ == ptDynamic && !foundDyn:
			dynOff, dynSize, foundDyn = off, filesz, true
		}
	}
	if !foundDyn {
		return elfSymbol{}, fmt.Errorf("%w: no PT_DYNAMIC segment", errELF)
	}
	var symtab, strtab, strsz, hash, gnuHash, versym, verdef uint64
	for d := dynOff; d+16 <= dynOff+dynSize; d += 16 {
		tag, ok1 := m.u64(d)
		val, ok2 := m.u64(d + 8)
		if !ok1 || !ok2 || tag == dtNull {
			break
		}
		switch tag {
		case dtSymtab:
			symtab = val
		case dtStrtab:
			strtab = val
		case dtStrsz:
			strsz = val
		case dtHash:
			hash = val
		case dtGNUHash:
			gnuHash = val
		case dtVersym:
			versym = val
		case dtVerdef:
			verdef = val
		}
	}
	symOff, ok1 := m.addr(symtab)
	strOff, ok2 := m.addr(strtab)
	if symtab == 0 || strtab == 0 || !ok1 || !ok2 {
		return elfSymbol{}, fmt.Errorf("%w: no dynamic symbol or string table", errELF)
	}
	if strsz == 0 || strsz > uint64(len(m.b))-strOff {
		strsz = uint64(len(m.b)) - strOff
	}
	nsyms, err := m.symbolCount(hash, gnuHash)
	if err != nil {
		return elfSymbol{}, err
	}
	// Version index → name, from the Verdef chain.
	var versions map[uint16]string
	versymOff, hasVersym := uint64(0), false
	if versym != 0 && verdef != 0 {
		versymOff, hasVersym = m.addr(versym)
		vdOff, ok := m.addr(verdef)
		if !hasVersym || !ok {
			return elfSymbol{}, fmt.Errorf("%w: symbol versions outside the image", errELF)
		}
		versions = map[uint16]string{}
		for n := 0; n < 64; n++ {
			ndx, ok1 := m.u16(vdOff + 4)
			aux, ok2 := m.u32(vdOff + 12)
			next, ok3 := m.u32(vdOff + 16)
			vdaName, ok4 := m.u32(vdOff + uint64(aux))
			if !ok1 || !ok2 || !ok3 || !ok4 || uint64(vdaName) >= strsz {
				return elfSymbol{}, fmt.Errorf("%w: damaged version definitions", errELF)
			}
			if s, ok := m.cstring(strOff+uint64(vdaName), strsz-uint64(vdaName)); ok {
				versions[ndx&0x7fff] = s
			}
			if next == 0 {
				break
			}
			vdOff += uint64(next)
		}
	}
	for i := uint64(0); i < nsyms; i++ {
		s := symOff + i*symSize
		stName, ok1 := m.u32(s)
		if !ok1 || s+symSize > uint64(len(m.b)) {
			return elfSymbol{}, fmt.Errorf("%w: symbol table runs past the image", errELF)
		}
		info := m.b[s+4]
		shndx, _ := m.u16(s + 6)
		value, _ := m.u64(s + 8)
		size, _ := m.u64(s + 16)
		if info&0xf != sttFunc || (info>>4 != stbGlobal && info>>4 != stbWeak) || shndx == 0 {
			continue
		}
		if uint64(stName) >= strsz {
			continue
		}
		got, ok := m.cstring(strOff+uint64(stName), strsz-uint64(stName))
		if !ok || got != name {
			continue
		}
		if hasVersym {
			v, ok := m.u16(versymOff + 2*i)
			if !ok || versions[v&0x7fff] != version {
				continue
			}
		}
		if value < m.vaddr || value-m.vaddr >= uint64(len(m.b)) {
			return elfSymbol{}, fmt.Errorf("%w: %s lies outside the image", errELF, name)
		}
		return elfSymbol{Offset: value - m.vaddr, Size: size}, nil
	}
	return elfSymbol{}, fmt.Errorf("symbol %s (version %s) not found", name, version)
}

// symbolCount is the number of dynamic symbols: DT_HASH's nchain, or for a
// DT_GNU_HASH-only image one past the highest index its chains reach.
func (m *elfImage) symbolCount(hash, gnuHash uint64) (uint64, error) {
	if hash != 0 {
		h, ok := m.addr(hash)
		n, ok2 := m.u32(h + 4)
		if !ok || !ok2 || n > maxSymbols {
			return 0, fmt.Errorf("%w: damaged DT_HASH", errELF)
		}
		return uint64(n), nil
	}
	if gnuHash == 0 {
		return 0, fmt.Errorf("%w: no hash table (DT_HASH or DT_GNU_HASH)", errELF)
	}
	h, ok := m.addr(gnuHash)
	nbuckets, ok1 := m.u32(h)
	symoffset, ok2 := m.u32(h + 4)
	bloomSize, ok3 := m.u32(h + 8)
	if !ok || !ok1 || !ok2 || !ok3 || nbuckets > maxSymbols || bloomSize > maxSymbols {
		return 0, fmt.Errorf("%w: damaged DT_GNU_HASH", errELF)
	}
	buckets := h + 16 + 8*uint64(bloomSize)
	chains := buckets + 4*uint64(nbuckets)
	var last uint64
	for i := uint64(0); i < uint64(nbuckets); i++ {
		b, ok := m.u32(buckets + 4*i)
		if !ok {
			return 0, fmt.Errorf("%w: damaged DT_GNU_HASH buckets", errELF)
		}
		if uint64(b) > last {
			last = uint64(b)
		}
	}
	if last == 0 {
		return uint64(symoffset), nil
	}
	if last < uint64(symoffset) {
		return 0, fmt.Errorf("%w: DT_GNU_HASH bucket below its symbol offset", errELF)
	}
	for n := 0; ; n++ {
		c, ok := m.u32(chains + 4*(last-uint64(symoffset)))
		if !ok || n > maxSymbols {
			return 0, fmt.Errorf("%w: damaged DT_GNU_HASH chain", errELF)
		}
		last++
		if c&1 == 1 {
			return last, nil
		}
	}
}
