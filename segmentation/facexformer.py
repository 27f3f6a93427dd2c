"""FaceXFormer (face parsing + 7 face-analysis heads) with the official state_dict layout.

Written from ``shared/reference/facexformer_spec.md``: a torchvision Swin-B v1 backbone built
empty (``weights=None``: nothing is ever downloaded; the checkpoint overwrites every tensor),
an MLP fusion of the four stage outputs, SAM-style random Fourier positional encoding and a
two-way transformer decoder whose 18 task tokens drive 7 small heads and an 11-class
segmentation head. Module names and registration order reproduce the official checkpoint's
505 keys exactly, so ``load_state_dict(strict=True)`` works on ``state_dict_backbone``.

Differences from the official code, none of which changes an output:
* stage features are taken by running ``backbone[0]`` (the Swin ``features``) stage by stage
  instead of forward hooks, and the final norm/pool (``backbone.1..4``), whose output the
  official forward throws away, is not run (its 2 keys are kept for strict loading);
* attention uses ``F.scaled_dot_product_attention`` (same maths as SAM's explicit softmax).
"""
from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoints import (
    FACEXFORMER,
    CheckpointError,
    check_finite_tensors,
    check_state_dict_fits,
    read_checkpoint,
    require_file,
)
from common.fingerprint import file_fingerprint
from common.io import atomic_torch_save, atomic_write_text
from common.runtime import resolve_device


RANDOM_WEIGHTS_KEY = "random_weights_recipe"
"""A key only random-weight checkpoints (demo, tests) carry beside ``state_dict_backbone``: the loader
then says so instead of warning that the file is not the official upload's size."""
log = logging.getLogger(__name__)

INPUT_SIZE = 224
"""The model only works at 3x224x224: the token grid (56x56) and the decoder assume it."""

NUM_SEG_CLASSES = 11
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TASK_IDS: dict[str, int] = {
    "parsing": 0, "landmarks": 1, "headpose": 2, "attributes": 3, "age_gender_race": 4, "visibility": 5,
}
HEAD_NAMES: tuple[str, ...] = ("landmark", "headpose", "attribute", "visibility", "age", "gender", "race")
"""Raw head outputs, in token order (tokens 0..6); names as in the golden file."""

_HEAD_OUT_DIMS: tuple[int, ...] = (136, 3, 40, 29, 8, 2, 5)
_TOKEN_NAMES: tuple[str, ...] = (
    "landmarks_token", "pose_token", "attribute_token", "visibility_token", "age_token", "gender_token",
    "race_token",
)
_HEAD_MODULES: tuple[str, ...] = (
    "landmarks_prediction_head", "pose_prediction_head", "attribute_prediction_head",
    "visibility_prediction_head", "age_prediction_head", "gender_prediction_head", "race_prediction_head",
)
_STAGE_INDICES: tuple[int, ...] = (1, 3, 5, 7)  # outputs of the four Swin stages inside backbone[0]
_STAGE_CHANNELS: tuple[int, ...] = (128, 256, 512, 1024)
_DIM = 256


