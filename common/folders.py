"""One rule for every step that removes or overwrites files: its outputs never overlap its inputs.

Step 4 once took ``--filtered-dir`` equal to the image folder and "removed 33 stale files": the
source images. So before any step writes, :func:`refuse_overlap` checks that no output folder is,
contains, or sits inside an input (file or folder), and that no output file is an input file.
Paths are compared after ``resolve()`` (symlinks and ``..`` followed), so two spellings of one
folder are caught too.

``reserved`` extends the rule to folders other steps read as images (:func:`image_folders`): an output
folder may not be or lie inside one (step 8 writing into step 1's images made step 4 score its PNGs
as faces; step 9 writing into step 4's kept folder lost its figure as a "stale" image). A step
passes them without its own default output folder: the contract's paths stay allowed.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from common.paths import PipelinePaths
from common.steps import StepError


class FolderOverlapError(StepError, ValueError):
    """An output path overlaps an input path; the message names both and the fix."""


def _real(path: Path | str) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _relation(out: Path, inp: Path) -> str | None:
    if out == inp:
        return "is"
    if out in inp.parents:
        return "contains"
    if inp in out.parents:
        return "sits inside"
    return None


def image_folders(paths: PipelinePaths, *, own: Path | str | None = None) -> dict[str, Path]:
    """The image folders that steps list and read as images, by what users call them, except ``own``
    (the calling step's default output folder, which the contract gives it)."""
    folders = {"step 1's image folder": paths.generated_dir, "step 4's kept-image folder": paths.filtered_dir,
               "step 5's segmentation folder": paths.segmentation_dir}
    mine = _real(own) if own is not None else None
    return {name: folder for name, folder in folders.items() if _real(folder) != mine}


def refuse_overlap(out_dirs: Mapping[str, Path | str | None], inputs: Mapping[str, Path | str | None],
                   out_files: Mapping[str, Path | str | None] | None = None,
                   reserved: Mapping[str, Path | str | None] | None = None) -> None:
    """Raise FolderOverlapError if an output folder is, contains or sits inside an input (checked first: the
    message names the input's flag), is or sits inside a ``reserved`` folder, or an output file is an input. Keys are the names users know (``--filtered-dir``);
    None values are ignored."""
    ins = {name: _real(path) for name, path in inputs.items() if path is not None}
    for out_name, out_path in out_dirs.items():
        if out_path is None:
            continue
        out = _real(out_path)
        for in_name, inp in ins.items():
            relation = _relation(out, inp)
            if relation:
                what = "the same path as" if relation == "is" else f"{relation} the input"
                raise FolderOverlapError(
                    f"output folder {out_name} {out} {what} {in_name} {inp}: this step removes or overwrites "
                    f"files in its output folder, so it could destroy its input; fix: choose an output folder "
                    f"outside every input")
    for out_name, out_path in out_dirs.items():
        if out_path is None:
            continue
        out = _real(out_path)
        for name, folder in (reserved or {}).items():
            if folder is None:
                continue
            relation = _relation(out, _real(folder))
            if relation in ("is", "sits inside"):
                where = "is" if relation == "is" else "sits inside"
                raise FolderOverlapError(
                    f"output folder {out_name} {out} {where} {name} {_real(folder)}: other steps read that folder "
                    "as images (its files would be taken for faces, or removed as stale); fix: choose an output "
                    "folder outside it (the step's default is fine)")
    for out_name, out_path in (out_files or {}).items():
        if out_path is None:
            continue
        out = _real(out_path)
        for in_name, inp in ins.items():
            if out == inp:
                raise FolderOverlapError(f"output file {out_name} {out} is the input {in_name}: it would be "
                                         "overwritten; fix: write the output to another file")
