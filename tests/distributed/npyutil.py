#!/usr/bin/env python3
"""Small .npy helpers for the distributed tests (standard library only; no numpy on the test machines).

  npyutil.py ids OUT.npy V0 V1 ...            write an int32 [n] array
  npyutil.py slice IN.npy OUT.npy START STOP  write IN[START:STOP] (int32)
  npyutil.py check-steps DIR R0.npy R1.npy ...
      the rows that `dsv4 eval --step-logits-out DIR` wrote for request i, in step order, must equal the
      logits file of request i byte for byte (every rank's step files together cover every request)
  npyutil.py tokens IN.npy VOCAB [N]           print an int32 token file; fail unless it holds N ids in [0, VOCAB)
"""
import glob
import os
import re
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        b = f.read()
    if b[:6] != b"\x93NUMPY":
        sys.exit(f"{path}: not an .npy file")
    major = b[6]
    (hlen,) = struct.unpack("<H" if major == 1 else "<I", b[8:10] if major == 1 else b[8:12])
    start = 10 if major == 1 else 12
    header = b[start:start + hlen].decode("latin1")
    descr = re.search(r"'descr':\s*'([^']+)'", header).group(1)
    shape = tuple(int(x) for x in re.search(r"'shape':\s*\(([^)]*)\)", header).group(1).replace(",", " ").split())
    return descr, shape, b[start + hlen:]


def write_i32(path, vals):
    header = "{'descr': '<i4', 'fortran_order': False, 'shape': (%d,), }" % len(vals)
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    header = (header + " " * pad + "\n").encode("latin1")
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + struct.pack("<%di" % len(vals), *vals))


def ints(path):
    descr, shape, data = read(path)
    if descr == "<i4":
        return list(struct.unpack("<%di" % (len(data) // 4), data))
    if descr == "<i8":
        return list(struct.unpack("<%dq" % (len(data) // 8), data))
    sys.exit(f"{path}: expected int32/int64, got {descr}")


def check_steps(folder, outs):
    rows = {i: [] for i in range(len(outs))}
    files = sorted(glob.glob(os.path.join(folder, "step-*-rank-*.requests.npy")))
    if not files:
        sys.exit(f"{folder}: no step files")
    for rf in files:
        reqs = ints(rf)
        descr, shape, data = read(rf[: -len(".requests.npy")] + ".npy")
        if descr != "<f4" or shape[0] != len(reqs):
            sys.exit(f"{rf}: {len(reqs)} requests but logits {descr} {shape}")
        width = len(data) // len(reqs)
        for j, r in enumerate(reqs):
            rows[r].append(data[j * width:(j + 1) * width])
    for i, path in enumerate(outs):
        _, shape, data = read(path)
        got = b"".join(rows[i])
        if got != data:
            sys.exit(f"request {i}: {len(rows[i])} step rows differ from {path} ({shape[0]} rows)")
    print(f"step logits of {len(outs)} requests in {len(files)} step files match the request logits files")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ids":
        write_i32(args[0], [int(v) for v in args[1:]])
    elif cmd == "slice":
        write_i32(args[1], ints(args[0])[int(args[2]):int(args[3])])
    elif cmd == "check-steps":
        check_steps(args[0], args[1:])
    elif cmd == "tokens":
        t = ints(args[0])
        print(" ".join(map(str, t)))
        if any(v < 0 or v >= int(args[1]) for v in t) or (len(args) > 2 and len(t) != int(args[2])):
            sys.exit(f"{args[0]}: expected {args[2] if len(args) > 2 else 'some'} token ids in [0, {args[1]})")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
