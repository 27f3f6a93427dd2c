"""Loading genforce StyleGAN checkpoints (every layout genforce writes) and writing tiny ones.

Layouts accepted: the converter's flat ``{'generator', 'discriminator', 'generator_smooth'}``,
the training runner's ``{'models': {...}, ...}``, and a bare state_dict; a ``module.`` prefix on
every key is stripped. Every setting that the tensor shapes carry (resolution, latent sizes,
channel widths, label size) is inferred; the rest are genforce's defaults unless overridden. An
override that contradicts the file is an error, not a silent change (the torchvision habit).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from common.checkpoints import (
    STYLEGAN_CELEBA_PARTIAL_256,
    CheckpointError,
    load_state_dict_checked,
    read_checkpoint,
)
from common.io import atomic_torch_save
from stylegan.networks import StyleGANDiscriminator, StyleGANGenerator
from stylegan.random_weights import recipe_state_dict

logger = logging.getLogger(__name__)

WHICH_ALLOWED = ("auto", "generator_smooth", "generator")
WEIGHTS_ENTRIES: dict[str, str] = {"auto": "auto", "ema": "generator_smooth", "raw": "generator"}
"""The scripts' ``--weights`` (``common.settings.WEIGHTS_CHOICES``) -> genforce's entry: ema = the smoothed copy."""
_GENFORCE_DEFAULT_FMAPS_BASE = 16 << 10


def _strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def entry_for_weights(weights: str) -> str:
    """``auto`` / ``ema`` / ``raw`` -> the ``which`` of :func:`load_generator` (auto: smoothed when present)."""
    try:
        return WEIGHTS_ENTRIES[weights]
    except KeyError:
        raise ValueError(f"invalid weights={weights!r}; allowed: {tuple(WEIGHTS_ENTRIES)}") from None


def weights_for_entry(entry: str) -> str:
    """The ``--weights`` spelling that loads ``entry`` (the inverse of :func:`entry_for_weights`): for fixes."""
    return "ema" if entry == "generator_smooth" else "raw"


def recorded_entry(entry: str | None) -> str:
    """A generator entry as recipes record it: ``auto`` for the default (smoothed) one however it was reached
    (``None``, ``auto``, ``generator_smooth``), else the entry itself, so one folder keeps one recipe."""
    return "auto" if entry in (None, "auto", "generator_smooth") else entry


def select_entry(ckpt: Any, which: str, path: Path | str = "checkpoint") -> tuple[str, dict[str, torch.Tensor]]:
    """Pick the generator entry: ``auto`` = generator_smooth if present, else generator (genforce's rule)."""
    if which not in WHICH_ALLOWED + ("discriminator",):
        raise ValueError(f"invalid which={which!r}; allowed: {WHICH_ALLOWED}")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict of state_dicts, found {type(ckpt).__name__}")
    if "models" in ckpt and isinstance(ckpt["models"], dict):
        ckpt = ckpt["models"]
    if _is_state_dict(ckpt):
        kind = "discriminator" if any(k.startswith(("input0.", "module.input0.")) for k in ckpt) else "generator"
        if (which == "discriminator") != (kind == "discriminator"):
            raise CheckpointError(f"{path} is a bare {kind} state_dict; it has no {which} entry")
        return "state_dict", _strip_module_prefix(dict(ckpt))
    if which == "auto":
        which = "generator_smooth" if "generator_smooth" in ckpt else "generator"
    if which not in ckpt:
        found = sorted(k for k in ckpt if isinstance(k, str))
        raise CheckpointError(f"{path} has no {which!r} entry; it holds {found}. A genforce checkpoint holds "
                              "'generator', 'discriminator' and usually 'generator_smooth' (possibly under 'models').")
    entry = ckpt[which]
    if not _is_state_dict(entry):
        raise CheckpointError(f"{path}: entry {which!r} is not a state_dict of tensors ({type(entry).__name__})")
    return which, _strip_module_prefix(dict(entry))


def _infer_fmaps(channels_by_res: dict[int, int]) -> tuple[int, int]:
    """(fmaps_base, fmaps_max) such that min(base // res, max) gives every observed width."""
    fmaps_max = max(channels_by_res.values())
    candidates = [_GENFORCE_DEFAULT_FMAPS_BASE] + [c * r for r, c in sorted(channels_by_res.items(), reverse=True)]
    for base in candidates:
        if all(min(base // r, fmaps_max) == c for r, c in channels_by_res.items()):
            return base, fmaps_max
    raise CheckpointError(f"channel widths {channels_by_res} do not follow min(fmaps_base // res, fmaps_max)")


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := regex.fullmatch(k))})


