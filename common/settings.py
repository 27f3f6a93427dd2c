"""Settings declared once: a config field carries its flag, help, valid range and concept.

Every setting used to be written three times (dataclass field, ``add_argument``, a copy in
``config_from_args``) and its range twice (argparse, ``__post_init__``), and the copies drifted:
``--seed -1`` passed both and crashed in numpy, ``--lr nan`` reached torch. Now a field is declared
with :func:`setting` and the rest is derived from it:

* :func:`add_settings` adds the flags; their argparse type functions refuse NaN/inf and values out
  of range at parse time, in one line naming the flag;
* :func:`config_from_args` builds the config; a flag not given keeps the field's default (defaults
  live in the dataclass only, ``--help`` shows them once);
* :meth:`Settings.__post_init__` checks every field against the same declaration, so a config made
  in code obeys the ranges the flags obey. Cross-field rules go in ``check()``.

Step configs derive from :class:`StepConfig`: ``root`` plus ``resolved()``, the same config with every
default path filled in from ``root`` (the one way defaults are filled).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from common.concepts import CONCEPTS
from common.distributed import parse_shard
from common.local_access import check_allow_hosts
from common.paths import REPO_ROOT, PipelinePaths
from common.steps import StepError

SETTING_KEY = "setting"
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
DEVICE_MISMATCH = "not a device name; use auto, cpu, cuda or cuda:N"
REMOVAL_VERSION = "0.4"


class SettingError(StepError, ValueError):
    """A value outside its declaration (range, choices, NaN): the message names the setting and the rule."""


class OutputNotWritable(StepError):
    """An output file or folder cannot be written (read-only, no permission, a file where a folder goes)."""


@dataclass(frozen=True)
class Setting:
    """How one config field appears to users: its flag and what values it takes.

    ``flag`` None derives ``--field-name`` (or the concept's flag); ``""`` means no flag (a library-only
    setting, still checked). Ranges: ``low``/``high`` inclusive unless ``*_open``. ``words`` maps flag words to
    values (``none`` -> None). ``path``: the ``PipelinePaths`` attribute that ``resolved()`` puts in place of None.
    ``output``: "dir" or "file" when the step writes there (checked writable before the work).
    """

    help: str = ""
    flag: str | None = None
    aliases: tuple[str, ...] = ()        # older spellings: accepted with a one-line note, removed in 0.4
    kept_aliases: tuple[str, ...] = ()   # older spellings outside checks rely on: accepted silently, kept
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None   # allowed values (of each element, for a tuple field)
    words: tuple[tuple[str, Any], ...] = ()  # flag words and the values they stand for
    nonfinite: bool = False                  # NaN / inf allowed (never for a flag value: see _parse)
    pattern: str | None = None               # a text value must match this whole
    mismatch: str | None = None              # the message when the pattern does not match ("must be ...")
    concept: str | None = None               # common.concepts.CONCEPTS key: flag, meaning, default path
    path: str | None = None                  # PipelinePaths attribute: the default filled in by resolved()
    output: str | None = None                # "dir" | "file": written by the step
    fill: bool = True                        # False: resolved() leaves None (an optional input, used when present)
    negate: bool = False                     # a bool defaulting to True: the flag (e.g. --no-sheets) sets False
    off_flag: str | None = None              # a bool: a second flag that sets False (--no-browser)
    both: bool = False                       # a bool: --x and --no-x
    same_as: str | None = None               # when the flag is not given: the value of this other field
    repeat: bool = False                     # the flag may repeat; ``collect`` turns the list into the value
    collect: Callable[[list], Any] | None = None
    element_flags: tuple[str, ...] = ()      # a tuple field filled by one flag per element
    const: Any = None                        # with has_const: the flag takes no value and sets this one
    has_const: bool = False
    metavar: str | None = None
    sep: str = ","                           # separators of a tuple flag's text
    show: str | None = None                  # the default as --help shows it (default: from the value)
    validate: Callable[[Any], Any] | None = None  # a further check of a set value: raises ValueError (its message)

    def __post_init__(self) -> None:
        if self.concept is not None and self.concept not in CONCEPTS:
            raise KeyError(f"unknown concept {self.concept!r}; add it to common.concepts.CONCEPTS")


def setting(default: Any = MISSING, *, default_factory: Any = MISSING, **declaration: Any) -> Any:
    """A dataclass field declared once; ``declaration`` is :class:`Setting`'s fields."""
    if isinstance(declaration.get("words"), Mapping):
        declaration["words"] = tuple(declaration["words"].items())
    meta = {SETTING_KEY: Setting(**declaration)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------
# shared declarations: one each for the settings many steps have


def root_setting() -> Any:
    return setting(REPO_ROOT, concept="root", show="the repository",
                   help="root that every default input/output path is relative to (the demo uses its own)")


def device_setting(default: str = "auto", help: str = "", flag: str | None = None) -> Any:
    """The one ``--device`` declaration: auto | cpu | cuda | cuda:N, checked at parse time. ``flag``: a second
    device of the same step under its own name (step 5's ``--mtcnn-device``), the same values."""
    return setting(default, concept=None if flag else "device", flag=flag, pattern=DEVICE_PATTERN,
                   mismatch=DEVICE_MISMATCH, help=help or ("" if flag is None else CONCEPTS["device"].meaning))


def seed_setting(help: str = "") -> Any:
    return setting(0, concept="seed", low=0, help=help)


def batch_size_setting(default: int, help: str = "") -> Any:
    return setting(default, concept="batch_size", low=1, help=help)


def limit_setting(what: str = "items") -> Any:
    return setting(None, concept="limit", low=1, help=f"process at most N {what} (smoke runs)")


def overwrite_setting(help: str = "") -> Any:
    return setting(False, concept="overwrite", help=help)


def shard_setting() -> Any:
    return setting(None, concept="shard", metavar="K/N", validate=parse_shard)


def host_setting() -> Any:
    """``--host`` of a local page (the labeller, the studio): the rules are ``common.local_access``'s."""
    return setting("127.0.0.1", help="address to bind; keep 127.0.0.1 and use SSH port-forwarding on a server "
                                     "(any other address prints a warning and needs the token the printed URL "
                                     "carries)")


def port_setting(default: int) -> Any:
    return setting(default, low=0, high=65535, help="port (0 = any free port)")


def allow_hosts_setting() -> Any:
    """``--allow-host NAME`` (repeatable, or comma-separated): more names a request's Host header may give."""
    return setting((), flag="--allow-host", repeat=True, metavar="NAME", validate=check_allow_hosts,
                   collect=lambda given: tuple(name for names in given for name in names),
                   help="one more name or address of this server that requests may give in their Host header "
                        "(repeatable; this machine's own names and addresses are allowed already)")


WEIGHTS_CHOICES: tuple[str, ...] = ("auto", "ema", "raw")


def weights_setting(default: str = "auto", choices: tuple[str, ...] = WEIGHTS_CHOICES, help: str = "") -> Any:
    """The one ``--weights`` declaration (ema | raw | auto), the word every step uses for a checkpoint's entry."""
    return setting(default, concept="weights", choices=choices, help=help)


# ----------------------------------------------------------------------------------------------
# the declaration, read back


@dataclass(frozen=True)
class _Kind:
    base: Any                   # int, float, str, Path, bool, tuple, or a Settings subclass
    optional: bool
    element: Any = None         # a tuple's element type
    length: int | None = None   # a fixed tuple length


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _kind(cls: type, name: str) -> _Kind:
    hint, optional = _unwrap(_hints(cls)[name])
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        element = _unwrap(args[0])[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return _Kind(tuple, optional, element)
        return _Kind(tuple, optional, element, len(args))
    return _Kind(hint, optional)


def declaration(config: Any, name: str) -> Setting | None:
    """The Setting of field ``name`` of a config class or instance (None: not declared)."""
    for f in fields(config):
        if f.name == name:
            return f.metadata.get(SETTING_KEY)
    raise KeyError(f"{type(config).__name__} has no field {name!r}")


def declared_fields(cls: type) -> list[tuple[dataclasses.Field, Setting]]:
    return [(f, f.metadata[SETTING_KEY]) for f in fields(cls) if SETTING_KEY in f.metadata]


def flag_of(config: Any, name: str) -> str:
    """The flag users know a field by (``--stylegan-checkpoint``), for messages; the field name if it has none."""
    spec = declaration(config, name)
    if spec is None:
        return name
    return _flag(name, spec) or name


def _flag(name: str, spec: Setting) -> str:
    if spec.flag is not None:
        return spec.flag
    if spec.concept is not None:
        return CONCEPTS[spec.concept].flag
    return "--" + name.replace("_", "-")


def _is_settings_class(base: Any) -> bool:
    return isinstance(base, type) and issubclass(base, Settings)


# ----------------------------------------------------------------------------------------------
# values: parse flag text, check a value against its declaration


def _range_rule(spec: Setting, integer: bool) -> str | None:
    lo, hi = spec.low, spec.high

    def num(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else repr(x)

    if lo is not None and hi is not None:
        if integer and not spec.low_open and not spec.high_open:
            return f"in {num(lo)}..{num(hi)}"
        return f"in {'(' if spec.low_open else '['}{num(lo)}, {num(hi)}{')' if spec.high_open else ']'}"
    if lo is not None:
        return f"{'>' if spec.low_open else '>='} {num(lo)}"
    if hi is not None:
        return f"{'<' if spec.high_open else '<='} {num(hi)}"
    return None


def _problem(spec: Setting, base: Any, value: Any) -> str | None:
    """What is wrong with one (non-None, non-tuple) value, as 'must be ...'; None when it is fine."""
    if base is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if base in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {'an integer' if base is int else 'a number'}"
        if base is int and not isinstance(value, int):
            return "must be an integer"
        if not spec.nonfinite and not math.isfinite(value):
            return "must be a finite number"
        rule = _range_rule(spec, base is int)
        lo_bad = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
        hi_bad = spec.high is not None and (value >= spec.high if spec.high_open else value > spec.high)
        if lo_bad or hi_bad or (math.isnan(value) and rule):
            return f"must be {rule}"
    if spec.choices is not None and value not in spec.choices:
        return f"must be one of {', '.join(map(str, spec.choices))}"
    if spec.pattern is not None:
        if not isinstance(value, str) or not re.fullmatch(spec.pattern, value, re.IGNORECASE):
            return spec.mismatch or f"must match {spec.pattern}"
    return None


def _kind_problem(spec: Setting, kind: _Kind, value: Any) -> str | None:
    """What is wrong with ``value`` for a field of this kind ('must be ...'); None when it is fine."""
    if value is None:
        ok = kind.optional or any(v is None for _, v in spec.words)
        return None if ok else "must be set"
    if _is_settings_class(kind.base):
        return None if isinstance(value, kind.base) else f"must be a {kind.base.__name__}"
    if kind.base is tuple:
        if not isinstance(value, tuple):
            return "must be a tuple"
        if kind.length is not None and len(value) != kind.length:
            return f"needs {kind.length} values"
        for item in value:
            problem = None if item is None else _problem(spec, kind.element, item)
            if problem:
                return f"values {problem} ({item!r} is not)"
        return None
    if kind.base is Path:
        return None if isinstance(value, (str, os.PathLike)) else "must be a path"
    return _problem(spec, kind.base, value)


def _validator_problem(spec: Setting, value: Any) -> str | None:
    if spec.validate is None or value is None:
        return None
    try:
        spec.validate(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check(name: str, spec: Setting, kind: _Kind, value: Any) -> None:
    """Raise SettingError when ``value`` breaks the declaration of field ``name``."""
    problem = _kind_problem(spec, kind, value)
    if problem:
        raise SettingError(f"{name} {problem}, got {value!r}")
    problem = _validator_problem(spec, value)
    if problem:
        raise SettingError(problem)


def _parse_one(base: Any, text: str) -> Any:
    """Flag text -> a value of ``base`` (ValueError with a user's wording otherwise)."""
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("not an integer") from None
    if base is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(value):  # never from a flag: a NaN request has silently meant "not requested"
            raise ValueError("not a finite value")
        return value
    if base is Path:
        return Path(text)
    return text


def _parse_text(spec: Setting, kind: _Kind, text: str) -> Any:
    words = dict(spec.words)
    if text.strip().lower() in words:
        return words[text.strip().lower()]
    if words and kind.base is bool:  # a switch spelled in words (--landmark-judge auto|off)
        raise ValueError(f"must be one of {', '.join(words)}")
    if kind.base is tuple:
        parts = [p.strip() for p in re.split("[" + re.escape(spec.sep) + "]", text) if p.strip()]
        if not parts:
            raise ValueError("needs at least one value")
        if kind.length is not None and len(parts) != kind.length:
            raise ValueError(f"needs {kind.length} values")
        return tuple(_parse_one(kind.element, p) for p in parts)
    value = _parse_one(kind.base, text)
    if spec.pattern == DEVICE_PATTERN:
        value = value.lower()
    return value


def _type_function(flag: str, spec: Setting, kind: _Kind, element: bool = False) -> Callable[[str], Any]:
    """argparse ``type=``: text -> value, or one line '--flag TEXT: problem' (exit 2)."""
    check_kind = _Kind(kind.element, True) if element else kind

    def convert(text: str) -> Any:
        if text.strip().lower() in dict(spec.words):  # a declared word is always a valid flag value
            return dict(spec.words)[text.strip().lower()]
        try:
            value = _parse_text(spec, check_kind, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{flag} {text}: {exc}") from None
        problem = _kind_problem(spec, check_kind, value)
        if spec.output == "dir" and isinstance(value, Path) and value.exists() and not value.is_dir():
            problem = "is a file, not a folder; choose a folder"
        if problem:
            raise argparse.ArgumentTypeError(f"{flag} {text}: {problem}")
        problem = _validator_problem(spec, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = flag
    return convert


def check_settings(config: Any) -> None:
    """Check every declared field of a config (and nested settings) against its declaration."""
    cls = type(config)
    for f, spec in declared_fields(cls):
        _check(f.name, spec, _kind(cls, f.name), getattr(config, f.name))


# ----------------------------------------------------------------------------------------------
# the config bases


@dataclass(frozen=True)
class Settings:
    """A frozen dataclass whose declared fields are checked at construction; ``check()`` adds cross-field rules."""

    def __post_init__(self) -> None:
        check_settings(self)
        self.check()

    def check(self) -> None:
        """Rules between fields (one field's range belongs in its declaration); raise SettingError."""


@dataclass(frozen=True)
class StepConfig(Settings):
    """A step's settings: every input and output, a path None = the pipeline default under ``root``."""

    root: Path = root_setting()
    progress_unit = "img"   # what the step's progress(done, total) counts (the bar's unit; not a setting)

    @property
    def paths(self) -> PipelinePaths:
        return PipelinePaths(Path(self.root).resolve())

    def resolved(self):
        """This config with every default path filled in from ``root`` (same type; idempotent)."""
        paths = self.paths
        filled = {}
        for f, spec in declared_fields(type(self)):
            attr = spec.path or (CONCEPTS[spec.concept].default_path if spec.concept else None)
            value = getattr(self, f.name)
            if attr is not None and value is None and spec.fill:
                filled[f.name] = getattr(paths, attr)
            elif isinstance(value, str) and _kind(type(self), f.name).base is Path:
                filled[f.name] = Path(value)
        return dataclasses.replace(self, **filled) if filled else self


def output_paths(config: Any) -> dict[str, tuple[Path, str]]:
    """flag -> (path, "dir" | "file") of every declared output that is set (call on a resolved config)."""
    out = {}
    for f, spec in declared_fields(type(config)):
        value = getattr(config, f.name)
        if value is None and spec.output and spec.path and hasattr(config, "paths"):
            value = getattr(config.paths, spec.path)  # an unfilled default (it depends on the run): checked too
        if spec.output and value is not None:
            out[_flag(f.name, spec)] = (Path(value), spec.output)
    return out


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_outputs_writable(config: Any) -> None:
    """Before any work: every output folder (or output file's folder) can be created and written.

    Step 5 used to parse every image before its first write failed on a read-only folder. The
    nearest existing folder is asked (``os.access`` and the mount's read-only flag), so nothing is
    created here; a file where a folder must go is refused too.
    """
    for flag, (path, kind) in output_paths(config).items():
        if path.exists() and kind == "dir" and not path.is_dir():
            raise OutputNotWritable(f"{flag} {path} is a file, not a folder; choose a folder")
        if path.exists() and kind == "file" and path.is_dir():
            raise OutputNotWritable(f"{flag} {path} is a folder, not a file; choose a file name")
        probe = path if kind == "dir" else path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise OutputNotWritable(f"{flag} {path}: {probe} is a file, so the folder cannot be made; "
                                    "choose another path")
        if _read_only(probe):
            raise OutputNotWritable(f"{flag} {path}: {probe} is on a read-only file system; choose a writable "
                                    "output and re-run")
        if not os.access(probe, os.W_OK | os.X_OK) or (path.is_file() and not os.access(path, os.W_OK)):
            raise OutputNotWritable(f"{flag} {path}: no permission to write in {probe}; choose another output "
                                    "or fix the folder's permissions, and re-run")


# ----------------------------------------------------------------------------------------------
# flags


class _Store(argparse.Action):
    """Stores a parsed value (appends for a repeated flag, fills one element for an element flag); an
    old spelling prints a one-line note on stderr; ``off`` option strings of a switch store False."""

    def __init__(self, option_strings, dest, *, spec: Setting, main: str, element: int | None = None,
                 off: Sequence[str] = (), **kwargs):
        self.spec, self.main, self.element, self.off = spec, main, element, tuple(off)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.spec.aliases:
            print(f"note: {option_string} is an old spelling of {self.main} here; use {self.main} "
                  f"({option_string} goes in {REMOVAL_VERSION})", file=sys.stderr)
        if self.nargs == 0:
            values = False if option_string in self.off else self.const
        if self.element is not None:
            current = dict(getattr(namespace, self.dest, None) or {})
            current[self.element] = values
            values = current
        elif self.spec.repeat:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


def _shown_default(spec: Setting, kind: _Kind, default: Any) -> str | None:
    if spec.show is not None:
        return spec.show
    if spec.has_const or default is None or default is False or default is True or default == () or _is_settings_class(kind.base):
        return None
    for word, value in spec.words:
        if value == default:
            return word
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default)


def _help_parts(spec: Setting, kind: _Kind, default: Any) -> tuple[str, str | None]:
    """(what the flag does, its default as shown) from the declaration; the default is None when the help
    says it already or there is none to show."""
    text = spec.help or (CONCEPTS[spec.concept].meaning.replace("%", "%%") if spec.concept else "")
    shown = _shown_default(spec, kind, default)
    attr = spec.path or (CONCEPTS[spec.concept].default_path if spec.concept else None)
    if shown is None and attr is not None and default is None:
        relative = getattr(PipelinePaths(Path("/ROOT")), attr).relative_to("/ROOT")
        shown = f"{relative} under --root{'' if spec.fill else ', when it exists'}"
    return text, (None if shown is None or "(default" in text else shown)


def _help(spec: Setting, kind: _Kind, default: Any) -> str:
    text, shown = _help_parts(spec, kind, default)
    return text if shown is None else f"{text} (default: {shown.replace('%', '%%')})"


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


_METAVARS = {Path: "PATH", int: "N", float: "X"}


def add_settings(parser: argparse.ArgumentParser, cls: type, *, skip: Sequence[str] = ()) -> None:
    """Add a flag for every declared field of ``cls`` (and of nested settings), in field order.

    Flags keep argparse's SUPPRESS default: a flag not given leaves the field's default, which
    ``--help`` shows once. ``skip``: fields a script sets itself (none of the step scripts needs it).
    """
    for f, spec in declared_fields(cls):
        if f.name in skip:
            continue
        kind = _kind(cls, f.name)
        if _is_settings_class(kind.base):
            add_settings(parser, kind.base, skip=skip)
            continue
        flag = _flag(f.name, spec)
        if not flag:
            continue
        default = _field_default(f)
        help_text = _help(spec, kind, default)
        names = [flag, *spec.kept_aliases, *spec.aliases]
        common = dict(dest=f.name, default=argparse.SUPPRESS, spec=spec, main=flag)
        if spec.element_flags:
            for index, element_flag in enumerate(spec.element_flags):
                element_help = help_text.replace("{flag}", element_flag.lstrip("-").replace("-", "_"))
                action = parser.add_argument(element_flag, action=_Store, element=index, help=element_help,
                                             type=_type_function(element_flag, spec, kind, element=True),
                                             metavar=spec.metavar, **common)
                action.concept = spec.concept
            continue
        if (kind.base is bool and not spec.words) or spec.has_const:
            const = spec.const if spec.has_const else not spec.negate
            off = [spec.off_flag] if spec.off_flag else (["--no-" + flag[2:]] if spec.both else [])
            action = parser.add_argument(*names, *off, action=_Store, nargs=0, const=const, off=off,
                                         help=help_text, **common)
        else:
            choices = None
            if spec.choices is not None and kind.base is not tuple:
                choices = list(spec.choices) + [w for w, _ in spec.words]
            metavar = spec.metavar or ("{" + ",".join(map(str, choices)) + "}" if choices else _METAVARS.get(kind.base))
            plain_choices = (list(spec.choices) if spec.choices is not None and kind.base is not tuple
                             and not spec.words else None)  # readable on the action; values checked by type=
            action = parser.add_argument(*names, action=_Store, help=help_text, metavar=metavar, choices=plain_choices,
                                         type=_type_function(flag, spec, kind), **common)
        action.concept = spec.concept
        action.declared_help, action.declared_default = _help_parts(spec, kind, default)  # for docs tables


def _element_value(spec: Setting, default: Any, given: Mapping[int, Any]) -> tuple:
    base = default if isinstance(default, tuple) else (None,) * len(spec.element_flags)
    return tuple(given.get(i, base[i]) for i in range(len(spec.element_flags)))


def config_from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """The config of ``cls`` from parsed flags; flags not given keep the field defaults. ``fixed``: set by the script."""
    return cls(**given_values(cls, args, **fixed))


def given_values(cls: type, args: argparse.Namespace, **fixed: Any) -> dict[str, Any]:
    """field -> value of the declared fields of ``cls`` whose flags were given (``config_from_args``'s keywords)."""
    given = vars(args)
    kwargs: dict[str, Any] = {}
    later: list[tuple[str, str]] = []
    for f, spec in declared_fields(cls):
        kind = _kind(cls, f.name)
        if f.name in fixed:
            kwargs[f.name] = fixed[f.name]
        elif _is_settings_class(kind.base):
            kwargs[f.name] = config_from_args(kind.base, args)
        elif f.name in given:
            value = given[f.name]
            if spec.element_flags:
                value = _element_value(spec, _field_default(f), value)
            elif spec.repeat:
                value = spec.collect(value) if spec.collect else tuple(value)
            kwargs[f.name] = value
        elif spec.same_as is not None:
            later.append((f.name, spec.same_as))
    for name, other in later:
        if other in kwargs:
            kwargs[name] = kwargs[other]
    return kwargs


def parser_concepts(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    """option string -> the concept its action declares (None: a flag of no concept)."""
    return {option: getattr(action, "concept", None) for option, action in parser._option_string_actions.items()}
