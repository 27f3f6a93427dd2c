"""Every checkpoint the pipeline reads goes through here: what each pre-trained file is and where to
get it, the one safe reader, and the one report of how a state_dict fits a model.

* :class:`CheckpointInfo`: what a file is, where it goes, how to get it, kept as data next to the
  path (the torchvision ``Weights`` habit), so every "missing" or "wrong file" message says the same.
* :func:`read_checkpoint`: existence, "is this a checkpoint at all", then ``torch.load(weights_only=True)``.
  A refused file is explained by the globals it asks for (listed without unpickling,
  ``common.pickle_globals``); torch's advice to turn ``weights_only`` off is never repeated. With
  ``trust=True`` (``--trust-checkpoint``) a short documented list of plain types
  (:data:`TRUSTED_EXTRA_GLOBALS`) is allowed as well, never code.
* :func:`check_state_dict_fits` / :func:`load_state_dict_checked`: missing, unexpected, wrong-shape
  and wrong-dtype keys in one line, then finite weights, then a strict load.
"""
from __future__ import annotations

import logging
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.pickle_globals import PickleScanError, is_code_global, is_zip_file, list_globals
from common.steps import StepError

logger = logging.getLogger(__name__)


class CheckpointError(StepError, RuntimeError):
    """A checkpoint is missing, unreadable or not the expected model; the message says what to do."""


@dataclass(frozen=True)
class CheckpointInfo:
    name: str
    contract_path: str  # relative to the repository root
    what: str
    how_to_get: str
    approx_size: str
    sha256: str | None = None
    size_bytes: int | None = None

    def describe(self) -> str:
        # "default path", not "expected at": the first line of every message names the path actually given
        text = (f"{self.name}: {self.what}\n  default path: {self.contract_path} (about {self.approx_size}; "
                f"a step's checkpoint flag names another)\n  how to get it: {self.how_to_get}")
        if self.sha256:
            text += f"\n  sha256: {self.sha256}"
        return text


STYLEGAN_CELEBA_PARTIAL_256 = CheckpointInfo(
    name="genforce StyleGAN celeba-partial-256x256",
    contract_path="stylegan/stylegan_model.pth",
    what=("genforce's StyleGAN (v1) checkpoint 'stylegan_celeba_partial256.pth': a dict with "
          "'generator', 'discriminator' and usually 'generator_smooth' state_dicts (possibly nested "
          "under 'models'), resolution 256, all genforce defaults"),
    how_to_get=("genforce's official download links are dead; copy your own copy of "
                "stylegan_celeba_partial256.pth to this path by hand (python download_models.py explains)"),
    approx_size="300 MB",
)

FACEXFORMER = CheckpointInfo(
    name="FaceXFormer",
    contract_path="segmentation/models/segmentation_model.pt",
    what="the official FaceXFormer checkpoint ckpts/model.pt (dict with 'state_dict_backbone', 505 keys)",
    how_to_get=("python download_models.py (Hugging Face repo kartiknarayan/facexformer, file ckpts/model.pt), "
                "or download that file by hand and save it under this name"),
    approx_size="1.1 GB (1,104,869,851 bytes)",
    sha256="327a755849ba64d336fb96589ff87b27e84a12be1ecf8bcfaa503d66f803286d",
    size_bytes=1_104_869_851,
)


def require_file(path: Path | str, info: CheckpointInfo) -> Path:
    """Return ``path`` if it is a non-empty file, else raise a CheckpointError explaining what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}\n{info.describe()}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}\n{info.describe()}")
    return path


# --- "is this file a checkpoint at all?" --------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_BYTE = 0x80  # torch's legacy (non-zip) format starts with a pickle


def sniff_non_checkpoint(path: Path | str) -> str | None:
    """What a file looks like when it is clearly not a PyTorch checkpoint, else None.

    Reads the first 4 KB (and, for a zip, its central directory). Checked before ``torch.load``
    because torch's own errors for these files (``KeyError: 101``, "weights only load failed")
    blame the wrong thing, and would send a user to an unsafe ``--trust-checkpoint``.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(_ZIP_MAGIC):
        return None if is_zip_file(path) else "a truncated or corrupt zip (an interrupted download or copy)"
    if head[:1] and head[0] == _PICKLE_PROTOCOL_BYTE:
        return None
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (the real file was never fetched: run `git lfs pull` or download it)"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")) or b"<html" in lowered[:512]:
        return "an HTML page (the download link answered with a web page, not the file)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "plain text"
    return "random bytes (neither a zip nor a pickle)"


