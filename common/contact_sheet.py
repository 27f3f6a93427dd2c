"""Contact sheets: a grid of thumbnails with captions, the picture a person checks at a glance."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def make_contact_sheet(
    images: Sequence[np.ndarray | Image.Image],
    captions: Sequence[str] | None = None,
    ncols: int = 8,
    thumb: int = 128,
    title: str | None = None,
) -> Image.Image:
    """Tile ``images`` (uint8 HxWx3 arrays or PIL images) in a grid, each with an optional caption."""
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    ncols = max(1, min(ncols, len(images))) if images else 1
    nrows = max(1, -(-len(images) // ncols))
    caption_h = 16 if captions is not None else 0
    title_h = 20 if title else 0
    sheet = Image.new("RGB", (ncols * thumb, title_h + nrows * (thumb + caption_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font()
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0), font=font)
    for i, image in enumerate(images):
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        pil = pil.convert("RGB").resize((thumb, thumb), Image.BILINEAR)
        x, y = (i % ncols) * thumb, title_h + (i // ncols) * (thumb + caption_h)
        sheet.paste(pil, (x, y))
        if captions is not None:
            draw.text((x + 2, y + thumb + 1), str(captions[i])[: thumb // 7], fill=(0, 0, 0), font=font)
    return sheet


def _font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's bundled font at 12 px: at its default 10 px, hinting swallows the spaces ("sweepofeyes")."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the bitmap font
        return ImageFont.load_default()
