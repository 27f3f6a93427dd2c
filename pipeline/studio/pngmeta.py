"""Saved faces and sheets carry their recipes, so every pixel regenerates from the file alone.

A saved face is a PNG whose ``studio`` text chunk (iTXt, UTF-8 JSON) records the view parameters,
which face (base or a method), the identity of every model file used
(``common.fingerprint.file_fingerprint``: size + sha256), the device type, dtype, torch thread
count and torch version. A sweep or an expression sheet (``pipeline.studio.exports``) holds one
list of such recipes indexed by frame: in the same chunk of its PNG contact sheet (with each
frame's box in the sheet) and in the XMP packet of its lossless animated WebP (frame k of the
animation). :func:`regenerate` renders every face again and refuses a model whose fingerprint
differs, so "same recipe" means "same pixels" on the same device, dtype and thread count.
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

from pipeline.studio.params import REFINED, ParamError, ViewParams

CHUNK_KEY = "studio"
FORMAT = "studio-face"
FORMAT_VERSION = 1
FACES: tuple[str, ...] = ("base", "directions", REFINED, "sefa", "finetuned")
_ROLES_BY_FACE = {"base": ("stylegan",), "directions": ("stylegan", "directions"), "sefa": ("stylegan", "sefa"),
                  REFINED: ("stylegan", "directions", "refine"), "finetuned": ("finetuned",)}


class RecipeError(ValueError):
    """A file without a readable studio recipe, or one made with other model files."""


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
    face = str(recipe["face"]).replace("+", "-")   # directions+refine -> directions-refine: a plain file name
    return f"studio_seed{recipe['params']['seed']}_{face}_{recipe_hash(recipe)}{suffix}"


def encode_png(image_u8: np.ndarray, recipe: dict[str, Any]) -> bytes:
    """PNG bytes of ``image_u8`` [H, W, 3] with the recipe in an iTXt chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(CHUNK_KEY, json.dumps(recipe, sort_keys=True))
    info.add_text("Software", "attribute-controllable faces studio")
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image_u8, dtype=np.uint8)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


SHEET_FORMAT = "studio-sheet"
SHEET_FORMAT_VERSION = 1
_XMP_NS = "https://github.com/attribute-controllable-faces/studio/1"
_XMP_OPEN = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
             '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
             f'xmlns:studio="{_XMP_NS}"><studio:recipes>')
_XMP_CLOSE = '</studio:recipes></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'


def make_sheet(title: str, recipes: list[dict[str, Any]], labels: list[str],
               boxes: list[tuple[int, int, int, int]] | None = None, scale: int = 1) -> dict[str, Any]:
    """The metadata of a sweep or sheet: one recipe per frame (and, in a contact sheet, its box and the
    whole factor by which its tiles were enlarged)."""
    if len(labels) != len(recipes) or (boxes is not None and len(boxes) != len(recipes)):
        raise ValueError(f"{len(recipes)} recipes, {len(labels)} labels, {len(boxes or [])} boxes")
    sheet = {"format": SHEET_FORMAT, "format_version": SHEET_FORMAT_VERSION, "title": title,
             "labels": list(labels), "frames": list(recipes)}
    if boxes is not None:
        sheet["boxes"] = [list(map(int, box)) for box in boxes]
        sheet["scale"] = int(scale)
    return sheet