def not_a_checkpoint_error(path: Path | str, looks_like: str, fix: str) -> CheckpointError:
    """The one-line error for a file that is not a checkpoint: file, what it looks like, the fix."""
    size = Path(path).stat().st_size
    return CheckpointError(f"{path} ({size:,} bytes) is not a PyTorch checkpoint: it looks like {looks_like}; "
                           f"fix: {fix}")


def check_finite_tensors(tensors: dict, path: Path | str, fix: str, entry: str = "") -> None:
    """Refuse NaN/inf weights at load time, before any output is written (one line, names the file)."""
    import torch

    bad = [k for k, v in tensors.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        where = f" [{entry}]" if entry else ""
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{path}{where} holds NaN or infinite weights in {len(bad)} tensors ({shown}): "
                              f"the file is corrupt or came from a diverged run; fix: {fix}")


# --- the one reader --------------------------------------------------------------------------------

TRUSTED_EXTRA_GLOBALS: tuple[str, ...] = (
    "argparse.Namespace",
    "numpy.dtype", "numpy.ndarray",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
)
"""What ``--trust-checkpoint`` allows beyond torch's own safe globals (tensors, storages, dtypes,
``OrderedDict``, ``set``...), plus numpy's numeric dtype classes (``numpy.dtypes.Float64DType``...).

Each only holds data and runs nothing when rebuilt: ``argparse.Namespace`` is the ``args`` that
training scripts (torchvision's references, FaceXFormer's) save beside the weights; numpy scalars,
dtypes and arrays are how ``best_acc = np.float64(...)`` or a saved array come back. Anything else
stays refused with the flag; docs/checkpoints.md says how to report a type a real checkpoint needs.
"""


def _numpy_dtype_classes() -> dict[str, Any]:
    import numpy as np

    dtypes = getattr(np, "dtypes", None)
    if dtypes is None:  # numpy < 1.25
        return {}
    names = ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float16",
             "Float32", "Float64", "LongDouble", "Complex64", "Complex128")
    return {f"numpy.dtypes.{n}DType": getattr(dtypes, f"{n}DType") for n in names if hasattr(dtypes, f"{n}DType")}


def trusted_extra_objects() -> dict[str, Any]:
    """:data:`TRUSTED_EXTRA_GLOBALS` (and numpy's dtype classes) by the name a pickle uses for each."""
    import argparse

    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    objects: dict[str, Any] = {"argparse.Namespace": argparse.Namespace, "numpy.dtype": np.dtype,
                               "numpy.ndarray": np.ndarray}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        objects[f"{module}.scalar"] = multiarray.scalar
        objects[f"{module}._reconstruct"] = multiarray._reconstruct
    objects.update(_numpy_dtype_classes())
    return objects


def torch_safe_global_names() -> frozenset[str]:
    """The globals ``torch.load(weights_only=True)`` allows by itself (and any the process added).

    Used to word a refusal, never to decide what loads (torch's unpickler decides that)."""
    import torch

    added = {f"{g.__module__}.{g.__name__}" if not isinstance(g, tuple) else g[1]
             for g in torch.serialization.get_safe_globals()}
    try:  # torch's own list is private; its public get_unsafe_globals_in_checkpoint reads zip files only
        from torch._weights_only_unpickler import _get_allowed_globals
    except ImportError:  # a torch without it: its tensor and storage rebuilders, as torch 2.x allows them
        own = {"collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.complex",
               "builtins.bytearray", "_codecs.encode", "torch.Size", "torch.Tensor", "torch.device"}
        return frozenset(own | added)
    return frozenset(_get_allowed_globals()) | frozenset(added)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_TORCH_ADVICE = re.compile(r"weights_only|safe_globals|allowlist|documentation|docs\.pytorch|trust|file an issue",
                          re.IGNORECASE)
_OPERAND = re.compile(r"Unsupported operand (\d+)")