def infer_generator_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor kwargs that the generator's tensor shapes determine."""
    try:
        num_blocks = _count(sd, r"synthesis\.output(\d+)\.weight")
        mapping_layers = _count(sd, r"mapping\.dense(\d+)\.weight")
        if num_blocks == 0 or mapping_layers == 0:
            raise KeyError("synthesis.output*/mapping.dense*")
        resolution = 4 * 2 ** (num_blocks - 1)
        num_layers = 2 * num_blocks
        dense0 = sd["mapping.dense0.weight"]
        last = sd[f"mapping.dense{mapping_layers - 1}.weight"]
        w_dim = sd["synthesis.layer0.style.weight"].shape[1]
        label_size, z_dim = (sd["mapping.label_weight"].shape if "mapping.label_weight" in sd
                             else (0, dense0.shape[1]))
        channels = {4 * 2**b: sd[f"synthesis.output{b}.weight"].shape[1] for b in range(num_blocks)}
        fmaps_base, fmaps_max = _infer_fmaps(channels)
        config = dict(
            resolution=resolution, z_space_dim=int(z_dim), w_space_dim=int(w_dim), label_size=int(label_size),
            mapping_layers=mapping_layers, mapping_fmaps=int(dense0.shape[0]) if mapping_layers > 1 else 512,
            repeat_w=last.shape[0] == w_dim, image_channels=int(sd["synthesis.output0.weight"].shape[0]),
            fmaps_base=fmaps_base, fmaps_max=fmaps_max,
        )
        if not config["repeat_w"] and last.shape[0] != w_dim * num_layers:
            raise CheckpointError(f"mapping output {last.shape[0]} is neither w_dim {w_dim} nor w_dim x {num_layers}")
        return config
    except KeyError as exc:
        raise CheckpointError(f"not a genforce StyleGAN generator state_dict: key {exc} is missing") from exc
    except (IndexError, TypeError, ValueError) as exc:
        raise CheckpointError(f"not a genforce StyleGAN generator state_dict: a tensor has the wrong number of "
                              f"dimensions ({exc})") from exc


def infer_discriminator_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor kwargs that the discriminator's tensor shapes determine."""
    try:
        num_blocks = _count(sd, r"input(\d+)\.weight")
        if num_blocks == 0:
            raise KeyError("input0.weight")
        resolution = 4 * 2 ** (num_blocks - 1)
        channels = {resolution // 2**b: sd[f"input{b}.weight"].shape[0] for b in range(num_blocks)}
        fmaps_base, fmaps_max = _infer_fmaps(channels)
        last_conv = sd[f"layer{2 * (num_blocks - 1)}.weight"]
        out = sd[f"layer{2 * num_blocks}.weight"].shape[0]
        return dict(
            resolution=resolution, image_channels=int(sd["input0.weight"].shape[1]),
            label_size=int(out) if out > 1 else 0,
            minibatch_std_channels=int(last_conv.shape[1] - channels[4]),
            fmaps_base=fmaps_base, fmaps_max=fmaps_max,
        )
    except KeyError as exc:
        raise CheckpointError(f"not a genforce StyleGAN discriminator state_dict: key {exc} is missing") from exc
    except (IndexError, TypeError, ValueError) as exc:
        raise CheckpointError(f"not a genforce StyleGAN discriminator state_dict: a tensor has the wrong number of "
                              f"dimensions ({exc})") from exc


def _merge_overrides(inferred: dict[str, Any], overrides: dict[str, Any], path: Path | str) -> dict[str, Any]:
    for key, value in overrides.items():
        if key in inferred and inferred[key] != value:
            raise CheckpointError(f"{path}: {key}={value!r} was requested but the checkpoint's shapes say "
                                  f"{key}={inferred[key]!r}")
    return {**inferred, **overrides}


def load_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: Path | str, entry: str) -> None:
    """Strict load after the one fit report (keys, shapes, dtypes) and a finite-weights check."""
    load_state_dict_checked(model, state_dict, path, STYLEGAN_CELEBA_PARTIAL_256.how_to_get, entry=entry,
                            what="the model its shapes describe")


