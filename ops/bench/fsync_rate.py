#!/usr/bin/env python3
"""Raw fsync rate of the disk under DIR: append 4 KiB and fsync, for SECONDS. Prints one line."""
import os, sys, time

d = sys.argv[1] if len(sys.argv) > 1 else "."
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
path = os.path.join(d, "fsync-probe.bin")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
block = b"x" * 4096
n = 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    os.write(fd, block)
    os.fsync(fd)
    n += 1
elapsed = time.monotonic() - start
os.close(fd)
os.unlink(path)
print(f"RESULT fsyncs={n} duration_s={elapsed:.2f} rate={n / elapsed:.0f}")
