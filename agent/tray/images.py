"""The tray icon, drawn with Pillow from the agent's state.

A coloured disc with a white ring (visible on dark and light taskbars) and a
glyph per profile: a bolt for performance, a balance for balanced, a leaf for
battery saver. A red badge when Ollama is unreachable, grey pause bars when the
cache is paused. Drawn at 4x and downsampled, so it stays crisp at 16-64 px.
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw

SIZES = (16, 24, 32, 64)
SUPERSAMPLE = 4
COLORS = {
    "performance": (232, 89, 12),  # orange
    "balanced": (28, 126, 214),  # blue
    "battery-saver": (47, 158, 68),  # green
}
OTHER = (134, 142, 150)  # custom profiles: grey
BADGE = (224, 49, 49)
WHITE = (255, 255, 255, 255)


def _glyph(d: ImageDraw.ImageDraw, profile: str, s: int) -> None:
    def p(x: float, y: float) -> tuple[float, float]:
        return (x * s, y * s)

    if profile == "performance":  # lightning bolt
        d.polygon(
            [p(0.56, 0.14), p(0.30, 0.55), p(0.47, 0.55), p(0.40, 0.86), p(0.70, 0.42), p(0.53, 0.42), p(0.62, 0.14)],
            fill=WHITE,
        )
    elif profile == "battery-saver":  # leaf
        d.ellipse([p(0.26, 0.24), p(0.74, 0.76)], fill=WHITE)
        d.polygon([p(0.26, 0.76), p(0.26, 0.50), p(0.50, 0.76)], fill=WHITE)
        d.line([p(0.30, 0.72), p(0.66, 0.34)], fill=COLORS["battery-saver"] + (255,), width=max(1, int(0.06 * s)))
    elif profile == "balanced":  # balance: beam, post, two pans
        w = max(1, int(0.08 * s))
        d.line([p(0.24, 0.36), p(0.76, 0.36)], fill=WHITE, width=w)
        d.line([p(0.50, 0.26), p(0.50, 0.78)], fill=WHITE, width=w)
        d.line([p(0.34, 0.78), p(0.66, 0.78)], fill=WHITE, width=w)
        d.pieslice([p(0.14, 0.36), p(0.40, 0.62)], 0, 180, fill=WHITE)
        d.pieslice([p(0.60, 0.36), p(0.86, 0.62)], 0, 180, fill=WHITE)
    else:  # custom profile: a dot
        d.ellipse([p(0.38, 0.38), p(0.62, 0.62)], fill=WHITE)


@lru_cache(maxsize=64)
def draw_icon(profile: str, size: int = 64, upstream_down: bool = False, paused: bool = False) -> Image.Image:
    s = size * SUPERSAMPLE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    base = COLORS.get(profile, OTHER)
    color: tuple[int, ...] = (
        tuple(int(c * 0.45 + 128 * 0.55) for c in base) if paused else base
    )  # washed out when paused
    ring = max(SUPERSAMPLE, int(0.07 * s))
    d.ellipse([0, 0, s - 1, s - 1], fill=WHITE)
    d.ellipse([ring, ring, s - 1 - ring, s - 1 - ring], fill=color + (255,))
    _glyph(d, profile, s)
    if paused:
        w = 0.12 * s
        for x in (0.30, 0.58):
            d.rectangle(
                [x * s, 0.62 * s, x * s + w, 0.95 * s], fill=(60, 60, 60, 255), outline=WHITE, width=ring // 2 or 1
            )
    if upstream_down:
        r = 0.40 * s
        d.ellipse([s - r, 0, s - 1, r], fill=BADGE + (255,), outline=WHITE, width=ring // 2 or 1)
        d.rectangle([s - r / 2 - 0.03 * s, 0.07 * s, s - r / 2 + 0.03 * s, 0.25 * s], fill=WHITE)
        d.rectangle([s - r / 2 - 0.03 * s, 0.29 * s, s - r / 2 + 0.03 * s, 0.34 * s], fill=WHITE)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def write_assets(folder: Path) -> list[Path]:
    """The artwork in assets/icons: every profile and size, and a Windows .ico."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for profile in COLORS:
        for size in SIZES:
            path = folder / f"{profile}-{size}.png"
            draw_icon(profile, size).save(path)
            out.append(path)
    big = draw_icon("performance", 256)
    big.save(folder / "powergate-256.png")
    draw_icon("performance", 64).save(folder / "powergate-64.png")
    big.save(folder / "powergate.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (256, 256)])
    out += [folder / "powergate-256.png", folder / "powergate-64.png", folder / "powergate.ico"]
    return out


if __name__ == "__main__":  # python -m agent.tray.images --write assets/icons
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", type=Path, required=True)
    for path in write_assets(ap.parse_args().write):
        print(path)
