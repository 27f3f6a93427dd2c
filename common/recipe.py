"""The recipe of an output folder: what made its items, so a step never calls "done" what another recipe made.

A step used to resume when an output file existed: after a swapped model, other values or a kill,
it adopted files that other settings had made (step 8 "0 written, 4 already there" from an old
fine-tune; step 5 keeping an old FaceXFormer's maps). Now every output folder holds its recipe:

* ``settings``: every setting that changes an item's content (seed, truncation, requested values,
  method, weights entry, crop mode, normalisation, device type where it changes bits); never
  ``--num``, ``--limit``, ``--batch-size``, ``--threads``, ``--shard`` or the device index;
* ``inputs``: the :func:`common.fingerprint.file_fingerprint` (size + sha256) of every model file
  and table the step reads (None = absent).

:func:`claim_output` is the one gate: before any item is written it takes the folder's lock (a
second run into the folder refuses; a lock whose process is gone is recovered), then compares the
folder's recipe with the run's. Identical: the step continues. Different, or items without a recipe
(an older version made them): one line naming what differs and ``--overwrite``, which removes the
step's own items *before* the new recipe is written. So the recipe on disk is written before the
first item and every item in the folder was made under it: a kill leaves nothing another recipe
could adopt. Steps that read images one by one (4, 5, 6) also keep each item's input identity
(:func:`item_identity`) with its row.

Shards (``--shard K/N``, folders copied together later) each write ``NAME.part-K-of-N.json``;
:func:`merging` refuses parts made by another recipe before a merge writes anything.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.fingerprint import file_fingerprint
from common.io import atomic_write_json, json_safe
from common.steps import StepError

RECIPE_JSON = "recipe.json"
RECIPE_FORMAT_VERSION = 1
LOCK_NAME = ".recipe.lock"
OVERWRITE_FLAG = "--overwrite"
INPUT_COLUMN = "input_fingerprint"
"""The column (crops.csv, all_scores.csv, step 4's table) holding the identity of the image a row describes."""


class RecipeError(StepError, RuntimeError):
    """An output folder cannot be used under this run's recipe; one line naming why and the fix."""


class RecipeMismatchError(RecipeError):
    """The folder holds items made by another recipe (or by an older version, without one)."""


class FolderBusyError(RecipeError):
    """Another run holds the folder's lock."""


def _plain(value: Any) -> Any:
    """JSON-plain form of a setting (paths as strings, tuples as lists, NaN as None) so that a
    recipe read back from disk compares equal to the one built in memory."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _plain(value.item())
    return json_safe(value)


def item_identity(path: Path | str) -> str:
    """The identity of one input item (``size:sha256``): recorded with the item's output."""
    return file_fingerprint(path)


@dataclass(frozen=True)
class Recipe:
    """What a step's items are made from; equal recipes make equal items."""

    step: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str | None] = field(default_factory=dict)

    @classmethod
    def of(cls, step: str, settings: Mapping[str, Any], files: Mapping[str, Path | str | None] = {}) -> Recipe:
        """Fingerprint ``files`` (role -> path; None or a missing file is recorded as None)."""
        inputs = {role: (file_fingerprint(path) if path is not None and Path(path).is_file() else None)
                  for role, path in files.items()}
        return cls(str(step), _plain(dict(settings)), inputs)

    def record(self, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON object written to the folder; ``info`` is for people and never compared."""
        out = {"format_version": RECIPE_FORMAT_VERSION, "step": self.step, "settings": dict(self.settings),
               "inputs": dict(self.inputs)}
        if info:
            out["info"] = _plain(dict(info))
        return out

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Recipe:
        if not isinstance(data.get("settings"), Mapping) or not isinstance(data.get("inputs"), Mapping):
            raise ValueError("it lacks 'settings' or 'inputs'")
        return cls(str(data.get("step")), dict(data["settings"]), dict(data["inputs"]))

    def differences(self, now: Recipe) -> list[str]:
        """What differs from ``now``, one short phrase each, in a stable order."""
        out = []
        if self.step != now.step:
            out.append(f"step: folder {self.step}, now {now.step}")
        for key in sorted(set(self.settings) | set(now.settings)):
            old, new = self.settings.get(key, "<absent>"), now.settings.get(key, "<absent>")
            if not _same(old, new):
                out.append(f"{key}: folder {_short(old)}, now {_short(new)}")
        for key in sorted(set(self.inputs) | set(now.inputs)):
            old, new = self.inputs.get(key), now.inputs.get(key)
            if old != new:
                out.append(f"{key}: another file (folder {_short_fp(old)}, now {_short_fp(new)})")
        return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _short_fp(fingerprint: str | None) -> str:
    if fingerprint is None:
        return "none"
    size, _, digest = fingerprint.partition(":")
    return f"{size} bytes, sha256 {digest[:12]}"


def read_recipe(path: Path | str) -> Recipe | None:
    """The recipe in ``path`` (None when absent); a damaged file is a RecipeMismatchError (one line)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON (truncated or edited?: {exc})") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        version = data.get("format_version")
        if isinstance(version, int) and version > RECIPE_FORMAT_VERSION:
            raise ValueError(f"format_version {version}, this code reads {RECIPE_FORMAT_VERSION}")
        if version != RECIPE_FORMAT_VERSION or "settings" not in data:
            raise RecipeMismatchError(
                f"{path} was written by an older version of the pipeline (no recipe in it), so nothing says "
                f"exactly how the folder's items were made; fix: {OVERWRITE_FLAG} to start over, or another --out")
        return Recipe.from_record(data)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecipeMismatchError(f"{path} is not a readable recipe ({exc}); nothing says how the folder's items "
                                  f"were made; fix: {OVERWRITE_FLAG} to start over, or another --out") from None


# ----------------------------------------------------------------------------------------------
# the folder's lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _create_exclusive(complete: str, path: Path, content: dict) -> None:
    """Create ``path`` only if absent (FileExistsError otherwise): a hard link of the complete temp file, so
    no reader sees it half-written; where the filesystem has no hard links, an O_EXCL create."""
    try:
        os.link(complete, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network or FUSE mounts)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(content, handle)


@dataclass
class FolderLock:
    """``folder/.recipe.lock`` holding the holder's pid and host, created atomically (link of a complete
    temp file, so a reader never sees it half-written). A lock whose pid is gone on this host is stale
    and taken over; the kernel keeps nothing, so a ``kill -9`` leaves a file that the next run recovers."""

    folder: Path
    name: str = LOCK_NAME
    path: Path = field(init=False)
    held: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.path = self.folder / self.name

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-lock.", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(mine, handle)
            for _ in range(3):
                try:
                    _create_exclusive(tmp, self.path, mine)
                    self.held = True
                    return self
                except FileExistsError:
                    if not self._remove_if_stale():
                        holder = self._holder() or {}
                        raise FolderBusyError(
                            f"{self.folder} is in use by another run (pid {holder.get('pid', '?')} on "
                            f"{holder.get('host', '?')} since {holder.get('since', '?')}; lock {self.path}); wait "
                            "for it to finish or use another --out (if no such run exists, remove the lock file)")
            raise FolderBusyError(f"{self.folder}: cannot take the lock {self.path}; remove it if no run uses the folder")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _remove_if_stale(self) -> bool:
        """Remove the lock when its holder is a process of this host that no longer exists."""
        holder = self._holder()
        if holder is None or holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or _pid_alive(pid):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        return True

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                if (self._holder() or {}).get("pid") == os.getpid():
                    os.unlink(self.path)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ----------------------------------------------------------------------------------------------
# the gate


Owned = Callable[[Path], Iterable[Path]]
"""folder -> the step's own items in it (files), those ``--overwrite`` removes."""


def owned_by_patterns(*patterns: str) -> Owned:
    """An :data:`Owned` from glob patterns relative to the folder (files only)."""
    def owned(folder: Path) -> list[Path]:
        found: set[Path] = set()
        for pattern in patterns:
            found.update(p for p in folder.glob(pattern) if p.is_file())
        return sorted(found)

    return owned


def _refusal(folder: Path, record: Path, problem: str, what: str) -> RecipeMismatchError:
    return RecipeMismatchError(
        f"{folder} holds {what} {problem}; a step continues only under the same recipe ({record.name}); fix: "
        f"rerun with the folder's settings and inputs, use another --out, or {OVERWRITE_FLAG} to start over "
        "(it removes the step's outputs there first)")


def check_recipe(folder: Path, recipe: Recipe, owned: Owned, record_name: str = RECIPE_JSON,
                 what: str = "outputs") -> bool:
    """Whether the folder holds this very recipe (the step continues); False when it holds no items yet
    (a new folder, or a run that stopped before its first item); RecipeMismatchError when it holds items
    of another recipe or items without one."""
    record = Path(folder) / record_name
    previous = read_recipe(record)
    if previous is None:
        items = list(owned(Path(folder))) if Path(folder).is_dir() else []
        if items:
            raise _refusal(folder, record, f"({len(items)} files, e.g. {items[0].name}) but no {record_name}, so "
                                           "nothing says how they were made (an older version or another tool "
                                           "made them)", what)
        return False
    differences = previous.differences(recipe)
    if differences and not list(owned(Path(folder))):
        return False  # a run that stopped before its first item: nothing of the old recipe to protect
    if differences:
        raise _refusal(folder, record, f"made by another recipe ({'; '.join(differences)})", what)
    return True


def start_over(folder: Path, owned: Owned, record_name: str = RECIPE_JSON) -> int:
    """``--overwrite``: remove the recipe and the step's own items (the recipe first, so a kill here
    leaves items without a recipe, which are refused, never adopted). Returns how many were removed."""
    folder = Path(folder)
    (folder / record_name).unlink(missing_ok=True)
    removed = 0
    for item in list(owned(folder)) if folder.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            item.unlink()
            removed += 1
    return removed


@dataclass
class Claim:
    """What :func:`claim_output` found: ``continued`` when the folder already held this recipe."""

    folder: Path
    recipe: Recipe
    continued: bool
    removed: int = 0


def refuse_another_steps_folder(folder: Path, recipe: Recipe, record_name: str = RECIPE_JSON) -> None:
    """A folder whose recipe is another step's is never claimed, not even with ``--overwrite``: its recipe would be
    replaced and that step would then refuse its own finished work (step 7c run with ``--out`` at step 8's folder
    did). One line naming the step and the fix."""
    try:
        previous = read_recipe(Path(folder) / record_name)
    except RecipeMismatchError:   # a damaged or old recipe: the claim's own checks (and --overwrite) handle it
        return
    if previous is not None and previous.step != recipe.step:
        raise RecipeError(f"{folder} holds step {previous.step}'s outputs ({record_name} says so); step {recipe.step} "
                          "never writes into another step's folder; fix: choose another output folder (--out)")


@contextlib.contextmanager
def claim_output(folder: Path | str, recipe: Recipe, *, overwrite: bool, owned: Owned,
                 record_name: str = RECIPE_JSON, info: Mapping[str, Any] | None = None,
                 shard: tuple[int, int] | None = None, writer: bool = True,
                 what: str = "outputs", recompute: bool = False) -> Iterator[Claim]:
    """Lock ``folder``, check or (``overwrite``) reset it, write ``recipe``; release the lock on exit.

    ``record_name``: the recipe file (step 1 keeps its ``generation.json``). ``shard`` (K, N): a
    ``--shard`` run, whose recipe and lock are its own parts (shards may share a folder) and whose
    ``owned`` must list only its share; a recipe of the whole folder, if any, must match too.
    ``writer=False``: a torchrun rank other than 0 (rank 0 claims the folder): it checks the recipe
    unless ``overwrite``, and never locks or writes. ``recompute``: a step that never continues (4 and
    6 recompute every item from its inputs): nothing is checked or removed, the recipe is recorded.
    """
    folder = Path(folder)
    whole = record_name
    refuse_another_steps_folder(folder, recipe, record_name)
    lock_name = LOCK_NAME
    if shard is not None:
        record_name, lock_name = part_name(record_name, *shard), f"{LOCK_NAME}.part-{shard[0]}-of-{shard[1]}"
    held = FolderLock(folder, lock_name).acquire() if writer else None
    try:
        removed = 0
        if recompute:
            continued = False
        elif overwrite:
            removed = start_over(folder, owned, record_name) if writer else 0
            continued = False
        elif shard is not None and read_recipe(folder / whole) is not None:
            # a merged folder (or a one-process run's): its recipe covers every shard's items
            continued = check_recipe(folder, recipe, owned, whole, what)
            if (folder / record_name).is_file():
                check_recipe(folder, recipe, owned, record_name, what)
        elif shard is None and read_recipe(folder / record_name) is None and shard_recipes(folder, record_name):
            # shards' items (a killed torchrun job's, or --shard runs) continued by one process: each shard's
            # recipe must be this one; then the folder's recipe stands for them
            with merging(folder, recipe, record_name, info, write=False):
                continued = True
        else:
            continued = check_recipe(folder, recipe, owned, record_name, what)
        if writer:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / record_name, recipe.record(info))
            if shard is None:
                for part in shard_recipes(folder, record_name):  # checked above, or removed by overwrite
                    part.unlink(missing_ok=True)
        yield Claim(folder, recipe, continued, removed)
    finally:
        if held is not None:
            held.release()


