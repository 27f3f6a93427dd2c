"""Property-conditioned StyleGAN built from a pretrained, unconditional genforce generator (step 7).

The condition is the 5 normalised properties (``PROPERTY_NAMES`` order). How it joins (pipeline.md,
step 7): z is pixel-normalised **alone** (as the pretrained mapping expects), the condition goes
through a small MLP embedding, and the embedding enters the first mapping layer through **new
input columns** that start at zero and have their own equalised-lr scale. The old columns keep
their stored weights and their own scale ``gain / sqrt(z_dim) * lr_mul``; widening one
``_Dense`` would change the fan-in and so silently rescale every pretrained column. Hence at
step 0 the conditional generator reproduces the pretrained one bit for bit, for every condition,
while the new columns receive gradient (their input, the embedding, is not zero).

genforce's own ``label_size`` path is not used: it pixel-normalises z and the embedding together,
so it can only match the pretrained generator when the embedding is zero, and then nothing learns.

The discriminator is conditioned by projection (Miyato & Koyama): ``D(x, c) = D_0(x) + <e(c), phi(x)>``
with ``phi`` the penultimate features and ``e`` an MLP whose last layer starts at zero, so step 0
equals the pretrained D. A projection suits continuous conditions (no class table needed).
"""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.checkpoints import CheckpointError, load_state_dict_checked, read_checkpoint
from common.paths import PROPERTY_NAMES
from stylegan.finetune_schema import (
    FINETUNE_FORMAT_VERSION,
    FinetuneSettings,
    checkpoints_in,
    property_ranges,
)
from stylegan.networks import StyleGANDiscriminator, StyleGANGenerator, _pixel_norm

logger = logging.getLogger(__name__)

__all__ = [
    "ConditionalGenerator", "ConditionalDiscriminator", "build_conditional_generator",
    "build_conditional_discriminator", "freeze_synthesis", "set_trainable_d_layers", "d_layer_names",
    "load_conditional_generator", "read_finetune_checkpoint", "newest_valid_checkpoint", "FINETUNE_FORMAT_VERSION",
    "FINETUNE_FIX", "property_ranges",
]

_LRELU_SLOPE = 0.2


class _ConditionEmbedding(nn.Module):
    """c [N, P] -> e [N, embed_dim]: Linear -> lrelu -> Linear (plain PyTorch init, e is never all zero)."""

    def __init__(self, num_properties: int, embed_dim: int, hidden: int):
        super().__init__()
        self.fc0 = nn.Linear(num_properties, hidden)
        self.fc1 = nn.Linear(hidden, embed_dim)
        with torch.no_grad():  # unit-RMS output for inputs of order 1, like the normalised z
            self.fc0.weight.normal_(0.0, 1.0 / math.sqrt(num_properties))
            self.fc0.bias.zero_()
            self.fc1.weight.normal_(0.0, math.sqrt(2.0 / hidden))
            self.fc1.bias.normal_(0.0, 0.5)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.fc1(F.leaky_relu(self.fc0(c), _LRELU_SLOPE))


class _ConditionColumns(nn.Module):
    """The new input columns of mapping.dense0: weight [out, embed_dim], zero at init, own wscale."""

    def __init__(self, out_dim: int, embed_dim: int, lr_mul: float):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_dim, embed_dim))
        self.scale = math.sqrt(2.0) / math.sqrt(embed_dim) * lr_mul

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return F.linear(e, self.weight * self.scale)


