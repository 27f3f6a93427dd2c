"""The Python globals a pickle (or a ``torch.save`` file) asks for, listed without unpickling it.

A refused checkpoint is explained by naming what it asks for: ``posix.system`` is an attack, not a
checkpoint, while ``argparse.Namespace`` is a training script's saved arguments. The opcodes are
read with :func:`pickletools.genops`, which decodes and never executes, so a hostile file can be
described safely. Which globals may then be *loaded* is decided elsewhere (``common.checkpoints``):
this module only names them and says which ones can run code.
"""
from __future__ import annotations

import io
import pickletools
import zipfile
from collections.abc import Iterator
from pathlib import Path

UNNAMED_GLOBAL = "<a global computed while loading>"
"""Stands for a ``STACK_GLOBAL`` whose name is not a plain string pushed just before it, or an
``EXT*`` registry code: it cannot be named without running the pickle, so it counts as code."""

_LEGACY_PICKLES = 4
"""torch's legacy (non-zip) format: magic number, protocol, sys info, then the object's pickle."""

# --- which globals can run code ------------------------------------------------------------------
CODE_MODULES = frozenset({
    # processes, shells and the OS
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "shutil", "signal", "resource", "fcntl",
    "platform", "sys", "ctypes", "_ctypes", "mmap", "multiprocessing", "_thread", "threading", "asyncio",
    # importing and running code
    "builtins", "__builtin__", "__builtins__", "importlib", "imp", "runpy", "pkgutil", "zipimport", "code",
    "codeop", "types", "inspect", "gc", "operator", "functools",
    # debuggers, profilers and test runners evaluate source strings
    "pdb", "bdb", "timeit", "trace", "profile", "cProfile", "doctest", "pydoc",
    # nested unpicklers and serialisers
    "pickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "yaml",
    # files and the network
    "io", "_io", "tempfile", "glob", "socket", "_socket", "ssl", "select", "selectors", "http", "urllib",
    "ftplib", "smtplib", "telnetlib", "webbrowser", "requests",
    # installers
    "pip", "ensurepip", "setuptools", "distutils", "venv",
})
"""Top-level modules whose globals can run code, touch files or the network, or unpickle further."""

CODE_MODULE_PATHS = frozenset({
    "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension", "torch._C", "torch.ops",
    "torch.classes", "torch._dynamo", "torch.compiler", "torch.distributed", "torch.multiprocessing",
    "numpy.lib", "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing", "pandas.io",
})
"""Modules (and their submodules) of libraries a checkpoint legitimately names, that load or run code."""

CODE_FUNCTIONS = frozenset({
    "torch.load", "torch.serialization.load", "torch.save", "torch.serialization.save",
    "torch.storage._load_from_bytes", "numpy.load",
    "numpy.save", "numpy.fromfile", "numpy.loadtxt", "numpy.genfromtxt", "pandas.read_pickle",
})
"""Single functions that read or write files (and may unpickle again)."""


def is_code_global(name: str) -> bool:
    """Whether a global named by :func:`list_globals` can run code (or cannot be named, or is an attribute chain).

    Errs towards "code": a wrong "code" only changes a refusal's wording, never lets a file load.
    """
    if name == UNNAMED_GLOBAL or ":" in name or " " in name or not name:
        return True  # unnamed, or an attribute chain (module:a.b) that can reach anything
    module = name.rpartition(".")[0]
    if not module:
        return True  # a bare name is no importable global
    root = module.split(".", 1)[0]
    if root in CODE_MODULES or name in CODE_FUNCTIONS:
        return True
    return any(module == path or module.startswith(path + ".") for path in CODE_MODULE_PATHS)


# --- listing ------------------------------------------------------------------------------------
class PickleScanError(ValueError):
    """The file's pickle stream cannot be decoded (corrupt or not a pickle); the message says where."""


_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                         "SHORT_BINSTRING"})
_MEMO_STORE_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NO_PUSH_OPS = frozenset({"PROTO", "FRAME", "STOP"})
_MARK = object()


def global_name(module: str, qualname: str) -> str:
    """``module.name`` as Python writes it; ``module:a.b`` when the name is an attribute chain (which
    the unpickler follows with getattr, so ``torch.serialization:os.system`` is ``os.system``)."""
    return f"{module}:{qualname}" if "." in qualname else f"{module}.{qualname}"


def _globals_of_one_pickle(stream: io.IOBase) -> Iterator[str]:
    """Globals of the pickle starting at the stream's position (which is left after its STOP)."""
    stack: list[object] = []   # a rough model of the stack: only strings are tracked exactly
    memo: dict[int, object] = {}
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            yield global_name(module, qualname)
            stack.append(None)
        elif name == "STACK_GLOBAL":
            parts = stack[-2:]
            del stack[-2:]
            if len(parts) == 2 and all(isinstance(p, str) for p in parts):
                yield global_name(*parts)
            else:
                yield UNNAMED_GLOBAL
            stack.append(None)
        elif name in ("EXT1", "EXT2", "EXT4"):
            yield UNNAMED_GLOBAL
            stack.append(None)
        elif name in _STRING_OPS:
            stack.append(arg if isinstance(arg, str) else None)
        elif name in _MEMO_STORE_OPS:
            key = len(memo) if name == "MEMOIZE" else arg
            memo[key] = stack[-1] if stack else None
        elif name in _MEMO_GET_OPS:
            stack.append(memo.get(arg))
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "POP":
            if stack:
                stack.pop()
        elif name == "POP_MARK":
            while stack and stack.pop() is not _MARK:
                pass
        elif name == "DUP":
            stack.append(stack[-1] if stack else None)
        elif name not in _NO_PUSH_OPS:
            stack.append(None)


def _has_more(stream: io.IOBase) -> bool:
    position = stream.tell()
    more = bool(stream.read(1))
    stream.seek(position)
    return more


def _scan(stream: io.IOBase, where: str, max_pickles: int) -> list[str]:
    found: dict[str, None] = {}
    for index in range(max_pickles):
        if index and not _has_more(stream):
            break
        try:
            for name in _globals_of_one_pickle(stream):
                found.setdefault(name)
        except (ValueError, EOFError) as exc:
            if index == 0:  # the object's own pickle must decode; later ones may be raw tensor bytes
                raise PickleScanError(f"{where}: the pickle cannot be decoded ({exc})") from None
            break
    return list(found)


def is_zip_file(path: Path | str) -> bool:
    """``zipfile.is_zipfile`` that answers False for a damaged zip instead of raising ``BadZipFile``."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile:  # e.g. "zipfiles that span multiple disks": a corrupt end record
        return False


def list_globals(path: Path | str) -> list[str]:
    """Every global the file asks for, in first-seen order, without unpickling anything.

    A torch zip file: the globals of each ``*.pkl`` record (``archive/data.pkl``); a legacy torch
    file or a plain pickle: those of its leading pickles. Raises :class:`PickleScanError` when the
    stream cannot be decoded.
    """
    path = Path(path)
    if is_zip_file(path):
        found: dict[str, None] = {}
        try:
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        with archive.open(member) as raw:  # streamed: a huge record is never held
                            for name in _scan(raw, f"{path}:{member}", 1):
                                found.setdefault(name)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise PickleScanError(f"{path}: the zip cannot be read ({exc})") from None
        return list(found)
    with open(path, "rb") as handle:
        return _scan(handle, str(path), _LEGACY_PICKLES)
