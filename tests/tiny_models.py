"""Tiny StyleGAN generator settings shared by the tests (``write_random_checkpoint(path, **TINY_G_16)``).

One place for the sizes, so a test says which tiny generator it needs by name instead of retyping a dict.
Each variant exists because a test needs exactly that shape; the comment says why. A test that wants
another resolution with the same channels writes ``dict(TINY_G_16, resolution=32)``.
"""
from __future__ import annotations

TINY_G_16 = dict(resolution=16, z_space_dim=16, w_space_dim=16, mapping_fmaps=16, fmaps_base=128, fmaps_max=16)
"""The generator most step tests run: 16 px, 16-d z and w, 16 channels (8 in the 16 px block: 128 // 16)."""

TINY_G_16_WIDE = dict(TINY_G_16, fmaps_base=512)
"""16 px with 16 channels in every block (512 // 16 = 32, capped at 16), where TINY_G_16 has 8 at 16 px."""

TINY_G_32 = dict(resolution=32, z_space_dim=16, w_space_dim=16, mapping_fmaps=16, fmaps_base=256, fmaps_max=16)
"""32 px with the base doubled, so the 32 px block keeps 8 channels (256 // 32): steps 1, the runner, the studio."""

TINY_G_32_2MAP = dict(TINY_G_32, fmaps_base=128, mapping_layers=2)
"""32 px with a 2-layer mapping network: many latents (step 7a's direction fits) stay fast."""

TINY_G_16_W12 = dict(TINY_G_16, w_space_dim=12)
"""w_dim 12 != z_dim 16 on purpose: code that mixes up z and w codes fails on the shape."""

TINY_G_32_W24 = dict(TINY_G_32, w_space_dim=24, mapping_fmaps=20)
"""w_dim 24, mapping width 20 and z_dim 16 all differ: the conditional generator's extra inputs
cannot hide behind a size that happens to match."""

TINY_G_ODD = dict(resolution=16, z_space_dim=8, w_space_dim=12, mapping_fmaps=10, fmaps_base=64, fmaps_max=8)
"""Every width different (8, 12, 10, 64, 8): config inference from a checkpoint must recover each one."""
