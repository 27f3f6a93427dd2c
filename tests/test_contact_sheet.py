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


def test_captions_are_cut_by_their_drawn_width_so_values_stay_apart_and_tiles_do_not_overlap():
    """Reproduction (demo, step 9's comparison_sweeps.png, 128 px tiles): captions were cut at
    thumb // 7 = 18 characters, so "directions eyes=0.00" and "directions eyes=0.50" both read
    "directions eyes=0." and step 4's "000002 g1.00 q1.00 h" lost the h/c its title explains."""
    image = np.full((128, 128, 3), 255, np.uint8)

    def caption_band(text):
        sheet = make_contact_sheet([image, image], captions=[text, ""], thumb=128)
        return np.asarray(sheet.convert("L"))[128:]

    assert not np.array_equal(caption_band("directions eyes=0.00"), caption_band("directions eyes=0.50"))
    assert not np.array_equal(caption_band("000002 g1.00 q1.00 h"), caption_band("000002 g1.00 q1.00 c"))
    long = caption_band("W" * 60)
    assert (long[:, :128] < 128).any() and not (long[:, 126:] < 128).any()  # cut inside its own tile