class ConditionalGenerator(StyleGANGenerator):
    """genforce StyleGAN generator + condition columns on mapping.dense0.

    Settings: ``base_config`` (the pretrained generator's constructor kwargs, label_size 0),
    num_properties=5, embed_dim=None (= z_dim), embed_hidden=64, cond_lr_mul=1.0 (equalised-lr
    multiplier of the new columns; the pretrained mapping keeps its 0.01).
    State_dict = genforce's keys (so the pretrained weights load strictly) + ``condition.*``.
    ``G(z, condition)`` returns genforce's dict (z, w, wp, styleNN, image) plus ``embedding``.
    """

    def __init__(self, base_config: dict[str, Any], num_properties: int = len(PROPERTY_NAMES),
                 embed_dim: int | None = None, embed_hidden: int = 64, cond_lr_mul: float = 1.0):
        base_config = dict(base_config)
        if base_config.get("label_size", 0):
            raise ValueError("the base generator must be unconditional (label_size 0), "
                             f"got {base_config['label_size']}")
        super().__init__(**base_config)
        self.base_config = base_config
        self.num_properties = num_properties
        self.embed_dim = int(self.z_space_dim if embed_dim is None else embed_dim)  # 0 is refused, not "default"
        self.embed_hidden = embed_hidden
        self.cond_lr_mul = cond_lr_mul
        out_dim = self.mapping.dense0.weight.shape[0]
        self.condition = nn.Module()
        self.condition.embed = _ConditionEmbedding(num_properties, self.embed_dim, embed_hidden)
        self.condition.columns = _ConditionColumns(out_dim, self.embed_dim, cond_lr_mul)

    @property
    def cond_config(self) -> dict[str, Any]:
        """Plain-dict settings that rebuild this module (stored in fine-tune checkpoints)."""
        return dict(base_config=dict(self.base_config), num_properties=self.num_properties,
                    embed_dim=self.embed_dim, embed_hidden=self.embed_hidden, cond_lr_mul=self.cond_lr_mul)

    def map(self, z: torch.Tensor, condition: torch.Tensor) -> dict[str, torch.Tensor]:
        """z [N, z_dim], condition [N, P] -> dict(z (normalised), embedding, w [N, w_dim])."""
        if z.ndim != 2 or z.shape[1] != self.z_space_dim:
            raise ValueError(f"z must have shape [batch, {self.z_space_dim}], got {list(z.shape)}")
        if condition is None or condition.ndim != 2 or tuple(condition.shape) != (z.shape[0], self.num_properties):
            got = None if condition is None else list(condition.shape)
            raise ValueError(f"condition must have shape [{z.shape[0]}, {self.num_properties}], got {got}")
        mapping = self.mapping
        z = _pixel_norm(z)
        embedding = self.condition.embed(condition.to(z))
        dense0 = mapping.dense0
        x = F.linear(z, dense0.weight * dense0.scale, dense0.bias * dense0.lr_mul)
        x = x + self.condition.columns(embedding)
        x = F.leaky_relu(x, _LRELU_SLOPE) if dense0.activate else x
        for i in range(1, mapping.num_layers):
            x = getattr(mapping, f"dense{i}")(x)
        return {"z": z, "embedding": embedding, "label": condition, "w": x}

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None, lod: float | None = None,
                trunc_psi: float | None = None, trunc_layers: int | None = None, randomize_noise: bool = False,
                label: torch.Tensor | None = None, **_unused) -> dict[str, torch.Tensor]:
        """No style mixing and no w_avg update, ever: training randomness belongs to the loss."""
        condition = condition if condition is not None else label
        results = self.map(z, condition)
        wp = self.truncation(results["w"])
        return self._truncate_and_synthesize(results, wp, trunc_psi, trunc_layers, lod, randomize_noise)