def part_name(record_name: str, rank: int, world_size: int) -> str:
    """``recipe.part-K-of-N.json``: a shard's recipe, beside the others once folders are copied together."""
    stem, dot, suffix = record_name.rpartition(".")
    return f"{stem}.part-{rank}-of-{world_size}.{suffix}" if dot else f"{record_name}.part-{rank}-of-{world_size}"


def shard_recipes(folder: Path | str, record_name: str = RECIPE_JSON) -> dict[Path, Recipe | None]:
    """Every shard's recipe file in ``folder`` (``NAME.part-K-of-N.json``) with its recipe."""
    folder = Path(folder)
    stem, _, suffix = record_name.rpartition(".")
    if not folder.is_dir():
        return {}
    return {p: read_recipe(p) for p in sorted(folder.glob(f"{stem}.part-*-of-*.{suffix}")) if p.is_file()}


@contextlib.contextmanager
def merging(folder: Path | str, recipe: Recipe, record_name: str = RECIPE_JSON,
            info: Mapping[str, Any] | None = None, write: bool = True) -> Iterator[int]:
    """A shard merge: every shard's recipe (and the folder's own, if any) must be ``recipe`` before the
    merge writes anything; once the merge's body has succeeded the folder's recipe is written and the
    parts removed (a failed merge keeps them, so the shards can resume). Yields how many parts there are."""
    folder = Path(folder)
    parts = shard_recipes(folder, record_name)
    whole = read_recipe(folder / record_name)
    if not parts and whole is None:
        raise RecipeMismatchError(f"{folder} holds no shard's {part_name(record_name, 0, 1).replace('0-of-1', 'K-of-N')} "
                                  f"and no {record_name}: nothing says how its items were made; fix: run every "
                                  "shard (--shard K/N) into it or copy their folders in, then merge")
    for path, found in [*parts.items(), *([(folder / record_name, whole)] if whole is not None else [])]:
        differences = found.differences(recipe) if found is not None else ["unreadable"]
        if differences:
            raise RecipeMismatchError(
                f"{path} was made by another recipe than this merge's ({'; '.join(differences)}): its shard's "
                "items would be mixed with the others'; fix: rerun that shard with the same flags (--overwrite "
                "in its own folder), copy it in again, then merge with the shards' flags")
    yield len(parts)
    if write:
        atomic_write_json(folder / record_name, recipe.record(info))
        for path in parts:
            path.unlink(missing_ok=True)
