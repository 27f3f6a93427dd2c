"""Reading the pipeline's small JSON records (generation.json, normalization.json) with one-line errors.

A truncated, empty or hand-edited record must stop a step with the file, what is wrong and the
fix, never a ``JSONDecodeError`` or ``AttributeError`` traceback. ``null`` is read as None (writers
store NaN as null, which every JSON parser accepts).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common.steps import StepError


class RecordError(StepError, ValueError):
    """A JSON record is missing, unreadable, of an unknown format or lacks keys."""


def read_json_record(path: Path | str, fix: str, required: Iterable[str] = (),
                     format_versions: Iterable[Any] | None = None) -> dict[str, Any]:
    """The JSON object in ``path``; RecordError (one line ending in ``fix``) for anything else.

    format_versions: the ``format_version`` values this code understands (None: not checked).
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path} not found; fix: {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} is not valid JSON (truncated or edited?: {exc}); fix: {fix}") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{path} holds a JSON {type(data).__name__}, not an object; fix: {fix}")
    if format_versions is not None:
        allowed = list(format_versions)
        if data.get("format_version") not in allowed:
            raise RecordError(f"{path} has format_version {data.get('format_version')!r}; this code reads "
                              f"{' or '.join(map(repr, allowed))}; fix: {fix}")
    missing = [key for key in required if key not in data]
    if missing:
        raise RecordError(f"{path} lacks the keys {missing}; fix: {fix}")
    return data
