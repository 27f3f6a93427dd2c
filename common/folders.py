"""One rule for every step that removes or overwrites files: its outputs never overlap its inputs.

Step 4 once took ``--filtered-dir`` equal to the image folder and "removed 33 stale files": the
source images. So before any step writes, :func:`refuse_overlap` checks that no output folder is,
contains, or sits inside an input (file or folder), and that no output file is an input file.
Paths are compared after ``resolve()`` (symlinks and ``..`` followed), so two spellings of one
folder are caught too.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

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


def refuse_overlap(out_dirs: Mapping[str, Path | str | None], inputs: Mapping[str, Path | str | None],
                   out_files: Mapping[str, Path | str | None] | None = None) -> None:
    """Raise FolderOverlapError if an output folder is, contains or sits inside an input, or an
    output file is an input. Keys are the names users know (``--filtered-dir``); None values are ignored."""
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
    for out_name, out_path in (out_files or {}).items():
        if out_path is None:
            continue
        out = _real(out_path)
        for in_name, inp in ins.items():
            if out == inp:
                raise FolderOverlapError(f"output file {out_name} {out} is the input {in_name}: it would be "
                                         "overwritten; fix: write the output to another file")
