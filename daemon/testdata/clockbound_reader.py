#!/usr/bin/env python3
"""A ClockBound v2 shared-memory reader written from the clock-bound
project's docs/PROTOCOL.md alone (not from meridian's code): prints the
interval a ClockBound client would compute for CLOCK_REALTIME now, as JSON.

usage: clockbound_reader.py PATH
"""
import json
import struct
import sys
import time

CLOCK_MONOTONIC_COARSE = 6  # linux/time.h
MAGIC = (0x414D5A4E, 0x43420200)


def read(path):
    with open(path, "rb") as f:
        for _ in range(1000):
            f.seek(0)
            b = f.read(80)
            (gen1,) = struct.unpack_from("=H", b, 14)
            if gen1 % 2:
                continue  # the writer is updating: retry
            f.seek(0)
            b2 = f.read(80)
            (gen2,) = struct.unpack_from("=H", b2, 14)
            if gen1 == gen2 and b == b2:
                return b
    raise SystemExit("segment never stable")


def main():
    b = read(sys.argv[1])
    magic = struct.unpack_from("=II", b, 0)
    (size,) = struct.unpack_from("=I", b, 8)
    version, gen = struct.unpack_from("=HH", b, 12)
    as_of_s, as_of_ns, void_s, void_ns = struct.unpack_from("=qqqq", b, 16)
    (bound,) = struct.unpack_from("=q", b, 48)
    (disruption,) = struct.unpack_from("=Q", b, 56)
    (max_drift,) = struct.unpack_from("=I", b, 64)
    (status,) = struct.unpack_from("=i", b, 68)
    (disr_support,) = struct.unpack_from("=B", b, 72)
    if magic != MAGIC or size < 73 or version != 2:
        raise SystemExit("not a ClockBound v2 segment: magic %r size %d version %d" % (magic, size, version))
    now = time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)
    real = time.clock_gettime_ns(time.CLOCK_REALTIME)
    as_of = as_of_s * 10**9 + as_of_ns
    void_after = void_s * 10**9 + void_ns
    if now > void_after:
        raise SystemExit("bound void: now %d after %d" % (now, void_after))
    b_now = bound + (now - as_of) * max_drift // 10**9 + 1
    print(json.dumps({
        "earliest": real - b_now, "latest": real + b_now, "realtime": real,
        "bound": bound, "max_drift": max_drift, "status": status,
        "generation": gen, "disruption_support": disr_support,
    }))


if __name__ == "__main__":
    main()