def torch_refusal_reason(exc: BaseException) -> str:
    """torch's own reason for refusing a file, whole, without its advice to load it unsafely."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    sentences = [s.strip() for line in text.splitlines() for s in re.split(r"(?<=[.;])\s+", line)]
    reason = " ".join(s for s in sentences if s and not _TORCH_ADVICE.search(s)) or type(exc).__name__
    operand = _OPERAND.search(reason)
    if operand:  # name the opcode: "149" alone helps nobody
        import pickletools

        names = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
        op = names.get(int(operand.group(1)))
        if op is not None:
            reason += f" (pickle opcode {op.name} of protocol {op.proto}; torch.save writes protocol 2)"
    return reason


def _missing_message(path: Path, info: CheckpointInfo | str, kind: str) -> str:
    if isinstance(info, CheckpointInfo):
        return f"{kind} not found: {path}\n{info.describe()}"
    return f"{kind} not found: {path}; fix: {info}"


def _torch_load(path: Path, mmap: bool) -> Any:
    import warnings

    import torch

    with warnings.catch_warnings():  # a refusal below says what matters in one line
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


_UNREADABLE = (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, IndexError, OSError, struct.error,
               AssertionError)
"""What ``torch.load`` raises for a truncated or corrupt file (its C++ zip reader: RuntimeError; the legacy
reader: struct.error for a cut storage, AssertionError for a storage key that is not in the file).
Caught around ``torch.load`` alone, so each one is about the file."""


def read_checkpoint(path: Path | str, info: CheckpointInfo | str, *, trust: bool | None = None,
                    kind: str = "checkpoint", mmap: bool = False) -> Any:
    """The content of a checkpoint, loaded safely, or a one-line :class:`CheckpointError`.

    info: the :class:`CheckpointInfo` of a pre-trained file, or the fix (one sentence) for a file
    the pipeline writes. trust: ``None`` when the caller has no ``--trust-checkpoint``, ``False``
    when it has one that is off (a refused file of allowed types then names the flag), ``True``
    to allow :data:`TRUSTED_EXTRA_GLOBALS` too (logged). A global that can run code is refused
    whatever ``trust`` says. kind: how messages name the file ("directions file"). mmap: map a
    zip file's tensors instead of reading them (large files).
    """
    path = Path(path)
    fix = info.how_to_get if isinstance(info, CheckpointInfo) else info
    if not path.is_file():
        raise CheckpointError(_missing_message(path, info, kind))
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{kind} is empty (0 bytes): {path}; fix: {fix}")
    looks_like = sniff_non_checkpoint(path)
    if looks_like:
        _refuse_code_pickle(path, kind, fix)  # a protocol-0/1 pickle looks like text or bytes: name its code
        raise not_a_checkpoint_error(path, looks_like, fix)
    mmap = mmap and is_zip_file(path)  # torch maps only its zip format
    try:
        return _torch_load(path, mmap)
    except pickle.UnpicklingError as exc:
        refusal = exc
    except _UNREADABLE as exc:
        raise CheckpointError(f"{path} ({size:,} bytes) is not a readable {kind} (truncated or corrupt?): "
                              f"{_first_line(exc)}; fix: {fix}") from None
    return _read_refused(path, refusal, trust=trust, kind=kind, fix=fix, mmap=mmap)


def _code_refusal(path: Path, code: list[str], kind: str, fix: str) -> CheckpointError:
    return CheckpointError(f"{path}: this file asks to run code ({', '.join(code[:4])}); it is not a {kind}: "
                           f"do not load it with any tool; fix: {fix}")


def _refuse_code_pickle(path: Path, kind: str, fix: str) -> None:
    """Raise the code refusal when the file decodes as a pickle that asks for code (never unpickled)."""
    try:
        code = [name for name in list_globals(path) if is_code_global(name)]
    except PickleScanError:
        return
    if code:
        raise _code_refusal(path, code, kind, fix)


def _read_refused(path: Path, refusal: BaseException, *, trust: bool | None, kind: str, fix: str,
                  mmap: bool) -> Any:
    """Name what the refused file asks for; load it restricted when trusted and only plain types are asked."""
    import torch

    try:
        asked = list_globals(path)
    except PickleScanError as exc:
        raise CheckpointError(f"{path} is not a readable {kind}: {str(exc).removeprefix(f'{path}: ')}; "
                              f"fix: {fix}") from None
    code = [name for name in asked if is_code_global(name)]
    if code:
        raise _code_refusal(path, code, kind, fix)
    if _OPERAND.search(str(refusal)):  # the pickle itself, not its types, is what torch cannot read
        raise CheckpointError(f"{path} is not a readable {kind}: the safe loader refused it "
                              f"({torch_refusal_reason(refusal)}); fix: {fix}")
    safe = torch_safe_global_names()
    unknown = [name for name in asked if name not in safe]
    extra = trusted_extra_objects()
    outside = [name for name in unknown if name not in extra]
    if outside:
        flag = ("; --trust-checkpoint would not help: it allows only a few plain types "
                "(docs/checkpoints.md says how to report one a real checkpoint needs)") if trust is not None else ""
        raise CheckpointError(f"{path} holds Python objects of types the safe loader does not allow "
                              f"({', '.join(outside[:6])}){flag}; fix: re-save only its tensors "
                              "(torch.save(model.state_dict(), path)) in the Python session that made it")
    if not unknown:  # refused for another reason: an opcode torch does not read, a malformed record
        raise CheckpointError(f"{path} is not a readable {kind}: the safe loader refused it "
                              f"({torch_refusal_reason(refusal)}); fix: {fix}")
    names = ", ".join(unknown)
    if not trust:
        hint = ("if you trust its source, --trust-checkpoint loads it with these plain types allowed (never code)"
                if trust is False else
                "fix: re-save only its tensors (torch.save(model.state_dict(), path)) in the Python session that made it")
        raise CheckpointError(f"{path} holds Python objects besides tensors ({names}); {hint}")
    logger.warning("%s: --trust-checkpoint allowed %s (plain types, besides torch's tensor types)", path, names)
    # the whole list, not only the names asked for: rebuilding one (numpy.dtype) builds another (Float64DType)
    with torch.serialization.safe_globals([(obj, name) for name, obj in extra.items()]):
        try:
            return _torch_load(path, mmap)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(f"{path} is not a readable {kind}, even with --trust-checkpoint: "
                                  f"{torch_refusal_reason(exc)}; fix: {fix}") from None
        except _UNREADABLE as exc:
            raise CheckpointError(f"{path} is not a readable {kind} (truncated or corrupt?): {_first_line(exc)}; "
                                  f"fix: {fix}") from None


# --- the one state_dict fit report -----------------------------------------------------------------

def _short(items: list[str], limit: int) -> str:
    return "; ".join(items[:limit]) + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def dtype_fits(found: Any, expected: Any) -> bool:
    """Whether a file's tensor may be copied into a model's: floats into floats (fp16/bf16 -> fp32 is
    exact, fp64 rounds to the model's precision), integers into integers when every value survives,
    bool into bool. An integer tensor where the model has a float one is refused: it is not weights."""
    import torch

    if expected.is_floating_point() or expected.is_complex():
        return found.is_floating_point() == expected.is_floating_point() and found.is_complex() == expected.is_complex()
    if expected.dtype == torch.bool or found.dtype == torch.bool:
        return found.dtype == expected.dtype
    if found.is_floating_point() or found.is_complex():
        return False
    return found.device.type == "meta" or bool(torch.equal(found.to(expected.dtype).to(found.dtype), found))


def state_dict_problems(expected: Mapping[str, Any], found: Mapping[str, Any], limit: int = 8) -> list[str]:
    """Missing, unexpected, wrong-shape, wrong-dtype and non-tensor keys of ``found`` (empty when it fits).

    expected: a model's ``state_dict()`` (meta tensors are fine: only shape and dtype are read).
    """
    import torch

    missing = [k for k in expected if k not in found]
    unexpected = [str(k) for k in found if k not in expected]
    present = [k for k in expected if k in found]
    not_tensors = [k for k in present if not isinstance(found[k], torch.Tensor)]
    tensors = [k for k in present if isinstance(found[k], torch.Tensor)]
    shapes = [f"{k} (file {list(found[k].shape)}, expected {list(expected[k].shape)})"
              for k in tensors if tuple(found[k].shape) != tuple(expected[k].shape)]
    dtypes = [f"{k} (file {str(found[k].dtype).removeprefix('torch.')}, "
              f"expected {str(expected[k].dtype).removeprefix('torch.')})"
              for k in tensors if not dtype_fits(found[k], expected[k])]
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes),
                         ("wrong dtype", dtypes), ("not a tensor", not_tensors)):
        if items:
            problems.append(f"{len(items)} {title}: {_short(items, limit)}")
    if unexpected and all(k.startswith("module.") for k in unexpected):
        problems.append("(the keys start with 'module.': saved from a DataParallel wrapper)")
    return problems


def check_state_dict_fits(expected: Mapping[str, Any], found: Any, path: Path | str, fix: str, *,
                          entry: str = "", what: str = "the model") -> None:
    """Refuse, in one line naming file and entry, a state_dict that does not fit ``expected``."""
    where = f" [{entry}]" if entry else ""
    if found is None and entry:
        raise CheckpointError(f"{path} has no {entry!r} entry; fix: {fix}")
    if not isinstance(found, Mapping):
        raise CheckpointError(f"{path}{where} is not a state_dict (a dict of tensors) but a "
                              f"{type(found).__name__}; fix: {fix}")
    problems = state_dict_problems(expected, found)
    if problems:
        raise CheckpointError(f"{path}{where} does not fit {what}: {'; '.join(problems)}; fix: {fix}")


def load_state_dict_checked(model: Any, state_dict: Any, path: Path | str, fix: str, *, entry: str = "",
                            what: str = "the model") -> None:
    """The fit report, then finite weights, then a strict load: every failure is one named line."""
    check_state_dict_fits(model.state_dict(), state_dict, path, fix, entry=entry, what=what)
    check_finite_tensors(state_dict, path, fix, entry)
    model.load_state_dict(state_dict, strict=True)
