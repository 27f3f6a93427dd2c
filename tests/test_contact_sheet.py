"""Contact sheets: the words of titles and captions stay apart (Pillow's 10 px default font lost the spaces)."""
import numpy as np

from common.contact_sheet import make_contact_sheet


def _ink_width(sheet, rows: slice) -> int:
    band = np.asarray(sheet.convert("L"))[rows]
    columns = np.flatnonzero((band < 128).any(axis=0))
    return int(columns[-1] - columns[0] + 1)


def test_spaces_in_titles_and_captions_take_room():
    image = np.full((32, 32, 3), 255, np.uint8)
    with_spaces = make_contact_sheet([image], captions=["all 000031"], thumb=160, title="sweep of eyes (EMA G)")
    without = make_contact_sheet([image], captions=["all000031"], thumb=160, title="sweepofeyes(EMAG)")
    title_rows, caption_rows = slice(0, 20), slice(20 + 160, None)
    # a space at least 3 px wide (the 10 px font drew 2 px: "sweepofeyes" to the eye)
    assert _ink_width(with_spaces, title_rows) >= _ink_width(without, title_rows) + 4 * 3
    assert _ink_width(with_spaces, caption_rows) >= _ink_width(without, caption_rows) + 3