def build_conditional_generator(base: StyleGANGenerator, embed_dim: int | None = None, embed_hidden: int = 64,
                                cond_lr_mul: float = 1.0, num_properties: int = len(PROPERTY_NAMES),
                                seed: int = 0) -> ConditionalGenerator:
    """Conditional G carrying ``base``'s weights exactly; the embedding is drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = ConditionalGenerator(base.config, num_properties, embed_dim, embed_hidden, cond_lr_mul)
    missing, unexpected = generator.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not k.startswith("condition.") for k in missing):
        raise RuntimeError(f"base generator does not fit: missing {missing}, unexpected {unexpected}")
    return generator.to(next(base.parameters()).device)


def freeze_synthesis(generator: StyleGANGenerator) -> None:
    """Synthesis frozen (requires_grad False); mapping and condition modules stay trainable."""
    generator.synthesis.requires_grad_(False)


class ConditionalDiscriminator(StyleGANDiscriminator):
    """genforce StyleGAN D + a projection on a condition embedding (zero at init).

    Settings: ``base_config`` (the pretrained D's kwargs, label_size 0), num_properties=5,
    embed_hidden=64. ``D(image, condition)`` -> [N, 1]. Only the fully grown path (lod 0) exists:
    fine-tuning starts from a finished checkpoint.
    """

    def __init__(self, base_config: dict[str, Any], num_properties: int = len(PROPERTY_NAMES),
                 embed_hidden: int = 64):
        base_config = dict(base_config)
        if base_config.get("label_size", 0):
            raise ValueError("the base discriminator must be unconditional, "
                             f"got label_size {base_config['label_size']}")
        super().__init__(**base_config)
        self.base_config = base_config
        self.num_properties = num_properties
        self.embed_hidden = embed_hidden
        feat_dim = getattr(self, f"layer{2 * self.num_blocks - 1}").weight.shape[0]
        self.projection = nn.Sequential(nn.Linear(num_properties, embed_hidden), nn.LeakyReLU(_LRELU_SLOPE),
                                        nn.Linear(embed_hidden, feat_dim))
        nn.init.zeros_(self.projection[2].weight)
        nn.init.zeros_(self.projection[2].bias)
        self.projection_scale = 1.0 / math.sqrt(feat_dim)

    @property
    def cond_config(self) -> dict[str, Any]:
        return dict(base_config=dict(self.base_config), num_properties=self.num_properties,
                    embed_hidden=self.embed_hidden)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """image [N, 3, R, R] -> phi [N, F], the penultimate (Dense0) features at lod 0."""
        expected = (self.image_channels, self.resolution, self.resolution)
        if image.ndim != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(f"image must have shape [batch, {expected[0]}, {expected[1]}, {expected[2]}], "
                             f"got {list(image.shape)}")
        if float(self.lod) != 0.0:
            raise ValueError(f"conditional D needs a fully grown discriminator (lod 0), got lod {float(self.lod)}")
        x = self.input0(image)
        for i in range(2 * self.num_blocks):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward(self, image: torch.Tensor, condition: torch.Tensor | None = None, label: torch.Tensor | None = None,
                **_unused) -> torch.Tensor:
        condition = condition if condition is not None else label
        if condition is None or tuple(condition.shape) != (image.shape[0], self.num_properties):
            got = None if condition is None else list(condition.shape)
            raise ValueError(f"condition must have shape [{image.shape[0]}, {self.num_properties}], got {got}")
        phi = self.features(image)
        out = getattr(self, f"layer{2 * self.num_blocks}")(phi)
        proj = (self.projection(condition.to(phi)) * phi).sum(dim=1, keepdim=True) * self.projection_scale
        return out + proj


def build_conditional_discriminator(base: StyleGANDiscriminator, embed_hidden: int = 64,
                                    num_properties: int = len(PROPERTY_NAMES),
                                    seed: int = 0) -> ConditionalDiscriminator:
    """Conditional D carrying ``base``'s weights exactly (projection zero at init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        disc = ConditionalDiscriminator(base.config, num_properties, embed_hidden)
    missing, unexpected = disc.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not k.startswith("projection.") for k in missing):
        raise RuntimeError(f"base discriminator does not fit: missing {missing}, unexpected {unexpected}")
    return disc.to(next(base.parameters()).device)


def d_layer_names(disc: StyleGANDiscriminator) -> list[str]:
    """D's layers from the output back to the input at lod 0: layer{2n}, layer{2n-1}, ..., layer0, input0."""
    return [f"layer{i}" for i in range(2 * disc.num_blocks, -1, -1)] + ["input0"]


def set_trainable_d_layers(disc: ConditionalDiscriminator, train_d_layers: str | int) -> list[str]:
    """'all' trains every D parameter; N trains the projection and the N layers nearest the output.

    Returns the names of the trained modules. Unused lower-resolution FromRGB layers never train.
    """
    names = d_layer_names(disc)
    if train_d_layers == "all":
        chosen = names
    else:
        n = int(train_d_layers)
        if not 0 <= n <= len(names):
            raise ValueError(f"train_d_layers must be 'all' or 0..{len(names)}, got {train_d_layers!r}")
        chosen = names[:n]
    disc.requires_grad_(False)
    disc.projection.requires_grad_(True)
    for name in chosen:
        getattr(disc, name).requires_grad_(True)
    return ["projection"] + chosen


def clone_frozen(module: nn.Module) -> nn.Module:
    """A deep copy with no gradients (the EMA generator)."""
    copied = copy.deepcopy(module).eval()
    copied.requires_grad_(False)
    return copied


# ----------------------------------------------------------------------------------------------
# fine-tune checkpoints (the format step 7 writes; steps 8-9 and outside checks read it)

_ENTRY_ALLOWED = ("ema", "raw", "auto")   # auto = ema: a fine-tune checkpoint always holds both


FINETUNE_FIX = ("pass another --finetuned-checkpoint (an older checkpoint_NNNNNN.pt of the same run), or move this one "
                "away and re-run step 7, which resumes from the newest readable checkpoint")


