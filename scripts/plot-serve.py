#!/usr/bin/env python3
"""QPS and p99 latency over concurrency from `silica load --out` reports, as one PNG.

    scripts/plot-serve.py [-o docs/serve-curve.png] [--title TEXT] REPORT.json|DIR ...

Each report is one closed-loop run (`mode: closed`; open-loop runs are skipped). Runs
are grouped into series by their `label` field (`silica load --label`), else by the
`w<N>` in the file name (`load-w3-c64-binary.json`: "workers 3"), plus the body (json /
binary); a series is plotted over its `connections`. A directory stands for its
`load-*.json` files. Left panel: QPS; right panel: p99 ms (log scale); x: connections
(log2). The 20 ms p99 target is drawn as a dashed line.

Uses matplotlib when it is installed; otherwise a small built-in rasterizer writes the
PNG with the standard library only (zlib), so the H200 host or a bare CI box can run it.
"""
import argparse
import glob
import json
import math
import os
import re
import struct
import sys
import zlib


def load_runs(paths):
    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "load-*.json"))) if os.path.isdir(p) else [p]
    series = {}
    for f in files:
        try:
            r = json.load(open(f))
        except (OSError, ValueError) as e:
            print(f"skipping {f}: {e}", file=sys.stderr)
            continue
        if not isinstance(r, dict) or r.get("mode") != "closed" or "qps" not in r:
            continue
        label = r.get("label")
        if not label:
            m = re.search(r"w(\d+)", os.path.basename(f))
            label = f"workers {m.group(1)}" if m else os.path.splitext(os.path.basename(f))[0]
        name = f"{label}, {r.get('body', '?')}"
        series.setdefault(name, []).append((r["connections"], r["qps"], r["latency_ms"]["p99"]))
    return {k: sorted(v) for k, v in sorted(series.items())}


# ---------------------------------------------------------------- matplotlib


