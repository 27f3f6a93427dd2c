"""Frames of one face: exact (full size) or preview (the synthesis network's own 64 px output), cached by content.

A face is a generator plus its ``wp`` [1, L, D] (w per synthesis layer, after the edit and the
truncation). Layer i's output depends only on ``wp[:, :i+1]``, so an activation is cached under
the digest of the w rows that made it: the base face of an unchanged seed is never rendered again,
and a directions edit that starts at layer k (a layer range) resumes from the base's activation
before layer k. Every face is rendered as a batch of one, on one thread count, by the same layer
calls (``_Synthesis.run_layers``) whether it starts at layer 0 or at a kept activation, so a cached
frame has the same bits as a fresh one: that is what lets an ``exact`` frame be exact.

A preview stops after the 64 px block and returns that block's to-RGB output (the progressive-
growing image at 64 px): about half the multiply-adds of a 256 px render, and the activation it
keeps lets the exact frame of the same values continue from there. Generators of 64 px or less
have no preview; their frames are always exact.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stylegan.directions import available_layer_ranges, layer_mask
from stylegan.networks import StyleGANGenerator, postprocess_uint8

EXACT, PREVIEW = "exact", "preview"
FRAME_KINDS: tuple[str, ...] = (EXACT, PREVIEW)
PREVIEW_PX = 64
"""A preview face is the 64 px output: the contract's smallest preview (at least 64x64 px per face)."""
DEFAULT_CACHE_MB = 384


@dataclass(frozen=True)
class FramePlan:
    """Where one generator's frames stop and which activations are worth keeping.

    keep: layer indices k whose input (the output of layer k-1) is cached: the first layer of every
    layer range an edit may reach, and the end of the preview. preview_block: the block whose
    to-RGB is the preview (None: the generator is too small for a smaller preview).
    """

    num_layers: int
    last_block: int
    preview_block: int | None
    keep: tuple[int, ...]

    @property
    def preview_stop(self) -> int | None:
        return None if self.preview_block is None else 2 * self.preview_block + 2

    @classmethod
    def of(cls, generator: StyleGANGenerator) -> FramePlan:
        num_layers = int(generator.num_layers)
        last_block = num_layers // 2 - 1
        resolution = int(generator.resolution)
        preview_block = int(math.log2(PREVIEW_PX)) - 2 if resolution > PREVIEW_PX else None
        starts = {int(np.flatnonzero(layer_mask(num_layers, name))[0]) for name in available_layer_ranges(num_layers)}
        keep = {k for k in starts if 0 < k < num_layers}
        if preview_block is not None:
            keep.add(2 * preview_block + 2)
        return cls(num_layers, last_block, preview_block, tuple(sorted(keep)))


class FrameCache:
    """Least-recently-used store with a byte budget, shared by the threads of one studio.

    ``writable=False`` views (:meth:`reader`) read the same entries but never add any: a thread that
    renders on another thread count (Measure) must not leave frames whose bits differ.
    """

    def __init__(self, budget_bytes: int = DEFAULT_CACHE_MB << 20) -> None:
        self.budget_bytes = int(budget_bytes)
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: tuple, value: Any, nbytes: int) -> None:
        if nbytes > self.budget_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.budget_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._items), "bytes": self._bytes, "hits": self.hits, "misses": self.misses}


_TOKENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COUNTER = itertools.count(1)
_TOKEN_LOCK = threading.Lock()


def _token(generator: torch.nn.Module) -> int:
    """A number per generator object for the cache keys (ids can be reused after garbage collection)."""
    with _TOKEN_LOCK:
        token = _TOKENS.get(generator)
        if token is None:
            token = _TOKENS[generator] = next(_COUNTER)
        return token


class _Digests:
    """Digest of ``wp[:, :k]`` for any k: what an activation after layer k-1 depends on."""

    def __init__(self, wp: torch.Tensor) -> None:
        rows = wp.detach().to("cpu", torch.float32).contiguous().numpy()
        self._rows = [rows[:, i].tobytes() for i in range(rows.shape[1])]
        self._shape = tuple(rows.shape)
        self._memo: dict[int, str] = {}

    def __call__(self, k: int) -> str:
        if k not in self._memo:
            h = hashlib.blake2b(repr(self._shape).encode(), digest_size=20)
            for row in self._rows[:k]:
                h.update(row)
            self._memo[k] = h.hexdigest()
        return self._memo[k]