# --------------------------------------------------------------------------------------------
# decoder building blocks (SAM-style)
# --------------------------------------------------------------------------------------------
class _HeadMLP(nn.Module):
    """``layers``: Linear in -> hidden -> ... -> out with ReLU between layers, nothing after the last."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


class _Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections and an optional narrower inner dim."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        inner = dim // downsample_rate
        if inner % num_heads:
            raise ValueError(f"inner dim {inner} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, C] -> [B, heads, N, C/heads]
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, no dropout
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class _MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class _TwoWayBlock(nn.Module):
    """Token self-attention, token->image, MLP, image->token (SAM's TwoWayAttentionBlock).

    Layer 0 (``first=True``) replaces the tokens by their self-attention output with no
    residual and no positional encoding, exactly as the official decoder does.
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, first: bool) -> None:
        super().__init__()
        self.first = first
        # registration order = the checkpoint's key order
        self.self_attn = _Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = _Attention(dim, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = _Attention(dim, num_heads, downsample_rate=2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.first:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class _TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = _DIM, num_heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _TwoWayBlock(dim, num_heads, mlp_dim, first=(i == 0)) for i in range(depth))
        self.final_attn_token_to_image = _Attention(dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image, image_pe: [B, C, H, W]; tokens: [B, T, C] -> (tokens [B, T, C], image [B, HW, C])."""
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q, k = queries + tokens, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class _LayerNorm2d(nn.Module):
    """Channel-wise LayerNorm over dim 1 of an NCHW map (SAM), eps 1e-6."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class _FaceDecoder(nn.Module):
    """18 task tokens (7 heads + 11 mask tokens) through the two-way transformer, then the heads."""

    def __init__(self, dim: int = _DIM) -> None:
        super().__init__()
        self.transformer = _TwoWayTransformer(dim=dim)
        for name in _TOKEN_NAMES:
            setattr(self, name, nn.Embedding(1, dim))
        self.mask_tokens = nn.Embedding(NUM_SEG_CLASSES, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            _LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        # one MLP shared by all 11 mask tokens, despite the plural name
        self.output_hypernetwork_mlps = _HeadMLP(dim, dim, dim // 8)
        for name, out_dim in zip(_HEAD_MODULES, _HEAD_OUT_DIMS):
            setattr(self, name, _HeadMLP(dim, dim, out_dim))

    def tokens(self) -> torch.Tensor:
        weights = [getattr(self, name).weight for name in _TOKEN_NAMES] + [self.mask_tokens.weight]
        return torch.cat(weights, dim=0)  # [18, C]

    def decode(self, image: torch.Tensor, image_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image: [B, C, 56, 56], image_pe: [1, C, 56, 56] -> (token outputs [B, 18, C], image [B, HW, C])."""
        b = image.shape[0]
        tokens = self.tokens().unsqueeze(0).expand(b, -1, -1)
        return self.transformer(image, image_pe.expand(b, -1, -1, -1), tokens)

    def seg_logits(self, token_out: torch.Tensor, image_out: torch.Tensor,
                   hw: tuple[int, int]) -> torch.Tensor:
        """[B, 11, 4H, 4W]: shared hypernetwork(mask tokens) . upscaled image features."""
        b, _, c = image_out.shape
        # Contiguous NCHW, whatever the batch size: the official ``transpose(1, 2).view(...)`` is a
        # channels_last view, which oneDNN keeps for batches > 1 but not for one image, so the
        # channel LayerNorm after the first transposed conv reduced in another order for batches
        # than for single images: logits moved by ~1e-6 and near-tied pixels flipped class with
        # --batch-size. One layout = the official batch-1 numerics for every batch size.
        upscaled = self.output_upscaling(image_out.transpose(1, 2).reshape(b, c, *hw).contiguous())
        hyper = self.output_hypernetwork_mlps(token_out[:, len(_TOKEN_NAMES):, :])  # [B, 11, 32]
        bu, cu, hu, wu = upscaled.shape
        return (hyper @ upscaled.reshape(bu, cu, hu * wu)).reshape(bu, -1, hu, wu)

    def head_outputs(self, token_out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: getattr(self, module)(token_out[:, i, :])
                for i, (name, module) in enumerate(zip(HEAD_NAMES, _HEAD_MODULES))}


class _PositionEmbeddingRandom(nn.Module):
    """SAM's random Fourier features; the Gaussian matrix is a checkpoint buffer (always loaded)."""

    def __init__(self, num_pos_feats: int = _DIM // 2) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """[C, h, w] with C = 2 * num_pos_feats; pixel centres (i + 0.5) / n, x before y, sin before cos."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=matrix.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=matrix.device, dtype=torch.float32) + 0.5) / w
        coords = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        coords = (2 * coords - 1) @ matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1)


class _FusionProj(nn.Module):
    """Per-pixel Linear C_i -> 256 (the key ``linear_c.i.proj``)."""

    def __init__(self, in_dim: int, out_dim: int = _DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)


def _build_swin_backbone() -> nn.Sequential:
    """torchvision Swin-B v1 without its classifier, built empty (``weights=None``: no download)."""
    from torchvision.models import swin_b

    swin = swin_b(weights=None)
    return nn.Sequential(*list(swin.children())[:-1])


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
class FaceXFormer(nn.Module):
    """FaceXFormer with the official module names (``backbone, pe_layer, face_decoder, linear_c,
    linear_fuse``; 505 state_dict keys, 91,985,943 parameters).

    Input: ImageNet-normalised ``[N, 3, 224, 224]`` float. Use :meth:`segment_logits` /
    :meth:`segment` for parsing and :meth:`heads` for the other tasks; ``forward(x, labels,
    tasks)`` mirrors the official call and its per-task row selection.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _build_swin_backbone()
        self.pe_layer = _PositionEmbeddingRandom(_DIM // 2)
        self.face_decoder = _FaceDecoder(_DIM)
        self.linear_c = nn.ModuleList(_FusionProj(c) for c in _STAGE_CHANNELS)
        self.linear_fuse = nn.Conv2d(_DIM * len(_STAGE_CHANNELS), _DIM, kernel_size=1, bias=False)

    # -- building blocks --------------------------------------------------------------------
    @staticmethod
    def _check_input(x: torch.Tensor) -> None:
        expected = (3, INPUT_SIZE, INPUT_SIZE)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != expected:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"FaceXFormer expects a normalised float tensor [N, 3, 224, 224], got {got}")
        if not x.is_floating_point():
            raise ValueError(f"FaceXFormer expects a float tensor (ImageNet-normalised), got {x.dtype}")

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four Swin stage outputs, NCHW: [N,128,56,56], [N,256,28,28], [N,512,14,14], [N,1024,7,7]."""
        feats = []
        h = x
        features = self.backbone[0]
        for i, module in enumerate(features):
            h = module(h)
            if i in _STAGE_INDICES:
                feats.append(h)  # NHWC; projected per pixel below, permuted there
        return feats

    def fused_states(self, x: torch.Tensor) -> torch.Tensor:
        """Face tokens F: [N, 256, 56, 56] (MLP fusion, deepest level first, 1x1 conv without bias)."""
        feats_nhwc = self.stage_features(x)
        size = feats_nhwc[0].shape[1:3]
        levels = []
        for feat, mlp in zip(feats_nhwc, self.linear_c):
            projected = mlp.proj(feat).permute(0, 3, 1, 2)  # per-pixel Linear, then NCHW
            levels.append(F.interpolate(projected, size=size, mode="bilinear", align_corners=False))
        return self.linear_fuse(torch.cat(levels[::-1], dim=1))

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        self._check_input(x)
        fused = self.fused_states(x)
        hw = (fused.shape[2], fused.shape[3])
        image_pe = self.pe_layer(hw).unsqueeze(0)
        token_out, image_out = self.face_decoder.decode(fused, image_pe)
        return token_out, image_out, hw

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        param = self.linear_fuse.weight
        return x.to(device=param.device, dtype=param.dtype)

    # -- public API -------------------------------------------------------------------------
    def segment_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Parsing logits ``[N, 11, 224, 224]`` float32 (crop space, no softmax) for ``x: [N, 3, 224, 224]``.

        Runs in eval-independent inference mode (no autograd); the result is on the model's device.
        """
        with torch.inference_mode():
            token_out, image_out, hw = self._decode(self._prepare(x))
            return self.face_decoder.seg_logits(token_out, image_out, hw).float()

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Label maps ``[N, 224, 224]`` uint8, as the official demo: ``softmax(1)`` then ``argmax(1)``.

        The softmax is kept (not just argmax of the logits) so that float ties resolve exactly as
        in the official code.
        """
        with torch.inference_mode():
            return self.segment_logits(x).softmax(dim=1).argmax(dim=1).to(torch.uint8)

    def heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs of the 7 task heads for every item: landmark [N,136] (x,y in [-1,1]),
        headpose [N,3] (pitch/yaw/roll, radians), attribute [N,40], visibility [N,29]
        (1 = occluded after sigmoid), age [N,8], gender [N,2], race [N,5] (logits)."""
        with torch.inference_mode():
            token_out, _, _ = self._decode(self._prepare(x))
            return self.face_decoder.head_outputs(token_out)

    def parse_with_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Label maps (exactly :meth:`segment`) and the pose heads from **one** backbone pass.

        Returns ``(maps [N, 224, 224] uint8, {"landmarks": [N, 68, 2] float32 crop pixels (x, y),
        "headpose": [N, 3] float32 degrees (pitch, yaw, roll)})``: the official inference's
        conversions (``denorm_points`` without align_corners; radians to degrees).
        """
        with torch.inference_mode():
            token_out, image_out, hw = self._decode(self._prepare(x))
            logits = self.face_decoder.seg_logits(token_out, image_out, hw).float()
            maps = logits.softmax(dim=1).argmax(dim=1).to(torch.uint8)
            heads = self.face_decoder.head_outputs(token_out)
            points = heads["landmark"].float().reshape(-1, 68, 2)
            landmarks = ((points + 1.0) * INPUT_SIZE - 1.0) / 2.0
            headpose = torch.rad2deg(heads["headpose"].float())
        return maps, {"landmarks": landmarks, "headpose": headpose}

    def forward(self, x: torch.Tensor, labels: Any = None,
                tasks: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Official call: returns ``(landmark, headpose, attribute, visibility, age, gender, race, seg)``,
        each keeping only the rows whose task id asks for it (tasks default: all parsing).
        ``labels`` is ignored, as in the official code. Autograd works here (unlike segment_logits).
        """
        token_out, image_out, hw = self._decode(x)
        heads = self.face_decoder.head_outputs(token_out)
        seg = self.face_decoder.seg_logits(token_out, image_out, hw)
        if tasks is None:
            tasks = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        tasks = tasks.to(seg.device)
        rows = {
            "landmark": tasks == 1, "headpose": tasks == 2, "attribute": tasks == 3, "visibility": tasks == 5,
            "age": tasks == 4, "gender": tasks == 4, "race": tasks == 4,
        }
        return tuple(heads[name][rows[name]] for name in HEAD_NAMES) + (seg[tasks == 0],)


# --------------------------------------------------------------------------------------------
# checkpoint loading
# --------------------------------------------------------------------------------------------
def swin_relative_position_index(window: int = 7) -> torch.Tensor:
    """The standard Swin relative-position index for a ``window x window`` window: int64 [window**4]."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).flatten().to(torch.int64)


@functools.lru_cache(maxsize=1)
def _expected_state() -> dict[str, torch.Tensor]:
    """The model's state_dict on the meta device: every key with its shape and dtype, no memory."""
    with torch.device("meta"):
        model = FaceXFormer()
    return dict(model.state_dict())


def facexformer_key_shapes() -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the model with its shape, in state_dict order (built on the meta device)."""
    return {k: tuple(v.shape) for k, v in _expected_state().items()}


def _short_list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_state_dict(state_dict: Mapping[str, Any], source: str = "state_dict") -> None:
    """Raise CheckpointError in one line if keys, shapes or dtypes differ from the model's (the common report)."""
    expected = _expected_state()
    check_state_dict_fits(expected, state_dict, source, FACEXFORMER.how_to_get,
                          what=f"FaceXFormer (the {len(expected)} official keys)")


def clean_checkpoint_path(path: Path | str) -> Path:
    """Where the weights-only copy of a trusted checkpoint is written (next to it)."""
    path = Path(path)
    return path.with_name(path.stem + ".weights_only.pt")


def _clean_source_path(clean: Path) -> Path:
    """The weights-only copy's key: the fingerprint of the file it was made from (content, never mtime)."""
    return clean.with_name(clean.name + ".source")


def _clean_copy_of(path: Path) -> Path | None:
    """The weights-only copy made from these very bytes, or None (absent, or made from another file)."""
    clean = clean_checkpoint_path(path)
    key = _clean_source_path(clean)
    if not (clean.is_file() and key.is_file()):
        return None
    return clean if key.read_text(encoding="utf-8").strip() == file_fingerprint(path) else None


def _read_checkpoint(path: Path, trusted: bool) -> tuple[Any, Path]:
    """(content, the file it came from). A file that loads only with ``trusted`` (the reader's short
    allow-list of plain types, never code) is read that way once, and its weights are re-saved next to
    it (:func:`clean_checkpoint_path`), which later runs load without the flag."""
    try:
        return read_checkpoint(path, FACEXFORMER, trust=False, mmap=True), path
    except CheckpointError:
        if not trusted:
            raise
    obj = read_checkpoint(path, FACEXFORMER, trust=True, mmap=True)
    state_dict = _extract_state_dict(obj, path)
    check_state_dict(state_dict, str(path))
    clean = clean_checkpoint_path(path)

    key = _clean_source_path(clean)
    key.unlink(missing_ok=True)  # the key goes first and comes back last: a kill never pairs a copy with another key
    atomic_torch_save(clean, {k: v.contiguous() for k, v in state_dict.items()})
    atomic_write_text(key, file_fingerprint(path) + "\n")
    log.warning("wrote the weights-only copy %s; pass it as the checkpoint next time", clean)
    return state_dict, clean


def _extract_state_dict(obj: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict: not a FaceXFormer checkpoint"
                              f"\n{FACEXFORMER.describe()}")
    if "state_dict_backbone" in obj:
        return obj["state_dict_backbone"]
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj  # a bare state_dict (e.g. the weights-only copy)
    raise CheckpointError(
        f"{path} is a dict with keys {_short_list([str(k) for k in obj])}, but neither "
        f"'state_dict_backbone' (official file) nor tensors (a bare state_dict)\n{FACEXFORMER.describe()}"
    )


def load_facexformer(path: Path | str, device: str | torch.device = "cpu",
                     trusted: bool = False) -> FaceXFormer:
    """Load the official checkpoint (dict with ``state_dict_backbone``) or a bare state_dict, strictly.

    Safe by default (``weights_only=True``). ``trusted=True`` is the explicit opt-in for a file
    whose extra entries (saved ``args``, numpy scalars) the safe loader rejects: it is read once with
    the reader's short allow-list of plain types (never code, never a full unpickle) and its weights
    are re-saved next to it (:func:`clean_checkpoint_path`). Returns the model
    in eval mode on ``device`` ("auto" allowed). Wrong files raise :class:`CheckpointError` with a
    plain message.
    """
    path = require_file(path, FACEXFORMER)
    clean = _clean_copy_of(path) if trusted else None
    if clean is not None:
        log.info("using the weights-only copy %s made earlier from %s", clean, path)
        path = clean
    obj, loaded_from = _read_checkpoint(path, trusted)
    state_dict = _extract_state_dict(obj, path)
    official_format = isinstance(obj, Mapping) and "state_dict_backbone" in obj
    size = path.stat().st_size
    if official_format and RANDOM_WEIGHTS_KEY in obj:   # the demo's own file: its size is known to differ
        log.info("%s holds random weights (%s): its parsing means nothing", path, obj[RANDOM_WEIGHTS_KEY])
    elif official_format and FACEXFORMER.size_bytes and size != FACEXFORMER.size_bytes:
        log.warning("%s is %s bytes, the official upload is %s bytes (an older upload or a re-saved file?); "
                    "keys and shapes are checked strictly, so loading goes on", path, f"{size:,}",
                    f"{FACEXFORMER.size_bytes:,}")
    check_state_dict(state_dict, str(loaded_from))

    expected = facexformer_key_shapes()
    tensors: dict[str, torch.Tensor] = {}
    for key in expected:
        value = state_dict[key]
        if key.endswith("relative_position_index"):
            if value.dtype != torch.int64 or not torch.equal(value, swin_relative_position_index(7)):
                log.warning("%s in %s is not the standard Swin window-7 index", key, path)
            tensors[key] = value.to(torch.int64)
        else:
            if value.dtype != torch.float32:
                log.info("%s is %s; converting to float32", key, value.dtype)
            tensors[key] = value.to(torch.float32)
    check_finite_tensors(tensors, loaded_from, FACEXFORMER.how_to_get)
    with torch.device("meta"):
        model = FaceXFormer()
    model.load_state_dict(tensors, strict=True, assign=True)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:  # pragma: no cover - would mean a non-persistent tensor was added to the model
        raise RuntimeError(f"tensors not initialised by the checkpoint: {leftover}")
    model = model.to(resolve_device(device) if isinstance(device, str) else device)
    model.eval()
    log.info("loaded FaceXFormer from %s (%d tensors)", loaded_from, len(tensors))
    return model
