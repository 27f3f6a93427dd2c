"""Finding the per-rank partial lists (``NAME.part-K-of-N.SUFFIX``) that sharded runs of steps 5 and 6 leave.

``common.distributed.DistContext.part_path`` names them; a merge needs every one of them, also those
a killed run of another world size left behind, so they are found by pattern here.
"""
from __future__ import annotations

import re
from pathlib import Path

from common.steps import StepError


class MissingShardError(StepError, RuntimeError):
    """A merge found the parts of some shards but not all (a shard did not run, or its folder was not copied)."""


def _pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(path.stem)}\.part-(\d+)-of-(\d+){re.escape(path.suffix)}$")


def found_parts(path: Path | str) -> list[tuple[int, int, Path]]:
    """(K, N, part path) of every part of ``path`` in its folder, sorted by (N, K)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = _pattern(path)
    found = []
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        if match and candidate.is_file():
            found.append((int(match.group(1)), int(match.group(2)), candidate))
    return sorted(found, key=lambda item: (item[1], item[0]))


def complete_parts(path: Path | str, fix: str) -> list[Path]:
    """All parts of ``path``, sorted; a MissingShardError when, for some N, not every K in 0..N-1 is there."""
    found = found_parts(path)
    for n in sorted({n for _, n, _ in found}):
        missing = sorted(set(range(n)) - {k for k, m, _ in found if m == n})
        if missing:
            names = ", ".join(Path(path).with_name(f"{Path(path).stem}.part-{k}-of-{n}{Path(path).suffix}").name
                              for k in missing)
            raise MissingShardError(f"{Path(path).parent}: {names} missing (shards {missing} of {n} did not run here "
                                    f"or were not copied in); {fix}")
    return [part for _, _, part in found]