class FaceFrames:
    """Exact and preview frames of single faces through one :class:`FrameCache`.

    Not thread-safe for writing by design: the studio renders on one worker thread (one thread
    count, so one set of bits); other threads use :meth:`reader`.
    """

    def __init__(self, cache: FrameCache | None = None, writable: bool = True) -> None:
        self.cache = cache if cache is not None else FrameCache()
        self.writable = writable
        self._plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def reader(self) -> FaceFrames:
        """Frames through the same cache that never add to it."""
        return FaceFrames(self.cache, writable=False)

    def plan(self, generator: StyleGANGenerator) -> FramePlan:
        plan = self._plans.get(generator)
        if plan is None:
            plan = self._plans[generator] = FramePlan.of(generator)
        return plan

    def can_preview(self, generator: StyleGANGenerator) -> bool:
        return self.plan(generator).preview_block is not None

    def cached(self, generator: StyleGANGenerator, wp: torch.Tensor, kind: str = EXACT) -> np.ndarray | None:
        """The frame if it is in the cache (never renders)."""
        plan = self.plan(generator)
        stop = plan.num_layers if kind == EXACT else plan.preview_stop
        if stop is None:
            return None
        return self.cache.get((_token(generator), "image", kind, _Digests(wp)(stop)))

    @torch.inference_mode()
    def frame(self, generator: StyleGANGenerator, wp: torch.Tensor, kind: str = EXACT) -> np.ndarray:
        """uint8 [S, S, 3] of the face ``wp`` [1, L, D]: S = the resolution (exact) or 64 (preview).

        A generator without a smaller output answers a preview with its exact frame.
        """
        if kind not in FRAME_KINDS:
            raise ValueError(f"frame kind must be one of {FRAME_KINDS}, got {kind!r}")
        if wp.ndim != 3 or wp.shape[0] != 1:
            raise ValueError(f"one face at a time: wp must be [1, L, D], got {list(wp.shape)}")
        plan = self.plan(generator)
        if kind == PREVIEW and plan.preview_block is None:
            kind = EXACT
        stop, block = ((plan.num_layers, plan.last_block) if kind == EXACT
                       else (plan.preview_stop, plan.preview_block))
        token, digest = _token(generator), _Digests(wp)
        image_key = (token, "image", kind, digest(stop))
        hit = self.cache.get(image_key)
        if hit is not None:
            return hit
        start, x = 0, None
        for k in reversed(plan.keep):
            if k <= stop:
                kept = self.cache.get((token, "act", k, digest(k)))
                if kept is not None:
                    start, x = k, kept
                    break
        synthesis = generator.synthesis
        for k in [k for k in plan.keep if start < k <= stop] + ([stop] if stop not in plan.keep else []):
            x = synthesis.run_layers(wp, start, k, x)
            start = k
            if k in plan.keep:
                self._put((token, "act", k, digest(k)), x, x.numel() * x.element_size())
            if k == plan.preview_stop and kind == EXACT:  # the preview of this face costs one 1x1 conv here
                self._put((token, "image", PREVIEW, digest(k)), self._image(generator, x, plan.preview_block))
        image = self._image(generator, x, block)
        self._put(image_key, image)
        return image

    def _put(self, key: tuple, value: Any, nbytes: int | None = None) -> None:
        if self.writable:
            self.cache.put(key, value, value.nbytes if nbytes is None else nbytes)

    @staticmethod
    def _image(generator: StyleGANGenerator, x: torch.Tensor, block: int) -> np.ndarray:
        image = generator.synthesis.block_image(x, block)
        if generator.final_tanh:
            image = torch.tanh(image)
        out = postprocess_uint8(image.float())[0]
        out.setflags(write=False)  # shared by every later hit
        return out
