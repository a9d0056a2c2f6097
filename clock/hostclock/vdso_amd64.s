#include "textflag.h"
#include "funcdata.h"

// Calls into the vDSO's clock_gettime (System V ABI) on the calling
// goroutine's stack, with no cgo.
//
// Go's runtime switches to the thread's g0 stack for its own vDSO calls
// because it cannot know how much stack the kernel's code needs (Go issue
// 20427: a hardened kernel's vDSO used a page). We cannot switch stacks
// from outside the runtime, so each caller instead reserves a frame that
// the prologue's stack check guarantees, moves SP to the top of that frame
// (aligned to 16 bytes, as the ABI requires) and lets the vDSO grow down
// into it. Two frame sizes exist; vdso_linux.go measures the vDSO's real
// stack use at start (vdsoStackDepth) and picks the small frame only when
// the measured use is a small fraction of it.
//
// Why this is safe for Go:
//   - The frame is ours: nothing else lives between SP and SP+frame.
//   - Stacks cannot move during the call: a goroutine's stack is copied only
//     at a function prologue or a safe point in Go code, and code outside
//     Go's text is never a safe point (no asynchronous preemption here).
//   - Signals run on the thread's signal stack (Go installs SA_ONSTACK); the
//     profiler's traceback stops silently at a PC it does not know.
//   - R12 and RBX are callee-saved in the System V ABI; R14 (g) and X15 are
//     restored by the ABI wrapper around this ABI0 function.
//   - The frame holds no Go pointers (NO_LOCAL_POINTERS), and no Go code runs
//     while it is live.

// CALL_ON_FRAME(frame) is the body of vdsoCallSmall and vdsoCallLarge:
// load the arguments, move SP to the top of the frame, call, restore SP,
// store clock_gettime's return value.
#define CALL_ON_FRAME(frame) \
	NO_LOCAL_POINTERS; \
	MOVQ	fn+0(FP), AX; \
	MOVL	clockid+8(FP), DI; \
	MOVQ	ts+16(FP), SI; \
	MOVQ	SP, R12; \
	LEAQ	frame(SP), BX; \
	ANDQ	$~15, BX; \
	MOVQ	BX, SP; \
	CALL	AX; \
	MOVQ	R12, SP; \
	MOVL	AX, ret+24(FP); \
	RET

// func vdsoCallSmall(fn uintptr, clockid int32, ts *unix.Timespec) int32
TEXT ·vdsoCallSmall(SB), 0, $1024-28
	CALL_ON_FRAME(1024)

// func vdsoCallLarge(fn uintptr, clockid int32, ts *unix.Timespec) int32
TEXT ·vdsoCallLarge(SB), 0, $16384-28
	CALL_ON_FRAME(16384)

// func vdsoCall2Small(fn uintptr, id0, id1 int32, ts0, ts1 *unix.Timespec)
// reads two clocks back to back in one frame (the shared-memory reader's
// pair). The return values are not kept: the caller validates the results.
// Arguments are loaded before SP moves (the assembler's FP offsets assume
// the frame's SP); what the second call needs waits in RBX and R13, which
// the vDSO preserves.
TEXT ·vdsoCall2Small(SB), 0, $1024-32
	NO_LOCAL_POINTERS
	MOVQ	fn+0(FP), AX
	MOVL	id0+8(FP), DI
	MOVQ	ts0+16(FP), SI
	MOVL	id1+12(FP), R13
	MOVQ	ts1+24(FP), BX
	MOVQ	SP, R12
	LEAQ	1024(SP), CX
	ANDQ	$~15, CX
	MOVQ	CX, SP
	CALL	AX
	MOVQ	R12, SP
	MOVQ	fn+0(FP), AX
	MOVL	R13, DI
	MOVQ	BX, SI
	LEAQ	1024(SP), CX
	ANDQ	$~15, CX
	MOVQ	CX, SP
	CALL	AX
	MOVQ	R12, SP
	RET

// CALL_ON_TOP calls clock_gettime(DI, SI) from the top of the 1 KiB frame
// and restores SP from R12 (which the vDSO preserves); FP offsets are
// valid again after it.
#define CALL_ON_TOP \
	MOVQ	fn+0(FP), AX; \
	LEAQ	1024(SP), CX; \
	ANDQ	$~15, CX; \
	MOVQ	CX, SP; \
	CALL	AX; \
	MOVQ	R12, SP

// func vdsoCall3Small(fn uintptr, id0, id1, id2 int32, ts0, ts1, ts2 *unix.Timespec)
// reads three clocks back to back in one frame (the shared-memory reader's
// fast path: the raw clock, then the two coarse clocks whose difference
// says whether sleep time was injected). Each call's arguments are loaded
// from FP while SP is the frame's own (FP offsets assume it); only R12
// carries SP across a call. The return values are not kept: the caller
// validates the results.
TEXT ·vdsoCall3Small(SB), 0, $1024-48
	NO_LOCAL_POINTERS
	MOVQ	SP, R12
	MOVL	id0+8(FP), DI
	MOVQ	ts0+24(FP), SI
	CALL_ON_TOP
	MOVL	id1+12(FP), DI
	MOVQ	ts1+32(FP), SI
	CALL_ON_TOP
	MOVL	id2+16(FP), DI
	MOVQ	ts2+40(FP), SI
	CALL_ON_TOP
	RET

// func vdsoStackDepth(fn uintptr, clockid int32, ts *unix.Timespec) uintptr
// paints a 16 KiB frame with a pattern, calls clock_gettime from its top and
// returns how many bytes below the call's SP the vDSO wrote (the return
// address included): its stack use on this kernel, for this clock.
TEXT ·vdsoStackDepth(SB), 0, $16384-32
	NO_LOCAL_POINTERS
	MOVQ	SP, DI
	MOVQ	$2048, CX
	MOVQ	$0x5a17c0de5a17c0de, AX
	CLD
	REP; STOSQ
	MOVQ	fn+0(FP), AX
	MOVL	clockid+8(FP), DI
	MOVQ	ts+16(FP), SI
	MOVQ	SP, R12
	LEAQ	16384(SP), BX
	ANDQ	$~15, BX
	MOVQ	BX, SP
	CALL	AX
	MOVQ	R12, SP
	MOVQ	$0x5a17c0de5a17c0de, DX
	XORQ	CX, CX
scan:
	CMPQ	CX, $16384
	JGE	done
	MOVQ	(SP)(CX*1), AX
	CMPQ	AX, DX
	JNE	done
	ADDQ	$8, CX
	JMP	scan
done:
	LEAQ	(SP)(CX*1), AX
	SUBQ	AX, BX
	MOVQ	BX, ret+24(FP)
	RET
