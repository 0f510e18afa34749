#!/usr/bin/env python3
"""Renders a terminal capture with ANSI colours (`tmux capture-pane -e -p`) to a PNG.

Not part of the build: a helper for the README screenshot (assets/dashboard.png).
Needs Pillow (`pip install pillow`) and DejaVu Sans Mono (Debian: fonts-dejavu-core).

Usage: python3 assets/ansi_to_png.py assets/dashboard.ans assets/dashboard.png

Vertical line glyphs and block elements are drawn as rectangles, so candle bodies, wicks and
volume bars join seamlessly across rows whatever the font's line height; braille cells (the
VWAP and moving-average lines) as their dots, which the font does not have.
"""
import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
SIZE = 15

# A dark theme close to common terminal defaults (xterm-ish, softened).
BG = (24, 26, 33)
FG = (212, 214, 220)
PALETTE = [
    (40, 42, 54), (230, 80, 80), (80, 200, 110), (230, 190, 80),
    (80, 140, 230), (190, 110, 220), (80, 200, 210), (200, 200, 200),
    (110, 115, 130), (255, 110, 110), (110, 235, 140), (255, 220, 110),
    (120, 170, 255), (220, 140, 250), (110, 230, 240), (255, 255, 255),
]


def xterm256(n):
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        levels = [0, 95, 135, 175, 215, 255]
        return (levels[n // 36], levels[(n // 6) % 6], levels[n % 6])
    v = 8 + (n - 232) * 10
    return (v, v, v)


SGR = re.compile(r"\x1b\[([0-9;]*)m")
OTHER = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def parse(text):
    """Yields rows of (char, fg, bg, bold, dim) cells."""
    rows = []
    fg, bg, bold, dim, rev = None, None, False, False, False
    for line in text.split("\n"):
        row = []
        pos = 0
        while pos < len(line):
            m = SGR.match(line, pos)
            if m:
                codes = [int(c) if c else 0 for c in m.group(1).split(";")] if m.group(1) else [0]
                i = 0
                while i < len(codes):
                    c = codes[i]
                    if c == 0:
                        fg, bg, bold, dim, rev = None, None, False, False, False
                    elif c == 1:
                        bold = True
                    elif c == 2:
                        dim = True
                    elif c == 22:
                        bold = dim = False
                    elif c == 7:
                        rev = True
                    elif c == 27:
                        rev = False
                    elif 30 <= c <= 37:
                        fg = PALETTE[c - 30]
                    elif 90 <= c <= 97:
                        fg = PALETTE[c - 90 + 8]
                    elif c == 39:
                        fg = None
                    elif 40 <= c <= 47:
                        bg = PALETTE[c - 40]
                    elif 100 <= c <= 107:
                        bg = PALETTE[c - 100 + 8]
                    elif c == 49:
                        bg = None
                    elif c in (38, 48) and i + 1 < len(codes):
                        if codes[i + 1] == 5 and i + 2 < len(codes):
                            col = xterm256(codes[i + 2])
                            i += 2
                        elif codes[i + 1] == 2 and i + 4 < len(codes):
                            col = tuple(codes[i + 2:i + 5])
                            i += 4
                        else:
                            col = None
                        if c == 38:
                            fg = col
                        else:
                            bg = col
                    i += 1
                pos = m.end()
                continue
            m = OTHER.match(line, pos)
            if m:
                pos = m.end()
                continue
            f, b = fg, bg
            if rev:
                f, b = (b or BG), (f or FG)
            row.append((line[pos], f, b, bold, dim))
            pos += 1
        rows.append(row)
    while rows and not rows[-1]:
        rows.pop()
    return rows


# (top half, bottom half) for the candle glyphs: 0 nothing, 1 wick, 2 body.
HALVES = {
    "│": (1, 1), "╷": (0, 1), "╵": (1, 0), "┃": (2, 2), "╻": (0, 2), "╹": (2, 0),
    "╽": (1, 2), "╿": (2, 1),
}
BLOCKS = {chr(0x2581 + i): (i + 1) / 8 for i in range(8)}
# Braille: (bit, column, row) of each of the 2x4 dots.
BRAILLE_DOTS = [(0x01, 0, 0), (0x02, 0, 1), (0x04, 0, 2), (0x40, 0, 3),
                (0x08, 1, 0), (0x10, 1, 1), (0x20, 1, 2), (0x80, 1, 3)]


def braille(draw, c, x0, y0, cw, ch, colour):
    """Draws braille cell `c` as its dots, spread over the whole cell so lines join."""
    bits = ord(c) - 0x2800
    for bit, col, row in BRAILLE_DOTS:
        if bits & bit:
            cx = x0 + (col * 2 + 1) * cw / 4
            cy = y0 + (row * 2 + 1) * ch / 8
            draw.rectangle([round(cx - 1), round(cy - 1), round(cx + 1), round(cy + 1)], fill=colour)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    rows = parse(open(src, encoding="utf-8").read())
    font = ImageFont.truetype(FONT, SIZE)
    bold_font = ImageFont.truetype(FONT_BOLD, SIZE)
    ascent, descent = font.getmetrics()
    cw = round(font.getlength("M"))
    ch = ascent + descent + 2
    cols = max(len(r) for r in rows)
    pad = 12
    img = Image.new("RGB", (cols * cw + 2 * pad, len(rows) * ch + 2 * pad), BG)
    draw = ImageDraw.Draw(img)
    for y, row in enumerate(rows):
        for x, (c, fg, bg, bold, dim) in enumerate(row):
            x0, y0 = pad + x * cw, pad + y * ch
            if bg is not None:
                draw.rectangle([x0, y0, x0 + cw - 1, y0 + ch - 1], fill=bg)
            colour = fg or FG
            if dim:
                colour = tuple(int(v * 0.6 + BG[i] * 0.4) for i, v in enumerate(colour))
            if c in HALVES:
                mid = x0 + cw // 2
                half = ch // 2
                for part, (top, bottom) in ((HALVES[c][0], (y0, y0 + half)), (HALVES[c][1], (y0 + half, y0 + ch))):
                    if part == 0:
                        continue
                    w = 1 if part == 1 else max(3, cw // 2)
                    draw.rectangle([mid - w // 2, top, mid - w // 2 + w - 1, bottom - 1], fill=colour)
            elif 0x2800 < ord(c) <= 0x28FF:
                braille(draw, c, x0, y0, cw, ch, colour)
            elif c in BLOCKS:
                h = round(ch * BLOCKS[c])
                draw.rectangle([x0 + 1, y0 + ch - h, x0 + cw - 2, y0 + ch - 1], fill=colour)
            elif c != " ":
                draw.text((x0, y0 + 1), c, font=bold_font if bold else font, fill=colour)
    img.save(dst)


if __name__ == "__main__":
    main()