def encode_sheet_png(image: Image.Image | np.ndarray, sheet: dict[str, Any]) -> bytes:
    """The contact sheet as PNG bytes with the sheet's recipes (and frame boxes) in the ``studio`` chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(CHUNK_KEY, json.dumps(sheet, sort_keys=True))
    info.add_text("Software", "attribute-controllable faces studio")
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    pil.convert("RGB").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def encode_sheet_webp(frames_u8: list[np.ndarray], sheet: dict[str, Any], duration_ms: int = 500) -> bytes:
    """A lossless animated WebP, frame k = ``frames_u8[k]``, the recipes in its XMP packet."""
    meta = {k: v for k, v in sheet.items() if k not in ("boxes", "scale")}
    text = json.dumps(meta, sort_keys=True).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames_u8]
    buffer = io.BytesIO()
    images[0].save(buffer, format="WEBP", save_all=True, append_images=images[1:], lossless=True,
                   duration=duration_ms, loop=0, xmp=(_XMP_OPEN + text + _XMP_CLOSE).encode("utf-8"))
    return buffer.getvalue()


def _studio_json(path: Path) -> tuple[str, dict[str, Any]]:
    """(image format, the studio metadata) of a PNG (text chunk) or WebP (XMP packet)."""
    try:
        with Image.open(path) as image:
            image.load()
            kind = image.format
            text = (getattr(image, "text", {}) or {}).get(CHUNK_KEY) if kind == "PNG" else None
            xmp = image.info.get("xmp") if kind == "WEBP" else None
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path} is not a readable PNG or WebP: {exc}") from None
    if kind == "WEBP":
        packet = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else (xmp or "")
        start, end = packet.find("<studio:recipes>"), packet.find("</studio:recipes>")
        if start < 0 or end < start:
            raise RecipeError(f"{path} has no studio recipes in its XMP metadata (not exported by the studio)")
        text = packet[start + len("<studio:recipes>"):end].replace("&lt;", "<").replace("&gt;", ">") \
            .replace("&amp;", "&")
    elif kind != "PNG":
        raise RecipeError(f"{path} is a {kind} image; the studio writes PNG faces and PNG/WebP sheets")
    if text is None:
        raise RecipeError(f"{path} has no '{CHUNK_KEY}' text chunk (not saved by the studio)")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RecipeError(f"{path}: the studio metadata is not JSON: {exc}") from None
    except RecursionError:  # thousands of nested lists: no recipe is deeper than a few levels
        raise RecipeError(f"{path}: the studio metadata nests too deep to be a studio recipe "
                          "(a crafted or damaged file)") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: the studio metadata is not a JSON object")
    return kind, data


def _check_recipe(recipe: Any, source: str) -> dict[str, Any]:
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise RecipeError(f"{source}: the '{CHUNK_KEY}' chunk is not a studio recipe")
    if recipe.get("format_version") != FORMAT_VERSION:
        raise RecipeError(f"{source}: recipe version {recipe.get('format_version')}, "
                          f"this code reads {FORMAT_VERSION}")
    if recipe.get("face") not in FACES:
        raise RecipeError(f"{source}: unknown face {recipe.get('face')!r}")
    return recipe


def read_recipe(path: Path | str) -> dict[str, Any]:
    """The recipe of a saved face PNG; :class:`RecipeError` names what is wrong."""
    path = Path(path)
    _, data = _studio_json(path)
    if data.get("format") == SHEET_FORMAT:
        raise RecipeError(f"{path} is a studio sheet of {len(data.get('frames', []))} frames, not one face")
    return _check_recipe(data, str(path))


def read_studio_file(path: Path | str) -> tuple[str, list[dict[str, Any]], list[str], dict[str, Any]]:
    """(image format, recipes by frame, labels, metadata) of a saved face (one frame) or a sheet."""
    path = Path(path)
    kind, data = _studio_json(path)
    if data.get("format") != SHEET_FORMAT:
        recipe = _check_recipe(data, str(path))
        return kind, [recipe], [recipe["face"]], data
    if data.get("format_version") != SHEET_FORMAT_VERSION:
        raise RecipeError(f"{path}: sheet version {data.get('format_version')}, this code reads {SHEET_FORMAT_VERSION}")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise RecipeError(f"{path}: the sheet lists no frames")
    recipes = [_check_recipe(r, f"{path} frame {k}") for k, r in enumerate(frames)]
    labels = data.get("labels") if isinstance(data.get("labels"), list) else [str(k) for k in range(len(recipes))]
    if kind == "PNG" and len(data.get("boxes") or []) != len(recipes):
        raise RecipeError(f"{path}: the contact sheet lists {len(recipes)} frames but "
                          f"{len(data.get('boxes') or [])} boxes")
    return kind, recipes, labels, data


def file_frames(path: Path | str) -> list[np.ndarray]:
    """The pixels of every frame of a studio file: the face, the WebP's frames or the sheet's boxes."""
    path = Path(path)
    kind, recipes, _, data = read_studio_file(path)
    with Image.open(path) as image:
        if data.get("format") != SHEET_FORMAT:
            return [np.asarray(image.convert("RGB"))]
        if kind == "WEBP":
            if getattr(image, "n_frames", 1) != len(recipes):
                raise RecipeError(f"{path}: {getattr(image, 'n_frames', 1)} frames but {len(recipes)} recipes")
            out = []
            for k in range(len(recipes)):
                image.seek(k)
                out.append(np.asarray(image.convert("RGB")))
            return out
        rgb = np.asarray(image.convert("RGB"))
        scale = data.get("scale", 1)
        if not isinstance(scale, int) or scale < 1:
            raise RecipeError(f"{path}: the contact sheet's scale must be a positive integer, got {scale!r}")
        return [rgb[y:y + h:scale, x:x + w:scale].copy() for x, y, w, h in data["boxes"]]


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


def render_recipes(recipes: list[dict[str, Any]], models: Any, source: str) -> list[np.ndarray]:
    """The faces of ``recipes`` rendered again, each on its recorded torch thread count.

    Refuses (:class:`RecipeError`) when ``models`` are not the files a recipe names or run on
    another device type.
    """
    from pipeline.studio.gate import PinnedWorker
    from pipeline.studio.render import render_face

    jobs = []
    for k, recipe in enumerate(recipes):
        where = source if len(recipes) == 1 else f"{source} frame {k}"
        check_models(recipe, models.identity, source=where)
        if recipe.get("device") != models.device.type:
            raise RecipeError(f"{where} was rendered on {recipe.get('device')}; "
                              f"this studio runs on {models.device.type} "
                              "(pass --device to match: pixels are exact only on the same device type)")
        threads = recipe.get("threads")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise RecipeError(f"{where}: recipe threads must be a positive integer, got {threads!r}")
        jobs.append((threads, *recipe_params(recipe)))
    out: list[np.ndarray] = []
    workers: dict[int, PinnedWorker] = {}
    try:
        for threads, params, face in jobs:
            if threads is None:
                out.append(render_face(models, params, face))
                continue
            worker = workers.setdefault(threads, PinnedWorker("regenerate", threads))
            out.append(worker.call(lambda p=params, f=face: render_face(models, p, f)))
    finally:
        for worker in workers.values():
            worker.close()
    return out


def regenerate(path: Path | str, models: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(regenerated face, the PNG's pixels, recipe): a saved face rendered again from its recipe."""
    recipe = read_recipe(path)
    image = render_recipes([recipe], models, str(path))[0]
    return image, file_frames(path)[0], recipe


def regenerate_frames(path: Path | str, models: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(regenerated frames, the file's frames, labels) of a face PNG or a sheet (PNG or WebP)."""
    _, recipes, labels, _ = read_studio_file(path)
    return render_recipes(recipes, models, str(path)), file_frames(path), labels


def recipe_files(path: Path | str) -> dict[str, Path]:
    """role -> recorded model path, for the roles whose recorded file still exists (any frame)."""
    _, recipes, _, _ = read_studio_file(path)
    return {role: Path(entry["path"]) for recipe in recipes for role, entry in recipe.get("models", {}).items()
            if Path(entry.get("path", "")).is_file()}
