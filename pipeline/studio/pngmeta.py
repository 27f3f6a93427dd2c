"""Saved faces carry their recipe: a PNG whose ``studio`` text chunk holds every parameter.

The chunk (iTXt, UTF-8 JSON) records the view parameters, which face (base or a method), the
identity of every model file used (``common.fingerprint.file_fingerprint``: size + sha256), the
device type, dtype and torch version. :func:`regenerate` renders the face again from it and
refuses a model whose fingerprint differs, so "same PNG parameters" means "same pixels" on the
same device and dtype.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from pipeline.studio.params import ParamError, ViewParams

CHUNK_KEY = "studio"
FORMAT = "studio-face"
FORMAT_VERSION = 1
FACES: tuple[str, ...] = ("base", "directions", "finetuned")
_ROLES_BY_FACE = {"base": ("stylegan",), "directions": ("stylegan", "directions"),
                  "finetuned": ("finetuned",)}


class RecipeError(ValueError):
    """A PNG without a readable studio recipe, or one made with other model files."""


def make_recipe(params: ViewParams, face: str, identity: dict[str, dict[str, str]],
                device: torch.device, threads: int | None = None) -> dict:
    """The JSON stored in the PNG: only the model files this face depends on.

    ``threads``: the torch thread count that rendered it (float reductions are split by thread,
    so regeneration uses the same count).
    """
    if face not in FACES:
        raise ParamError(f"face must be one of {FACES}, got {face!r}")
    single = params if face == "base" or params.method == face else params.with_method(face)
    recipe = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "face": face, "params": single.to_json(),
        "models": {role: identity[role] for role in _ROLES_BY_FACE[face] if role in identity},
        "device": torch.device(device).type, "dtype": "float32", "torch": torch.__version__,
    }
    if threads is not None:
        recipe["threads"] = int(threads)
    return recipe


def recipe_hash(recipe: dict[str, Any]) -> str:
    """8 hex digits of what makes the face (face, view, model fingerprints, device, threads)."""
    what = {key: recipe.get(key) for key in ("face", "params", "device", "dtype", "threads")}
    what["models"] = {role: entry.get("fingerprint") for role, entry in recipe.get("models", {}).items()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()[:8]


def saved_name(recipe: dict[str, Any], suffix: str = ".png") -> str:
    """``studio_seed<seed>_<face>_<hash>.png``: the seed and a short recipe hash, so saves never collide."""
    return f"studio_seed{recipe['params']['seed']}_{recipe['face']}_{recipe_hash(recipe)}{suffix}"


def encode_png(image_u8: np.ndarray, recipe: dict[str, Any]) -> bytes:
    """PNG bytes of ``image_u8`` [H, W, 3] with the recipe in an iTXt chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(CHUNK_KEY, json.dumps(recipe, sort_keys=True))
    info.add_text("Software", "attribute-controllable faces studio")
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image_u8, dtype=np.uint8)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_recipe(path: Path | str) -> dict[str, Any]:
    """The recipe of a saved PNG; :class:`RecipeError` names what is wrong."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            text = getattr(image, "text", {}).get(CHUNK_KEY)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path} is not a readable PNG: {exc}") from None
    if text is None:
        raise RecipeError(f"{path} has no '{CHUNK_KEY}' text chunk (not saved by the studio)")
    try:
        recipe = json.loads(text)
    except ValueError as exc:
        raise RecipeError(f"{path}: the '{CHUNK_KEY}' chunk is not JSON: {exc}") from None
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise RecipeError(f"{path}: the '{CHUNK_KEY}' chunk is not a studio recipe")
    if recipe.get("format_version") != FORMAT_VERSION:
        raise RecipeError(f"{path}: recipe version {recipe.get('format_version')}, "
                          f"this code reads {FORMAT_VERSION}")
    if recipe.get("face") not in FACES:
        raise RecipeError(f"{path}: unknown face {recipe.get('face')!r}")
    return recipe


def check_models(recipe: dict[str, Any], identity: dict[str, dict[str, str]], source: str = "recipe") -> None:
    """Refuse to regenerate with model files other than the recipe's (fingerprints differ or absent)."""
    for role, saved in recipe.get("models", {}).items():
        have = identity.get(role)
        if have is None:
            raise RecipeError(f"{source} needs the {role} model {saved.get('path')} "
                              f"({saved.get('fingerprint')}), which this studio has not loaded")
        if have.get("fingerprint") != saved.get("fingerprint"):
            raise RecipeError(f"{source} was made with {role} file {saved.get('path')} "
                              f"({saved.get('fingerprint')}); "
                              f"this studio has {have.get('path')} ({have.get('fingerprint')})")


def recipe_params(recipe: dict[str, Any]) -> tuple[ViewParams, str]:
    params = ViewParams.from_json(recipe["params"])
    return params, recipe["face"]


def regenerate(path: Path | str, models: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(regenerated face, the PNG's pixels, recipe): the face rendered again from the PNG's recipe.

    Refuses (:class:`RecipeError`) when ``models`` are not the files the recipe names. Renders on
    the recipe's torch thread count when it records one (the bits depend on it).
    """
    from pipeline.studio.gate import PinnedWorker
    from pipeline.studio.render import render_face

    recipe = read_recipe(path)
    check_models(recipe, models.identity, source=str(path))
    params, face = recipe_params(recipe)
    if recipe.get("device") != models.device.type:
        raise RecipeError(f"{path} was rendered on {recipe.get('device')}; "
                          f"this studio runs on {models.device.type} "
                          "(pass --device to match: pixels are exact only on the same device type)")
    with Image.open(path) as image:
        saved = np.asarray(image.convert("RGB"))
    threads = recipe.get("threads")
    if threads is None:
        return render_face(models, params, face), saved, recipe
    if not isinstance(threads, int) or threads < 1:
        raise RecipeError(f"{path}: recipe threads must be a positive integer, got {threads!r}")
    with PinnedWorker("regenerate", threads) as worker:
        return worker.call(lambda: render_face(models, params, face)), saved, recipe


def recipe_files(path: Path | str) -> dict[str, Path]:
    """role -> recorded model path, for the roles whose recorded file still exists."""
    recipe = read_recipe(path)
    return {role: Path(entry["path"]) for role, entry in recipe.get("models", {}).items()
            if Path(entry.get("path", "")).is_file()}