def _config_or_error(infer, sd: dict[str, torch.Tensor], path: Path | str, entry: str) -> dict[str, Any]:
    """``infer(sd)`` with the file and entry named in any error (the inferers do not know the path)."""
    try:
        return infer(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{path} [{entry}]: {exc}; fix: {STYLEGAN_CELEBA_PARTIAL_256.how_to_get}") from exc


def load_generator(path: Path | str, which: str = "auto", device: str | torch.device = "cpu",
                   **overrides: Any) -> StyleGANGenerator:
    """Load a genforce generator in eval mode; ``G.checkpoint_key`` names the entry used.

    which: 'auto' (generator_smooth if present, else generator), 'generator_smooth' or 'generator'.
    overrides: genforce constructor kwargs that shapes cannot tell (e.g. fused_scale).
    """
    if which not in WHICH_ALLOWED:
        raise ValueError(f"invalid which={which!r}; allowed: {WHICH_ALLOWED}")
    ckpt = read_checkpoint(path, STYLEGAN_CELEBA_PARTIAL_256)
    key, sd = select_entry(ckpt, which, path)
    config = _merge_overrides(_config_or_error(infer_generator_config, sd, path, key), overrides, path)
    generator = StyleGANGenerator(**config)
    load_strict(generator, sd, path, key)
    generator.checkpoint_key = key
    generator.checkpoint_path = str(path)
    logger.info("loaded StyleGAN generator %s [%s], resolution %d", path, key, config["resolution"])
    return generator.eval().to(device)


def load_discriminator(path: Path | str, device: str | torch.device = "cpu", **overrides: Any) -> StyleGANDiscriminator:
    """Load a genforce discriminator (the ``discriminator`` entry) in eval mode."""
    ckpt = read_checkpoint(path, STYLEGAN_CELEBA_PARTIAL_256)
    key, sd = select_entry(ckpt, "discriminator", path)
    config = _merge_overrides(_config_or_error(infer_discriminator_config, sd, path, key), overrides, path)
    discriminator = StyleGANDiscriminator(**config)
    load_strict(discriminator, sd, path, key)
    discriminator.checkpoint_key = key
    return discriminator.eval().to(device)


def write_random_checkpoint(path: Path | str, resolution: int = 32, seed: int = 0, with_smooth: bool = True,
                            **kwargs: Any) -> Path:
    """Write a random-weight checkpoint in genforce's converter format (tests, demo, README interim command).

    kwargs go to both constructors where they apply (e.g. fmaps_base, fmaps_max, z_space_dim).
    Weights follow genforce's initialisation scales (``random_weights``), so images depend on z.
    """
    g_kwargs = {k: v for k, v in kwargs.items() if k in StyleGANGenerator.__init__.__code__.co_varnames}
    d_keys = StyleGANDiscriminator.__init__.__code__.co_varnames
    d_kwargs = {k: v for k, v in kwargs.items() if k in d_keys}
    generator = StyleGANGenerator(resolution, **g_kwargs)
    discriminator = StyleGANDiscriminator(resolution, **d_kwargs)
    g_sd = recipe_state_dict(generator, seed_offset=seed)
    ckpt = {"generator": g_sd, "discriminator": recipe_state_dict(discriminator, seed_offset=seed)}
    if with_smooth:
        ckpt["generator_smooth"] = {k: v.clone() for k, v in g_sd.items()}
    return atomic_torch_save(path, ckpt)

