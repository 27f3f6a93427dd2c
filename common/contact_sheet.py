"""Contact sheets: a grid of thumbnails with captions, the picture a person checks at a glance."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


CAPTION_PX = 16
TITLE_PX = 20


def contact_sheet_boxes(count: int, ncols: int = 8, thumb: int = 128, captions: bool = False,
                        title: bool = False) -> list[tuple[int, int, int, int]]:
    """Where :func:`make_contact_sheet` puts each thumbnail: ``(x, y, width, height)`` per image.

    A file that records these boxes lets a reader cut every frame back out of the sheet.
    """
    ncols = max(1, min(ncols, count)) if count else 1
    caption_h = CAPTION_PX if captions else 0
    title_h = TITLE_PX if title else 0
    return [((i % ncols) * thumb, title_h + (i // ncols) * (thumb + caption_h), thumb, thumb) for i in range(count)]


def make_contact_sheet(
    images: Sequence[np.ndarray | Image.Image],
    captions: Sequence[str] | None = None,
    ncols: int = 8,
    thumb: int = 128,
    title: str | None = None,
) -> Image.Image:
    """Tile ``images`` (uint8 HxWx3 arrays or PIL images) in a grid, each with an optional caption.

    An image already ``thumb`` px square is pasted as it is (no resampling), so its pixels survive.
    """
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    boxes = contact_sheet_boxes(len(images), ncols, thumb, captions is not None, bool(title))
    ncols = max(1, min(ncols, len(images))) if images else 1
    nrows = max(1, -(-len(images) // ncols))
    caption_h = CAPTION_PX if captions is not None else 0
    title_h = TITLE_PX if title else 0
    sheet = Image.new("RGB", (ncols * thumb, title_h + nrows * (thumb + caption_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font()
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0), font=font)
    for i, (image, (x, y, _, _)) in enumerate(zip(images, boxes)):
        pil = (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB")
        if pil.size != (thumb, thumb):
            pil = pil.resize((thumb, thumb), Image.BILINEAR)
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