def plot_matplotlib(series, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, pts in series.items():
        c, q, p = zip(*pts)
        a.plot(c, q, marker="o", label=name)
        b.plot(c, p, marker="o", label=name)
    b.axhline(20, ls="--", color="grey", lw=1)
    for ax, t in ((a, "QPS"), (b, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections (closed loop)")
        ax.set_title(t)
        ax.grid(alpha=0.3)
    b.set_yscale("log")
    a.set_ylim(bottom=0)
    a.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


# ---------------------------------------------------------------- built-in rasterizer

# 5x7 glyphs: seven rows of five columns ('#' set), rows separated by '|'.
_FONT_SRC = {
    "0": " ### |#   #|#  ##|# # #|##  #|#   #| ### ", "1": "  #  | ##  |  #  |  #  |  #  |  #  | ### ",
    "2": " ### |#   #|    #|   # |  #  | #   |#####", "3": "#####|   # |  #  |   # |    #|#   #| ### ",
    "4": "   # |  ## | # # |#  # |#####|   # |   # ", "5": "#####|#    |#### |    #|    #|#   #| ### ",
    "6": "  ## | #   |#    |#### |#   #|#   #| ### ", "7": "#####|    #|   # |  #  | #   | #   | #   ",
    "8": " ### |#   #|#   #| ### |#   #|#   #| ### ", "9": " ### |#   #|#   #| ####|    #|   # | ##  ",
    "a": " ### |#   #|#   #|#####|#   #|#   #|#   #", "b": "#### |#   #|#   #|#### |#   #|#   #|#### ",
    "c": " ### |#   #|#    |#    |#    |#   #| ### ", "d": "#### |#   #|#   #|#   #|#   #|#   #|#### ",
    "e": "#####|#    |#    |#### |#    |#    |#####", "f": "#####|#    |#    |#### |#    |#    |#    ",
    "g": " ### |#   #|#    |# ###|#   #|#   #| ####", "h": "#   #|#   #|#   #|#####|#   #|#   #|#   #",
    "i": " ### |  #  |  #  |  #  |  #  |  #  | ### ", "j": "  ###|   # |   # |   # |   # |#  # | ##  ",
    "k": "#   #|#  # |# #  |##   |# #  |#  # |#   #", "l": "#    |#    |#    |#    |#    |#    |#####",
    "m": "#   #|## ##|# # #|# # #|#   #|#   #|#   #", "n": "#   #|#   #|##  #|# # #|#  ##|#   #|#   #",
    "o": " ### |#   #|#   #|#   #|#   #|#   #| ### ", "p": "#### |#   #|#   #|#### |#    |#    |#    ",
    "q": " ### |#   #|#   #|#   #|# # #|#  # | ## #", "r": "#### |#   #|#   #|#### |# #  |#  # |#   #",
    "s": " ####|#    |#    | ### |    #|    #|#### ", "t": "#####|  #  |  #  |  #  |  #  |  #  |  #  ",
    "u": "#   #|#   #|#   #|#   #|#   #|#   #| ### ", "v": "#   #|#   #|#   #|#   #|#   #| # # |  #  ",
    "w": "#   #|#   #|#   #|# # #|# # #|# # #| # # ", "x": "#   #|#   #| # # |  #  | # # |#   #|#   #",
    "y": "#   #|#   #| # # |  #  |  #  |  #  |  #  ", "z": "#####|    #|   # |  #  | #   |#    |#####",
    " ": "     |     |     |     |     |     |     ", ".": "     |     |     |     |     | ##  | ##  ",
    ",": "     |     |     |     | ##  |  #  | #   ", "-": "     |     |     |#####|     |     |     ",
    "/": "    #|    #|   # |  #  | #   |#    |#    ", "(": "   # |  #  | #   | #   | #   |  #  |   # ",
    ")": " #   |  #  |   # |   # |   # |  #  | #   ", ":": "     | ##  | ##  |     | ##  | ##  |     ",
    "=": "     |     |#####|     |#####|     |     ", "%": "##   |##  #|   # |  #  | #   |#  ##|   ##",
    ">": " #   |  #  |   # |    #|   # |  #  | #   ", "<": "   # |  #  | #   |#    | #   |  #  |   # ",
}
FONT = {ch: [[c == "#" for c in row] for row in g.split("|")] for ch, g in _FONT_SRC.items() if g}
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def dot(self, x, y, c):
        x, y = int(round(x)), int(round(y))
        if 0 <= x < self.w and 0 <= y < self.h:
            i = 3 * (y * self.w + x)
            self.px[i:i + 3] = bytes(c)

    def line(self, x0, y0, x1, y1, c, width=1, dash=0):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(n + 1):
            if dash and (i // dash) % 2:
                continue
            t = i / n
            x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            for dx in range(-(width // 2), width - width // 2):
                for dy in range(-(width // 2), width - width // 2):
                    self.dot(x + dx, y + dy, c)

    def square(self, x, y, r, c):
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                self.dot(x + dx, y + dy, c)

    def text(self, x, y, s, c=(0, 0, 0), scale=1, anchor="left"):
        width = len(s) * 6 * scale
        x = x - width if anchor == "right" else x - width / 2 if anchor == "center" else x
        for k, ch in enumerate(s.lower()):
            g = FONT.get(ch, FONT[" "])
            for r in range(7):
                for col in range(5):
                    if g[r][col]:
                        for sx in range(scale):
                            for sy in range(scale):
                                self.dot(x + (k * 6 + col) * scale + sx, y + r * scale + sy, c)

    def png(self, path):
        raw = b"".join(b"\x00" + bytes(self.px[3 * y * self.w:3 * (y + 1) * self.w]) for y in range(self.h))

        def chunk(tag, data):
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _nice(v):
    """Tick step near v/5 among 1, 2, 5 x 10^n."""
    e = 10 ** math.floor(math.log10(max(v, 1e-12) / 5))
    return next(m * e for m in (1, 2, 5, 10) if m * e >= v / 6)


def _fmt(v):
    return f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"


def panel(cv, box, series, pick, title, logy, hline=None):
    x0, y0, x1, y1 = box
    cs = sorted({p[0] for pts in series.values() for p in pts})
    xs = [math.log2(c) for c in cs]
    lo, hi = min(xs), max(xs)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    ys = [pick(p) for pts in series.values() for p in pts] + ([hline] if hline else [])
    if logy:
        ylo, yhi = math.floor(math.log10(max(min(ys), 1e-3))), math.log10(max(ys) * 1.3)
        fy = lambda v: y1 - (math.log10(max(v, 1e-3)) - ylo) / (yhi - ylo) * (y1 - y0)
        ticks = [10 ** e * m for e in range(ylo, math.ceil(yhi) + 1) for m in (1, 2, 5) if 10 ** e * m <= 10 ** yhi]
    else:
        step = _nice(max(ys) * 1.1)
        top = step * math.ceil(max(ys) * 1.05 / step)
        fy = lambda v: y1 - v / top * (y1 - y0)
        ticks = [i * step for i in range(int(round(top / step)) + 1)]
    fx = lambda c: x0 + (math.log2(c) - lo) / (hi - lo) * (x1 - x0)
    for t in ticks:
        cv.line(x0, fy(t), x1, fy(t), (225, 225, 225))
        cv.text(x0 - 6, fy(t) - 3, _fmt(t), anchor="right")
    for c in cs:
        cv.line(fx(c), y0, fx(c), y1, (235, 235, 235))
        cv.text(fx(c), y1 + 6, str(c), anchor="center")
    cv.line(x0, y1, x1, y1, (0, 0, 0))
    cv.line(x0, y0, x0, y1, (0, 0, 0))
    if hline:
        cv.line(x0, fy(hline), x1, fy(hline), (120, 120, 120), dash=6)
        cv.text(x1 - 4, fy(hline) - 10, f"{hline:g} ms", (120, 120, 120), anchor="right")
    cv.text((x0 + x1) / 2, y0 - 22, title, scale=2, anchor="center")
    cv.text((x0 + x1) / 2, y1 + 20, "connections (closed loop)", anchor="center")
    for i, pts in enumerate(series.values()):
        col = COLORS[i % len(COLORS)]
        prev = None
        for p in pts:
            pt = (fx(p[0]), fy(pick(p)))
            if prev:
                cv.line(prev[0], prev[1], pt[0], pt[1], col, width=2)
            cv.square(pt[0], pt[1], 3, col)
            prev = pt


def plot_builtin(series, out, title):
    w, h = 1200, 480
    cv = Canvas(w, h)
    cv.text(w / 2, 12, title, scale=2, anchor="center")
    panel(cv, (90, 70, 560, 400), series, lambda p: p[1], "qps", False)
    panel(cv, (680, 70, 1150, 400), series, lambda p: p[2], "p99 latency (ms)", True, hline=20)
    x = 90
    for i, name in enumerate(series):
        col = COLORS[i % len(COLORS)]
        cv.line(x, 452, x + 20, 452, col, width=2)
        cv.square(x + 10, 452, 3, col)
        cv.text(x + 26, 449, name)
        x += 26 + 6 * len(name) + 24
    cv.png(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reports", nargs="+", help="silica load --out JSON files, or directories of load-*.json")
    ap.add_argument("-o", "--out", default="docs/serve-curve.png")
    ap.add_argument("--title", default="silica serve: filtered query mix")
    ap.add_argument("--builtin", action="store_true", help="use the built-in rasterizer even when matplotlib is present")
    a = ap.parse_args()
    series = load_runs(a.reports)
    if not series:
        sys.exit("no closed-loop reports found in " + " ".join(a.reports))
    for name, pts in series.items():
        print(f"{name}: " + ", ".join(f"{c} conn {q:.0f} QPS p99 {p:.1f} ms" for c, q, p in pts))
    try:
        if a.builtin:
            raise ImportError("--builtin")
        plot_matplotlib(series, a.out, a.title)
        how = "matplotlib"
    except ImportError:
        plot_builtin(series, a.out, a.title)
        how = "built-in rasterizer"
    print(f"wrote {a.out} ({how})")


if __name__ == "__main__":
    main()