def read_finetune_checkpoint(path, *, mmap: bool = False, fix: str = FINETUNE_FIX) -> dict[str, Any]:
    """A step-7 checkpoint read by the one safe reader; any other file is a one-line CheckpointError.

    mmap: map the tensors instead of reading them (enough to tell whether the file is usable). fix: the error's
    advice, naming the flag the file came from (``--finetuned-checkpoint`` by default, ``--refine`` for a refiner)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"fine-tuned checkpoint not found: {path} (run step 7 first)")
    ckpt = read_checkpoint(path, fix, kind="fine-tuned checkpoint", mmap=mmap)
    if (not isinstance(ckpt, dict) or ckpt.get("format_version") != FINETUNE_FORMAT_VERSION
            or not isinstance(ckpt.get("config"), dict)):
        raise CheckpointError(f"{path} is not a step-7 checkpoint (format_version {FINETUNE_FORMAT_VERSION}, "
                              f"keys generator, generator_ema, config ...); fix: {fix}")
    return ckpt


def newest_valid_checkpoint(folder: Path | str, notes: list[str] | None = None) -> Path | None:
    """The newest checkpoint_NNNNNN.pt of a fine-tune folder that reads as a step-7 checkpoint.

    For the consumers of a finished run (steps 8, 9, the studio): a newer file that is truncated,
    corrupt or not a checkpoint is skipped with a warning (and a line in ``notes``), so one bad copy
    does not stop them while a valid older checkpoint sits beside it. Step 7's own resume does not
    use this: it refuses a bad newest file, since training on from an older one would lose steps.
    """
    skipped = []
    for path in reversed(checkpoints_in(folder)):
        try:
            read_finetune_checkpoint(path, mmap=True)
        except CheckpointError as exc:
            skipped.append(f"skipped a fine-tuned checkpoint: {str(exc).split('; fix: ')[0]}")
            continue
        if skipped:
            skipped.append(f"using the newest valid fine-tuned checkpoint {path}")
        break
    else:
        path = None
    for note in skipped:
        logger.warning("%s", note)
    if notes is not None:
        notes.extend(skipped)
    return path


def _checkpoint_problem(path, what: str):
    return CheckpointError(f"{path}: {what}; the file is not a valid step-7 checkpoint; fix: {FINETUNE_FIX}")


def load_conditional_generator(path, device: str | torch.device = "cpu", which: str = "ema",
                               property_names: Sequence[str] | None = PROPERTY_NAMES) -> ConditionalGenerator:
    """Rebuild the fine-tuned generator from one step-7 checkpoint, in eval mode (contract).

    ``property_names``: what the caller will request (steps 8, 9 and the studio: the pipeline's five);
    a fine-tune of other properties is refused here, at load, in one line (None: any).

    which: 'ema' (default, the averaged weights; 'auto' is the same, as every step's ``--weights auto``) or
    'raw' (the trained G). The result takes
    ``G(z [N, z_dim], condition [N, 5])`` and carries ``finetune_settings`` (the run's
    :class:`FinetuneSettings`: property names, normalisation, ranges, medians) and ``step``.
    """
    if which not in _ENTRY_ALLOWED:
        raise ValueError(f"invalid which={which!r}; allowed: {_ENTRY_ALLOWED}")

    ckpt = read_finetune_checkpoint(path)
    config = ckpt["config"]
    entry = "generator" if which == "raw" else "generator_ema"
    if not isinstance(config.get("generator"), dict):
        raise _checkpoint_problem(path, "config['generator'] (the generator's settings) is missing or not a dict")
    try:
        generator = ConditionalGenerator(**config["generator"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise _checkpoint_problem(path, f"config['generator'] does not describe a generator ({exc})") from exc
    try:
        settings = FinetuneSettings.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise _checkpoint_problem(path, f"its settings do not read ({exc})") from exc
    if property_names is not None and tuple(settings.property_names) != tuple(property_names):
        raise CheckpointError(f"{path} was fine-tuned for the properties {', '.join(settings.property_names)}, not "
                              f"{', '.join(property_names)}: another run's fine-tune (every request would fail); "
                              f"fix: pass a checkpoint of this pipeline's step 7b ({FINETUNE_FIX})")
    state = ckpt.get(entry)
    if not isinstance(state, dict):
        raise _checkpoint_problem(path, f"entry {entry!r} is missing or not a state_dict")
    load_state_dict_checked(generator, state, path, FINETUNE_FIX, entry=entry, what="the generator its config describes")
    generator.finetune_settings = settings
    generator.step = int(ckpt.get("step", 0))
    generator.requires_grad_(False)
    return generator.eval().to(device)
