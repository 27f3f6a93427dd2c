"""What one studio view is: method, seed, five requested values, truncation, layers, strip size.

One frozen dataclass (:class:`ViewParams`) travels everywhere: parsed from the page's URL query
(every bad value is a :class:`ParamError` naming the key and what is allowed, which the server
turns into a 400), written back to a query string (the page keeps its state in the URL, so a link
reproduces the view), and embedded in saved PNGs as JSON (so a saved face regenerates exactly).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from common.paths import PROPERTY_NAMES

REFINED = "directions+refine"
"""Latent directions whose edit the step-7b regressor refines (steps 8 and 9's label; ``stylegan.refine``)."""
METHODS: tuple[str, ...] = ("directions", REFINED, "sefa", "finetuned", "both")
"""``sefa``: step 7a's SeFa directions through the same edit as ``directions``; ``both`` renders latent
directions and the fine-tune side by side for the same latent."""
SINGLE_METHODS: tuple[str, ...] = ("directions", REFINED, "sefa", "finetuned")
BOTH: tuple[str, ...] = ("directions", "finetuned")
LAYER_CHOICES: tuple[str, ...] = ("auto", "all", "coarse", "middle", "fine")
"""Synthesis layers an edit of w reaches (directions only); ``auto`` = step 7's per-property choice."""
MAX_SEED = 2**31 - 1
MAX_STRIP = 16
_RANGE_TOLERANCE = 1e-6

Ranges = Mapping[str, tuple[float, float]]


class ParamError(ValueError):
    """A query value the studio cannot use; the message names the key, the value and what is allowed.

    ``key``: the query key at fault (None when no single key is), so the page can show the message
    next to that control and correct it there.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ViewParams:
    """One view of the studio.

    method: directions | directions+refine | sefa | finetuned | both.   seed: which face; z = ``z_for(0, seed)``, i.e. image
    ``seed`` of a default step-1 run.   values: requested value per property (``PROPERTY_NAMES``
    order, step 6's scale), None = no request (latent directions leave it free or held, the
    fine-tune uses its training median).   psi / trunc_layers: truncation towards w_avg on the
    first ``trunc_layers`` synthesis layers (psi 1 = none).   layers: which synthesis layers an
    edit of w reaches.   strip: faces in the view (seeds seed .. seed+strip-1, one batch).
    """

    method: str = "directions"
    seed: int = 0
    values: tuple[float | None, ...] = field(default=(None,) * len(PROPERTY_NAMES))
    psi: float = 1.0
    trunc_layers: int = 0
    layers: str = "auto"
    strip: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ParamError(f"method must be one of {METHODS}, got {self.method!r}", "method")
        if not 0 <= self.seed <= MAX_SEED:
            raise ParamError(f"seed must be in 0..{MAX_SEED}, got {self.seed}", "seed")
        if len(self.values) != len(PROPERTY_NAMES):
            raise ParamError(f"values must have {len(PROPERTY_NAMES)} entries ({', '.join(PROPERTY_NAMES)})")
        for name, value in zip(PROPERTY_NAMES, self.values):
            if value is not None and not math.isfinite(value):
                raise ParamError(f"{name} must be a finite number or empty (no request), got {value!r}", name)
        if not (math.isfinite(self.psi) and 0.0 <= self.psi <= 1.0):
            raise ParamError(f"psi must be in [0, 1], got {self.psi!r}", "psi")
        if self.trunc_layers < 0:
            raise ParamError(f"trunc_layers must be >= 0, got {self.trunc_layers}", "trunc_layers")
        if self.layers not in LAYER_CHOICES:
            raise ParamError(f"layers must be one of {LAYER_CHOICES}, got {self.layers!r}", "layers")
        if not 1 <= self.strip <= MAX_STRIP:
            raise ParamError(f"strip must be in 1..{MAX_STRIP}, got {self.strip}", "strip")

    @property
    def methods(self) -> tuple[str, ...]:
        """The single methods this view renders (``both`` -> directions, finetuned)."""
        return BOTH if self.method == "both" else (self.method,)

    @property
    def targets(self) -> list[float]:
        """Requested values with NaN for no request (the ``edit``/``render`` convention)."""
        return [math.nan if v is None else float(v) for v in self.values]

    def with_method(self, method: str) -> ViewParams:
        return replace(self, method=method)

    def check_against(self, ranges: Ranges, num_layers: int, available: Sequence[str]) -> None:
        """Values inside the trained ranges, trunc_layers <= the generator's layers, method loaded."""
        for method in self.methods:
            if method not in available:
                have = ", ".join(available) or "none"
                raise ParamError(f"method {method!r} is not loaded in this studio (available: {have}); "
                                 "run its step 7 script first", "method")
        for name, value in zip(PROPERTY_NAMES, self.values):
            low, high = ranges[name]
            if value is not None and not low - _RANGE_TOLERANCE <= value <= high + _RANGE_TOLERANCE:
                raise ParamError(f"{name}={value:g} is outside its trained range [{low:g}, {high:g}]", name)
        if self.trunc_layers > num_layers:
            raise ParamError(f"trunc_layers must be in 0..{num_layers} (the generator's synthesis layers), "
                             f"got {self.trunc_layers}", "trunc_layers")

    # --- the URL query --------------------------------------------------------------------------
    def to_query(self) -> str:
        """The page's URL query for this view (properties with no request are left empty)."""
        items: list[tuple[str, str]] = [("method", self.method), ("seed", str(self.seed))]
        items += [(name, "" if v is None else _fmt(v)) for name, v in zip(PROPERTY_NAMES, self.values)]
        items += [("psi", _fmt(self.psi)), ("trunc_layers", str(self.trunc_layers)), ("layers", self.layers),
                  ("strip", str(self.strip))]
        return urlencode(items)

    def to_json(self) -> dict[str, Any]:
        """Plain dict (the PNG text chunk); values by property name, None = no request."""
        data = asdict(self)
        data["values"] = dict(zip(PROPERTY_NAMES, self.values))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ViewParams:
        if not isinstance(data, Mapping):
            raise ParamError("view parameters must be a JSON object")
        values = data.get("values", {})
        if not isinstance(values, Mapping) or set(values) != set(PROPERTY_NAMES):
            raise ParamError(f"values must name exactly {list(PROPERTY_NAMES)}")
        try:
            return cls(method=str(data["method"]), seed=int(data["seed"]),
                       values=tuple(None if values[n] is None else float(values[n]) for n in PROPERTY_NAMES),
                       psi=float(data["psi"]), trunc_layers=int(data["trunc_layers"]),
                       layers=str(data["layers"]),
                       strip=int(data.get("strip", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ParamError):
                raise
            raise ParamError(f"view parameters incomplete or mistyped: {exc}") from None


_INT_KEYS = ("seed", "trunc_layers", "strip")
_FLOAT_KEYS = ("psi",)
_STR_KEYS = ("method", "layers")
QUERY_KEYS: tuple[str, ...] = _STR_KEYS + _INT_KEYS + _FLOAT_KEYS + PROPERTY_NAMES
_MAX_VALUE_CHARS = 32


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float (repr), so URLs and PNGs round-trip exactly."""
    return repr(float(value))


def parse_query(query: Mapping[str, Sequence[str]], extra_keys: Sequence[str] = (),
                defaults: ViewParams = ViewParams()) -> ViewParams:
    """``urllib.parse.parse_qs(..., keep_blank_values=True)`` output -> ViewParams.

    Absent keys take ``defaults``; unknown or repeated keys, non-numbers, NaN/inf and values
    out of range raise :class:`ParamError` (a 400 with the message, never a 500). ``extra_keys``
    are allowed and ignored here (e.g. ``face`` of the save route).
    """
    unknown = sorted(set(query) - set(QUERY_KEYS) - set(extra_keys))
    if unknown:
        allowed = ", ".join(QUERY_KEYS + tuple(extra_keys))
        raise ParamError(f"unknown query key {unknown[0][:40]!r}; allowed: {allowed}")
    fields: dict[str, Any] = {}
    for key, texts in query.items():
        if key in extra_keys:
            continue
        if len(texts) != 1:
            raise ParamError(f"query key {key!r} given {len(texts)} times; give it once", key)
        text = texts[0].strip()
        if len(text) > _MAX_VALUE_CHARS:
            raise ParamError(f"{key} value too long ({len(text)} characters)", key)
        if key == "method":   # a "+" typed into a URL arrives as a space: "directions refine"
            fields[key] = text.replace(" ", "+")
        elif key in _STR_KEYS:
            fields[key] = text
        elif key in _INT_KEYS:
            try:
                fields[key] = int(text)
            except ValueError:
                raise ParamError(f"{key} must be an integer, got {text!r}", key) from None
        else:
            fields[key] = _parse_float(key, text, allow_empty=key in PROPERTY_NAMES)
    values = tuple(fields.pop(name) if name in fields else default
                   for name, default in zip(PROPERTY_NAMES, defaults.values))
    return replace(defaults, values=values, **fields)


def _parse_float(key: str, text: str, allow_empty: bool) -> float | None:
    if text == "" and allow_empty:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ParamError(f"{key} must be a number{' or empty (no request)' if allow_empty else ''}, "
                         f"got {text!r}", key) from None
    if not math.isfinite(value):
        raise ParamError(f"{key} must be finite, got {text!r}", key)
    return value
