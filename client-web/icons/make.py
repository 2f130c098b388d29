"""Draws the app's icons (連 on the theme colour): run with Debian's python3-pil and
fonts-noto-cjk, `python3 client-web/icons/make.py`. The PNGs are committed; this script
is here so that they can be drawn again, not served."""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

THEME = (11, 92, 173)  # --accent in app.css, theme_color in the manifest
WHITE = (255, 255, 255)
FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"  # face 0: Japanese
HERE = Path(__file__).parent


def draw(size, glyph_share, rounded):
    """The mark: 連 whose ink fills `glyph_share` of the side, centred on the ink."""
    scale = 4  # drawn large, then scaled down: smooth edges
    big = size * scale
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    if rounded:
        pen.rounded_rectangle((0, 0, big - 1, big - 1), radius=big * 0.18, fill=THEME)
    else:
        pen.rectangle((0, 0, big, big), fill=THEME)
    font = ImageFont.truetype(FONT, int(big * glyph_share), index=0)
    left, top, right, bottom = pen.textbbox((0, 0), "連", font=font)
    x = (big - (right - left)) / 2 - left
    y = (big - (bottom - top)) / 2 - top
    pen.text((x, y), "連", font=font, fill=WHITE)
    return image.resize((size, size), Image.LANCZOS)


# "any": a rounded tile, as launchers show it.
draw(192, 0.62, True).save(HERE / "icon-192.png", optimize=True)
draw(512, 0.62, True).save(HERE / "icon-512.png", optimize=True)
# "maskable": full bleed; the ink stays well inside the central circle of 80% (the safe
# zone every mask shape keeps), here within 46% of the side.
draw(512, 0.46, False).save(HERE / "maskable-512.png", optimize=True)
# iOS takes no transparency and rounds the corners itself.
draw(180, 0.6, False).convert("RGB").save(HERE / "apple-touch-icon.png", optimize=True)
