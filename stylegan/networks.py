"""StyleGAN (v1) generator and discriminator with genforce's constructor keywords and state_dict keys.

Written from ``shared/reference/genforce_stylegan_spec.md`` so that genforce checkpoints
(``stylegan_celeba_partial256.pth``) load with ``strict=True`` and give genforce's images.
One deliberate difference: ``forward`` does only what its arguments ask. genforce style-mixes
(probability 0.9) and updates ``w_avg`` whenever the module is in ``.train()`` mode; the original
project generated in train mode and so style-mixed 90% of its images. Here both are explicit
arguments (``style_mixing_prob``, ``update_w_avg``) that default to off.

Layout notes: tensors are NCHW, RGB, raw float (nominal range [-1, 1], not clamped).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_RESOLUTIONS_ALLOWED = (8, 16, 32, 64, 128, 256, 512, 1024)
_FUSED_SCALE_ALLOWED = (True, False, "auto")
_AUTO_FUSED_SCALE_MIN_RES = 128  # genforce: 'auto' fuses up/down-sampling at res >= 128
_INIT_RES = 4
_LRELU_SLOPE = 0.2
_EPS = 1e-8

__all__ = ["StyleGANGenerator", "StyleGANDiscriminator", "postprocess_uint8", "prepack_for_cpu"]


def _check_resolution(resolution: int) -> None:
    if resolution not in _RESOLUTIONS_ALLOWED:
        raise ValueError(f"invalid resolution {resolution!r}; allowed: {_RESOLUTIONS_ALLOWED}")


def _check_fused_scale(fused_scale) -> None:
    if fused_scale not in _FUSED_SCALE_ALLOWED:
        raise ValueError(f"invalid fused_scale {fused_scale!r}; allowed: {_FUSED_SCALE_ALLOWED}")


def _nf(res: int, fmaps_base: int, fmaps_max: int) -> int:
    """Channels at a resolution: min(fmaps_base // res, fmaps_max)."""
    return min(fmaps_base // res, fmaps_max)


def _blur_kernel(channels: int) -> torch.Tensor:
    """genforce's fixed [1,2,1] x [1,2,1] / 16 kernel tiled to [C, 1, 3, 3]."""
    k1 = torch.tensor([1.0, 2.0, 1.0])
    k = torch.outer(k1, k1)
    k = k / k.sum()
    return k.reshape(1, 1, 3, 3).repeat(channels, 1, 1, 1)


def _fused_kernel(weight: torch.Tensor) -> torch.Tensor:
    """4x4 kernel of a fused (stride-2) conv: the 3x3 kernel summed over its four 1-pixel shifts."""
    w = F.pad(weight, (1, 1, 1, 1))
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


def _upsample_nearest2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def postprocess_uint8(image: torch.Tensor) -> np.ndarray:
    """Raw NCHW generator output -> NHWC uint8 RGB exactly as genforce: clip((x+1)*127.5+0.5) in float64, truncate."""
    x = image.detach().to(torch.float64)
    x = ((x + 1.0) * 127.5 + 0.5).clamp_(0.0, 255.0).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def prepack_for_cpu(generator: nn.Module) -> int:
    """Opt in: inference renders of one float32 image on the CPU use convolution kernels reordered for
    oneDNN once, instead of on every call (the eager convolution reorders 2-17 MB of kernel per layer per
    call; measured 15-25% off a 256 px batch-one render on 2 cores). Same maths, other float rounding
    (~1e-5 relative), so a caller that compares bits renders every image this way. Returns the number of
    layers switched (0 where torch has no oneDNN); training and batches larger than one are unchanged.
    """
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return 0
    layers = [m for m in generator.modules() if isinstance(m, _SynthesisLayer) and m.kind != "const"]
    for layer in layers:
        layer.prepacked = True
    return len(layers)


# ----------------------------------------------------------------------------------------------
# Generator building blocks


class _Blur(nn.Module):
    """Depthwise [1,2,1]^2/16 blur; the kernel is a state_dict buffer (``blur.kernel``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=1, groups=x.shape[1])


class _NoiseApplier(nn.Module):
    """Adds per-pixel noise (the stored buffer, or fresh randn) scaled per channel."""

    def __init__(self, resolution: int, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))
        self.register_buffer("noise", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, randomize_noise: bool) -> torch.Tensor:
        if randomize_noise:
            # genforce draws on the CPU RNG, then moves the noise to x's device
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3]).to(x)
        else:
            noise = self.noise
        return x + noise * self.weight.view(1, -1, 1, 1)


class _StyleMod(nn.Module):
    """Affine map w -> (scale, shift) per channel; x * (scale + 1) + shift."""

    def __init__(self, w_dim: int, channels: int, use_wscale: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels * 2, w_dim))
        self.bias = nn.Parameter(torch.zeros(channels * 2))
        self.scale = 1.0 / math.sqrt(w_dim) if use_wscale else 1.0

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        style = F.linear(w, self.weight * self.scale, self.bias)
        channels = x.shape[1]
        scale = style[:, :channels].view(-1, channels, 1, 1)
        shift = style[:, channels:].view(-1, channels, 1, 1)
        return x * (scale + 1.0) + shift, style


class _SynthesisLayer(nn.Module):
    """One synthesis layer: [const | conv | up+conv+blur | fused up-conv+blur] -> noise, bias, lrelu, IN, style.

    ``kind`` is one of 'const', 'conv', 'up', 'fused_up'. Parameter registration order matches
    genforce's state_dict order (bias before weight, then apply_noise, style, blur).
    """

    def __init__(self, kind: str, in_channels: int, out_channels: int, resolution: int,
                 w_dim: int, use_wscale: bool):
        super().__init__()
        self.kind = kind
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if kind == "const":
            self.const = nn.Parameter(torch.ones(1, out_channels, _INIT_RES, _INIT_RES))
        else:
            self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
            self.scale = math.sqrt(2.0) / math.sqrt(in_channels * 9) if use_wscale else 1.0
        self.apply_noise = _NoiseApplier(resolution, out_channels)
        # Layout of the inference path. channels_last (NHWC) lets oneDNN run the convolutions and the
        # transposed convolutions without reordering every activation to its blocked layout and back;
        # measured 1.4x faster for the whole generator at 256 on CPU than NCHW.
        self.memory_format = torch.channels_last
        self.prepacked = False  # see prepack_for_cpu
        self.style = _StyleMod(w_dim, out_channels, use_wscale)
        if kind in ("up", "fused_up"):
            self.blur = _Blur(out_channels)

    def forward(self, x: torch.Tensor | None, w: torch.Tensor, randomize_noise: bool,
                features: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # The fast path only under inference_mode, which every generation script uses. Training,
        # including its no_grad fakes (under AMP too), keeps genforce's op order, so a run's
        # trajectory does not depend on this optimisation.
        if torch.is_inference_mode_enabled():
            return self._forward_inference(x, w, randomize_noise, features)
        return self._forward_autograd(x, w, randomize_noise, features)

    def _forward_autograd(self, x: torch.Tensor | None, w: torch.Tensor, randomize_noise: bool,
                          features: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
        """genforce's op sequence, out of place (training, no_grad, anything that needs gradients)."""
        if self.kind == "const":
            x = self.const.repeat(w.shape[0], 1, 1, 1)
        elif self.kind == "conv":
            x = F.conv2d(x, self.weight * self.scale, padding=1)
        elif self.kind == "up":
            x = F.conv2d(_upsample_nearest2(x), self.weight * self.scale, padding=1)
            x = self.blur(x)
        else:  # fused_up: transposed conv with the 4-tap-summed kernel (no 1/4 factor in G)
            kernel = _fused_kernel(self.weight * self.scale)
            x = F.conv_transpose2d(x, kernel.permute(1, 0, 2, 3), stride=2, padding=1)
            x = self.blur(x)
        if features is not None:
            features["pre_noise"] = x
        x = self.apply_noise(x, randomize_noise)
        x = F.leaky_relu(x + self.bias.view(1, -1, 1, 1), _LRELU_SLOPE)
        if features is not None:
            features["pre_norm"] = x
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + _EPS)
        x, style = self.style(x, w)
        if features is not None:
            features["out"] = x
        return x, style

    def _transposed_kernel(self) -> torch.Tensor:
        """conv_transpose2d weight [in, out, 4, 4] of an 'up' or 'fused_up' layer."""
        kernel = _fused_kernel(self.weight * self.scale)
        if self.kind == "up":  # nearest-upsample then 3x3 conv == transposed conv with the flipped fused kernel
            kernel = kernel.flip(2, 3)
        return kernel.permute(1, 0, 2, 3).contiguous()

    def _cached(self, name: str, sources: tuple[torch.Tensor, ...], build) -> torch.Tensor:
        """``build()``, recomputed only when a source tensor changed (inference path only).

        A source counts as changed when it is another object, another storage (``.to()``,
        ``.half()``) or was written in place (optimiser steps and ``load_state_dict`` bump
        ``_version``), so a cached kernel can never outlive the weights it was made from. Weights
        that are themselves inference tensors (moved with ``.to()`` inside inference_mode) have no
        version counter: nothing is cached for them.
        """
        if any(t.is_inference() for t in sources):  # made under inference_mode: no version counter to watch
            return build()
        key = tuple((t, t._version, t.data_ptr()) for t in sources)
        cache = self.__dict__.setdefault("_inference_cache", {})
        hit = cache.get(name)
        if hit is not None and len(hit[0]) == len(key) and all(
                a[0] is b[0] and a[1:] == b[1:] for a, b in zip(hit[0], key)):
            return hit[1]
        value = build()
        cache[name] = (key, value)
        return value

    def _packed_ok(self, x: torch.Tensor) -> bool:
        """The prepacked oneDNN path applies: opted in, one float32 image on the CPU, channels_last."""
        return (self.prepacked and x.shape[0] == 1 and x.device.type == "cpu" and x.dtype == torch.float32
                and not x.requires_grad   # oneDNN's packed kernel has no backward (the studio's refine needs one)
                and x.is_contiguous(memory_format=torch.channels_last))

    def _packed_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's convolution with its kernel reordered for oneDNN once (``_cached``), not on every call."""
        mkldnn = torch.ops.mkldnn
        size = list(x.shape)
        if self.kind == "conv":
            packed = self._cached("packed", (self.weight,), lambda: mkldnn._reorder_convolution_weight(
                self.weight * self.scale, [1, 1], [1, 1], [1, 1], 1, size))
            return mkldnn._convolution_pointwise(x, packed, None, [1, 1], [1, 1], [1, 1], 1, "none", [], "")
        packed = self._cached("packed", (self.weight,), lambda: mkldnn._reorder_convolution_transpose_weight(
            self._transposed_kernel(), [1, 1], [0, 0], [2, 2], [1, 1], 1, size))
        return mkldnn._convolution_transpose_pointwise(x, packed, None, [1, 1], [0, 0], [2, 2], [1, 1], 1, "none",
                                                       [], "")

    def _forward_inference(self, x: torch.Tensor | None, w: torch.Tensor, randomize_noise: bool,
                           features: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The same function with fewer passes over memory (inference mode: ops may run in place).

        At 256 px the layer is memory-bound: genforce's chain (noise, bias, lrelu, centre, scale,
        style) allocates and streams a full-size tensor eight times. Here: one add of the
        precomputed noise*weight + bias, lrelu in place, one mean, one in-place centring, one norm
        and one fused multiply-add that applies the instance norm and the style together. The
        nearest-upsample + 3x3 conv of 'up' layers runs as the equivalent stride-2 transposed conv
        (the 3x3 kernel summed over its 2x2 shifts and flipped): 2.25x fewer multiply-adds and no
        upsampled copy. Same maths; float rounding differs by ~1e-6 relative.
        """
        if self.kind == "const":
            x = self.const.expand(w.shape[0], -1, -1, -1).contiguous(memory_format=self.memory_format)
        elif self._packed_ok(x):
            x = self._packed_conv(x)
            if self.kind != "conv":
                x = self.blur(x)
        elif self.kind == "conv":
            x = F.conv2d(x, self._cached("kernel", (self.weight,), lambda: self.weight * self.scale), padding=1)
        else:
            x = F.conv_transpose2d(x, self._cached("kernel", (self.weight,), self._transposed_kernel),
                                   stride=2, padding=1)
            x = self.blur(x)
        if features is not None:
            features["pre_noise"] = x.clone()
        channel = (1, -1, 1, 1)
        if randomize_noise:  # same draw as the reference path: CPU RNG, one map per image
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3]).to(x)
            x.add_(torch.addcmul(self.bias.view(channel), noise, self.apply_noise.weight.view(channel)))
        else:
            x.add_(self._cached("noise_bias", (self.bias, self.apply_noise.weight, self.apply_noise.noise),
                                lambda: torch.addcmul(self.bias.view(channel), self.apply_noise.noise,
                                                      self.apply_noise.weight.view(channel))))
        F.leaky_relu_(x, _LRELU_SLOPE)
        if features is not None:
            features["pre_norm"] = x.clone()
        x.sub_(x.mean(dim=(2, 3), keepdim=True))
        if x.is_contiguous():  # rms of the centred map: sqrt(sum x^2) / sqrt(H*W), one read, no temporary
            inv_std = torch.rsqrt(torch.linalg.vector_norm(x, dim=(2, 3), keepdim=True).square_()
                                  .div_(x.shape[2] * x.shape[3]).add_(_EPS))
        else:  # channels_last: the strided norm is slow there, a squared copy is not
            inv_std = torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True).add_(_EPS))
        style = F.linear(w, self.style.weight * self.style.scale, self.style.bias)
        channels = x.shape[1]
        scale = style[:, :channels].view(-1, channels, 1, 1)
        shift = style[:, channels:].view(-1, channels, 1, 1)
        x = torch.addcmul(shift, x, inv_std * (scale + 1.0), out=x)
        if features is not None:
            features["out"] = x
        return x, style


class _ToRGB(nn.Module):
    """1x1 conv + bias, linear (gain 1)."""

    def __init__(self, in_channels: int, image_channels: int, use_wscale: bool):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(image_channels))
        self.weight = nn.Parameter(torch.randn(image_channels, in_channels, 1, 1))
        self.scale = 1.0 / math.sqrt(in_channels) if use_wscale else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias)


class _Dense(nn.Module):
    """Equalised-learning-rate linear layer; lr_mul scales both the weight and the bias."""

    def __init__(self, in_dim: int, out_dim: int, gain: float, lr_mul: float, use_wscale: bool,
                 activate: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = (gain / math.sqrt(in_dim) if use_wscale else 1.0) * lr_mul
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(x, _LRELU_SLOPE) if self.activate else x


def _pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + _EPS)


class _Mapping(nn.Module):
    """z (+ label embedding) -> pixel norm -> ``mapping_layers`` dense layers, each with lrelu."""

    def __init__(self, z_dim: int, w_out_dim: int, label_size: int, mapping_layers: int,
                 mapping_fmaps: int, lr_mul: float, use_wscale: bool):
        super().__init__()
        self.z_dim = z_dim
        self.label_size = label_size
        if label_size:
            self.label_weight = nn.Parameter(torch.randn(label_size, z_dim))
        in_dim = z_dim * 2 if label_size else z_dim
        self.num_layers = mapping_layers
        for i in range(mapping_layers):
            out_dim = w_out_dim if i == mapping_layers - 1 else mapping_fmaps
            self.add_module(f"dense{i}", _Dense(in_dim, out_dim, math.sqrt(2.0), lr_mul, use_wscale, True))
            in_dim = out_dim

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [batch, {self.z_dim}], got {list(z.shape)}")
        results: dict[str, torch.Tensor] = {}
        if self.label_size:
            if label is None:
                raise ValueError(f"this generator is conditional: pass label of shape [batch, {self.label_size}]")
            if label.ndim != 2 or label.shape != (z.shape[0], self.label_size):
                raise ValueError(f"label must have shape [{z.shape[0]}, {self.label_size}], got {list(label.shape)}")
            embedding = label.to(z) @ self.label_weight
            results["embedding"] = embedding
            z = torch.cat([z, embedding], dim=1)
        x = z = _pixel_norm(z)
        for i in range(self.num_layers):
            x = getattr(self, f"dense{i}")(x)
        results["z"] = z
        results["label"] = label
        results["w"] = x
        return results


class _Truncation(nn.Module):
    """w [N,D] -> wp [N,L,D] (repeat), then w_avg + psi (wp - w_avg) on layers < trunc_layers."""

    def __init__(self, w_dim: int, num_layers: int, repeat_w: bool):
        super().__init__()
        self.num_layers = num_layers
        self.w_dim = w_dim
        self.repeat_w = repeat_w
        self.register_buffer("w_avg", torch.zeros(w_dim if repeat_w else w_dim * num_layers))

    def forward(self, w: torch.Tensor, trunc_psi: float | None = None, trunc_layers: int | None = None) -> torch.Tensor:
        if w.ndim == 2:
            if self.repeat_w:
                wp = w.view(-1, 1, self.w_dim).repeat(1, self.num_layers, 1)
            else:
                wp = w.view(-1, self.num_layers, self.w_dim)
        else:
            wp = w
        psi = 1.0 if trunc_psi is None else float(trunc_psi)
        layers = 0 if trunc_layers is None else int(trunc_layers)
        if psi < 1.0 and layers > 0:
            w_avg = self.w_avg.view(1, -1, self.w_dim)
            mask = torch.zeros(1, self.num_layers, 1, device=wp.device, dtype=wp.dtype)
            mask[:, :layers] = 1.0
            truncated = w_avg + (wp - w_avg) * psi
            wp = torch.where(mask.bool(), truncated, wp)
        return wp


class _Synthesis(nn.Module):
    """Constant 4x4 input grown to ``resolution`` by pairs of layers; ToRGB per block for progressive lod."""

    def __init__(self, resolution: int, w_dim: int, image_channels: int, fused_scale, use_wscale: bool,
                 fmaps_base: int, fmaps_max: int):
        super().__init__()
        self.resolution = resolution
        self.num_blocks = int(math.log2(resolution)) - 1
        self.num_layers = self.num_blocks * 2
        self.register_buffer("lod", torch.zeros(()))
        for b in range(self.num_blocks):
            res = _INIT_RES * 2**b
            channels = _nf(res, fmaps_base, fmaps_max)
            if b == 0:
                self.add_module("layer0", _SynthesisLayer("const", channels, channels, res, w_dim, use_wscale))
            else:
                prev = _nf(res // 2, fmaps_base, fmaps_max)
                fused = fused_scale is True or (fused_scale == "auto" and res >= _AUTO_FUSED_SCALE_MIN_RES)
                kind = "fused_up" if fused else "up"
                self.add_module(f"layer{2 * b}", _SynthesisLayer(kind, prev, channels, res, w_dim, use_wscale))
            self.add_module(f"layer{2 * b + 1}", _SynthesisLayer("conv", channels, channels, res, w_dim, use_wscale))
            self.add_module(f"output{b}", _ToRGB(channels, image_channels, use_wscale))

    def forward(self, wp: torch.Tensor, lod: float | None = None, randomize_noise: bool = False,
                features: dict | None = None) -> dict[str, torch.Tensor]:
        if wp.ndim != 3 or wp.shape[1] != self.num_layers:
            raise ValueError(f"wp must have shape [batch, {self.num_layers}, w_dim], got {list(wp.shape)}")
        lod = float(self.lod.item()) if lod is None else float(lod)
        if not 0.0 <= lod <= self.num_blocks - 1:
            raise ValueError(f"lod must be in [0, {self.num_blocks - 1}], got {lod}")
        results: dict[str, torch.Tensor] = {}
        x = image = None
        for b in range(self.num_blocks):
            cur = self.num_blocks - 1 - b  # lod at which this block's ToRGB is the output
            if lod < cur + 1:
                for i in (2 * b, 2 * b + 1):
                    feats = {} if features is not None else None
                    x, style = getattr(self, f"layer{i}")(x, wp[:, i], randomize_noise, feats)
                    results[f"style{i:02d}"] = style
                    if features is not None:
                        features[f"layer{i}"] = feats
                if cur - 1 < lod <= cur:
                    image = getattr(self, f"output{b}")(x)
                elif cur < lod < cur + 1:
                    alpha = math.ceil(lod) - lod
                    image = getattr(self, f"output{b}")(x) * alpha + _upsample_nearest2(image) * (1 - alpha)
            elif image is not None:  # block skipped at this lod: carry the image up
                image = _upsample_nearest2(image)
        results["image"] = image.contiguous()  # NCHW whatever layout the inference path used
        return results

    def run_layers(self, wp: torch.Tensor, start: int, stop: int, x: torch.Tensor | None = None,
                   randomize_noise: bool = False) -> torch.Tensor:
        """The activation after layers ``start .. stop-1``; ``x``: the output of layer ``start - 1`` (None at 0).

        The same layer calls as :meth:`forward` at lod 0, so a render resumed from a kept activation
        gives the same bits as one that ran every layer (the studio keeps the layers before an edit's
        first layer). No layer writes to its input: a kept activation stays valid.
        """
        if wp.ndim != 3 or wp.shape[1] != self.num_layers:
            raise ValueError(f"wp must have shape [batch, {self.num_layers}, w_dim], got {list(wp.shape)}")
        if not 0 <= start <= stop <= self.num_layers or (x is None) != (start == 0):
            raise ValueError(f"need 0 <= start <= stop <= {self.num_layers} and x exactly when start > 0, "
                             f"got start={start}, stop={stop}, x={'given' if x is not None else None}")
        for i in range(start, stop):
            x, _ = getattr(self, f"layer{i}")(x, wp[:, i], randomize_noise)
        return x

    def block_image(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """Block ``block``'s to-RGB of its last layer's output: the image at ``4 * 2**block`` px, NCHW.

        The last block gives :meth:`forward`'s image at lod 0; an earlier one the progressive-growing
        output of that resolution (forward at an integer lod, before its nearest upsampling).
        """
        if not 0 <= block < self.num_blocks:
            raise ValueError(f"block must be in 0..{self.num_blocks - 1}, got {block}")
        return getattr(self, f"output{block}")(x).contiguous()


class StyleGANGenerator(nn.Module):
    """StyleGAN (v1) generator, genforce-compatible.

    Settings (genforce names and defaults):
        resolution: output size, one of 8..1024 (powers of two).
        z_space_dim=512: latent z size.          w_space_dim=512: disentangled w size.
        label_size=0: conditional if > 0 (label @ mapping.label_weight joined to z).
        mapping_layers=8, mapping_fmaps=512, mapping_lr_mul=0.01: mapping network.
        repeat_w=True: one w repeated for every synthesis layer.
        image_channels=3, final_tanh=False (raw output), const_input=True (only True is supported).
        fused_scale='auto': fused up-sampling (transposed conv) at res >= 128.
        use_wscale=True: equalised learning rate.   noise_type='spatial' (only 'spatial').
        fmaps_base=16384, fmaps_max=512: channels min(fmaps_base // res, fmaps_max).
    """

    def __init__(self, resolution: int, z_space_dim: int = 512, w_space_dim: int = 512, label_size: int = 0,
                 mapping_layers: int = 8, mapping_fmaps: int = 512, mapping_lr_mul: float = 0.01,
                 repeat_w: bool = True, image_channels: int = 3, final_tanh: bool = False,
                 const_input: bool = True, fused_scale="auto", use_wscale: bool = True,
                 noise_type: str = "spatial", fmaps_base: int = 16 << 10, fmaps_max: int = 512):
        super().__init__()
        _check_resolution(resolution)
        _check_fused_scale(fused_scale)
        if not const_input:
            raise NotImplementedError("const_input=False is not supported (genforce's StyleGAN zoo uses True)")
        if noise_type != "spatial":
            raise NotImplementedError(f"noise_type={noise_type!r} is not supported; only 'spatial'")
        self.resolution = resolution
        self.z_space_dim = z_space_dim
        self.w_space_dim = w_space_dim
        self.label_size = label_size
        self.repeat_w = repeat_w
        self.final_tanh = final_tanh
        self.num_layers = (int(math.log2(resolution)) - 1) * 2
        self.config = dict(
            resolution=resolution, z_space_dim=z_space_dim, w_space_dim=w_space_dim, label_size=label_size,
            mapping_layers=mapping_layers, mapping_fmaps=mapping_fmaps, mapping_lr_mul=mapping_lr_mul,
            repeat_w=repeat_w, image_channels=image_channels, final_tanh=final_tanh, const_input=const_input,
            fused_scale=fused_scale, use_wscale=use_wscale, noise_type=noise_type, fmaps_base=fmaps_base,
            fmaps_max=fmaps_max,
        )
        w_out = w_space_dim if repeat_w else w_space_dim * self.num_layers
        self.mapping = _Mapping(z_space_dim, w_out, label_size, mapping_layers, mapping_fmaps, mapping_lr_mul,
                                use_wscale)
        self.truncation = _Truncation(w_space_dim, self.num_layers, repeat_w)
        self.synthesis = _Synthesis(resolution, w_space_dim, image_channels, fused_scale, use_wscale,
                                    fmaps_base, fmaps_max)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None, lod: float | None = None,
                trunc_psi: float | None = None, trunc_layers: int | None = None, randomize_noise: bool = False,
                style_mixing_prob: float = 0.0, update_w_avg: bool = False, w_moving_decay: float = 0.995,
                features: dict | None = None, **_unused) -> dict[str, torch.Tensor]:
        """z [N, z_dim] -> dict(z (normalised), label, w [N, w_dim], wp [N, L, w_dim], style00.., image [N,3,R,R]).

        Training-only behaviour (w_avg EMA, style mixing) happens only when asked for explicitly,
        never because the module is in train mode.
        """
        results = self.mapping(z, label)
        w = results["w"]
        if update_w_avg:
            with torch.no_grad():
                batch_mean = w.detach().mean(dim=0)
                self.truncation.w_avg.copy_(batch_mean.lerp(self.truncation.w_avg, w_moving_decay))
        wp = self.truncation(w)
        if style_mixing_prob > 0 and torch.rand(()).item() < style_mixing_prob:
            other = self.mapping(torch.randn_like(z), label)["w"]
            other_wp = self.truncation(other)
            cut = int(torch.randint(1, self.num_layers, ()).item())
            wp = torch.cat([wp[:, :cut], other_wp[:, cut:]], dim=1)
        return self._truncate_and_synthesize(results, wp, trunc_psi, trunc_layers, lod, randomize_noise, features)

    def _truncate_and_synthesize(self, results: dict[str, torch.Tensor], wp: torch.Tensor, trunc_psi: float | None,
                                 trunc_layers: int | None, lod: float | None, randomize_noise: bool,
                                 features: dict | None = None) -> dict[str, torch.Tensor]:
        """Shared tail of every generator forward: truncation -> synthesis -> results dict (wp, styleNN, image)."""
        wp = self.truncation(wp, trunc_psi, trunc_layers)
        synthesis = self.synthesis(wp, lod, randomize_noise, features)
        image = synthesis.pop("image")
        if self.final_tanh:
            image = torch.tanh(image)
        results["wp"] = wp
        results.update(synthesis)
        results["image"] = image
        return results


# ----------------------------------------------------------------------------------------------
# Discriminator


class _DiscConv(nn.Module):
    """D conv block: [minibatch-std] -> [blur] -> conv(+bias) -> [avg-pool | fused stride 2] -> lrelu."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: str | None,
                 use_wscale: bool, mbstd_group: int = 0, mbstd_channels: int = 0):
        super().__init__()
        self.mbstd_group = mbstd_group
        self.mbstd_channels = mbstd_channels
        conv_in = in_channels + (mbstd_channels if mbstd_group else 0)
        self.weight = nn.Parameter(torch.randn(out_channels, conv_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = math.sqrt(2.0) / math.sqrt(conv_in * kernel_size * kernel_size) if use_wscale else 1.0
        self.padding = kernel_size // 2
        self.downsample = downsample  # None | 'pool' | 'fused'
        if downsample is not None:
            self.blur = _Blur(in_channels)

    def _minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(self.mbstd_group, n)
        if n % group != 0:
            raise ValueError(f"batch size {n} must be divisible by the minibatch-std group size {group}")
        f = self.mbstd_channels
        y = x.view(group, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = torch.sqrt(y.square().mean(dim=0) + _EPS)
        y = y.mean(dim=(2, 3, 4)).reshape(-1, f, 1, 1)
        y = y.repeat(group, 1, h, w)
        return torch.cat([x, y], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd_group:
            x = self._minibatch_std(x)
        if self.downsample is not None:
            x = self.blur(x)
        weight = self.weight * self.scale
        if self.downsample == "fused":
            x = F.conv2d(x, _fused_kernel(weight) * 0.25, bias=self.bias, stride=2, padding=1)
        else:
            x = F.conv2d(x, weight, bias=self.bias, padding=self.padding)
            if self.downsample == "pool":
                x = F.avg_pool2d(x, kernel_size=2, stride=2)
        return F.leaky_relu(x, _LRELU_SLOPE)


class _DiscDense(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, gain: float, use_wscale: bool, activate: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = gain / math.sqrt(in_dim) if use_wscale else 1.0
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x.reshape(x.shape[0], -1), self.weight * self.scale, self.bias)
        return F.leaky_relu(x, _LRELU_SLOPE) if self.activate else x


class StyleGANDiscriminator(nn.Module):
    """StyleGAN (v1) discriminator, genforce-compatible.

    Settings (genforce names and defaults): resolution, image_channels=3, label_size=0 (projection
    conditioning if > 0), fused_scale='auto' (fused down-sampling at res >= 128), use_wscale=True,
    minibatch_std_group_size=4, minibatch_std_channels=1, fmaps_base=16384, fmaps_max=512.
    ``D(image, label=None, lod=None)`` returns scores ``[N, 1]``.
    """

    def __init__(self, resolution: int, image_channels: int = 3, label_size: int = 0, fused_scale="auto",
                 use_wscale: bool = True, minibatch_std_group_size: int = 4, minibatch_std_channels: int = 1,
                 fmaps_base: int = 16 << 10, fmaps_max: int = 512):
        super().__init__()
        _check_resolution(resolution)
        _check_fused_scale(fused_scale)
        self.resolution = resolution
        self.image_channels = image_channels
        self.label_size = label_size
        self.num_blocks = int(math.log2(resolution)) - 1
        self.config = dict(
            resolution=resolution, image_channels=image_channels, label_size=label_size, fused_scale=fused_scale,
            use_wscale=use_wscale, minibatch_std_group_size=minibatch_std_group_size,
            minibatch_std_channels=minibatch_std_channels, fmaps_base=fmaps_base, fmaps_max=fmaps_max,
        )
        self.register_buffer("lod", torch.zeros(()))
        for b in range(self.num_blocks):
            res = resolution // 2**b
            channels = _nf(res, fmaps_base, fmaps_max)
            self.add_module(f"input{b}", _DiscConv(image_channels, channels, 1, None, use_wscale))
            if res > _INIT_RES:
                nxt = _nf(res // 2, fmaps_base, fmaps_max)
                fused = fused_scale is True or (fused_scale == "auto" and res >= _AUTO_FUSED_SCALE_MIN_RES)
                self.add_module(f"layer{2 * b}", _DiscConv(channels, channels, 3, None, use_wscale))
                self.add_module(f"layer{2 * b + 1}",
                                _DiscConv(channels, nxt, 3, "fused" if fused else "pool", use_wscale))
            else:
                self.add_module(f"layer{2 * b}", _DiscConv(channels, channels, 3, None, use_wscale,
                                                          minibatch_std_group_size, minibatch_std_channels))
                self.add_module(f"layer{2 * b + 1}",
                                _DiscDense(channels * res * res, channels, math.sqrt(2.0), use_wscale, True))
                self.add_module(f"layer{2 * b + 2}",
                                _DiscDense(channels, max(label_size, 1), 1.0, use_wscale, False))

    def forward(self, image: torch.Tensor, label: torch.Tensor | None = None, lod: float | None = None,
                **_unused) -> torch.Tensor:
        expected = (self.image_channels, self.resolution, self.resolution)
        if image.ndim != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(f"image must have shape [batch, {expected[0]}, {expected[1]}, {expected[2]}], "
                             f"got {list(image.shape)}")
        if self.label_size:
            if label is None:
                raise ValueError(f"this discriminator is conditional: pass label of shape [batch, {self.label_size}]")
            if tuple(label.shape) != (image.shape[0], self.label_size):
                raise ValueError(f"label must have shape [{image.shape[0]}, {self.label_size}], got {list(label.shape)}")
        lod = float(self.lod.item()) if lod is None else float(lod)
        if not 0.0 <= lod <= self.num_blocks - 1:
            raise ValueError(f"lod must be in [0, {self.num_blocks - 1}], got {lod}")
        x = None
        for b in range(self.num_blocks):
            cur = b  # block b sees resolution R / 2^b; its FromRGB is the input at lod == b
            if cur <= lod < cur + 1:
                x = getattr(self, f"input{b}")(image)
            elif cur - 1 < lod < cur:
                alpha = lod - math.floor(lod)
                x = getattr(self, f"input{b}")(image) * alpha + x * (1 - alpha)
            if lod < cur + 1:
                x = getattr(self, f"layer{2 * b}")(x)
                x = getattr(self, f"layer{2 * b + 1}")(x)
            if lod > cur:
                image = F.avg_pool2d(image, kernel_size=2, stride=2)
        x = getattr(self, f"layer{2 * self.num_blocks}")(x)
        if self.label_size:
            x = (x * label.to(x)).sum(dim=1, keepdim=True)
        return x
