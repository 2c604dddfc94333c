#!/usr/bin/env python3
"""Renders Swarmdrop's toolbar and store icons (PNG, no dependencies).

The icon: a rounded square with a violet-to-blue gradient, a white drop, and
three small dots around it (the swarm). Run it from this folder; build.sh
does not run it (the PNGs are committed), so it is here to remake them. The
committed PNGs were then recompressed losslessly with `advpng -z -4`
(advancecomp): 315 bytes fewer in the package (BENCHMARKS.md row 7).
"""
import math
import struct
import zlib

TOP = (0x7C, 0x5C, 0xFF)
BOTTOM = (0x1E, 0x8B, 0xFF)


def coverage(size, x, y):
    """Returns (alpha of the tile, whiteness of the glyph) at a point in 0..1 units."""
    # Rounded square.
    r = 0.22
    dx = max(abs(x - 0.5) - (0.5 - r), 0.0)
    dy = max(abs(y - 0.5) - (0.5 - r), 0.0)
    tile = 1.0 if math.hypot(dx, dy) <= r else 0.0
    if tile == 0.0:
        return 0.0, 0.0
    # The drop: a circle at the bottom and a point on top, joined by tangents.
    cx, cy, cr = 0.5, 0.58, 0.2
    tip = (0.5, 0.16)
    white = 0.0
    if math.hypot(x - cx, y - cy) <= cr:
        white = 1.0
    else:
        d = math.hypot(tip[0] - cx, tip[1] - cy)
        half = math.asin(cr / d)
        ang = math.atan2(y - tip[1], x - tip[0]) - math.atan2(cy - tip[1], cx - tip[0])
        dist = math.hypot(x - tip[0], y - tip[1])
        if abs(ang) <= half and dist <= math.sqrt(d * d - cr * cr) and y >= tip[1]:
            white = 1.0
    # The swarm.
    for (px, py, pr) in ((0.22, 0.36, 0.055), (0.79, 0.3, 0.045), (0.8, 0.74, 0.06)):
        if math.hypot(x - px, y - py) <= pr:
            white = 1.0
    # Hollow highlight inside the drop.
    if math.hypot(x - 0.43, y - 0.6) <= 0.07 and white:
        white = 0.55
    return tile, white


def render(size):
    ss = 4
    rows = []
    for j in range(size):
        row = bytearray([0])
        for i in range(size):
            a_sum = w_sum = 0.0
            for sj in range(ss):
                for si in range(ss):
                    x = (i + (si + 0.5) / ss) / size
                    y = (j + (sj + 0.5) / ss) / size
                    a, w = coverage(size, x, y)
                    a_sum += a
                    w_sum += w * a
            a = a_sum / (ss * ss)
            w = w_sum / a_sum if a_sum else 0.0
            t = (j + 0.5) / size
            base = [TOP[k] * (1 - t) + BOTTOM[k] * t for k in range(3)]
            rgb = [round(base[k] * (1 - w) + 255 * w) for k in range(3)]
            row += bytes(rgb + [round(255 * a)])
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    for s in (16, 32, 48, 128):
        with open(f"icon-{s}.png", "wb") as f:
            f.write(render(s))
