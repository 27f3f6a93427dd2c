"""The fine-tune loop (step 7): what trains, finite losses, exact resume, and a toy control experiment."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from stylegan.checkpoint import load_discriminator, load_generator, write_random_checkpoint
from stylegan.conditional import build_conditional_discriminator, build_conditional_generator, d_layer_names
from stylegan.finetune import FinetuneConfig, Finetuner, ema_beta_for
from stylegan.networks import postprocess_uint8
from stylegan.property_regressor import PropertyRegressor, RegressorConfig, train_property_regressor

TINY = dict(fmaps_base=128, fmaps_max=16, z_space_dim=16, w_space_dim=16, mapping_fmaps=16)
CONSTANT = torch.tensor([0.5, 0.5, 0.5, 0.0])  # the toy's four other properties never vary


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 16x16 random generator, 64 'real' images it made, and a toy property: top-left brightness.

    The real conditions are that property, min-max normalised; the four other properties are
    constant (0.5, 0.5, 0.5, 0) so the experiment isolates one controllable property.
    """
    path = write_random_checkpoint(tmp_path_factory.mktemp("toy") / "g.pth", resolution=16, seed=0, **TINY)
    base_g, base_d = load_generator(path), load_discriminator(path)
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = base_g(z)["image"]
    raw = images[:, :, :8, :8].mean(dim=(1, 2, 3))
    low, high = float(raw.min()), float(raw.max())

    class ToyProperty(torch.nn.Module):
        """Stands in for the regressor: differentiable, exact for the one varying property."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            value = (x[:, :, :8, :8].mean(dim=(1, 2, 3)) - low) / (high - low)
            return torch.cat([value[:, None], CONSTANT.to(x).repeat(x.shape[0], 1)], dim=1)

    conditions = torch.cat([((raw - low) / (high - low))[:, None], CONSTANT.repeat(64, 1)], dim=1).numpy()
    return dict(base_g=base_g, base_d=base_d, images_u8=postprocess_uint8(images), conditions=conditions,
                prop=ToyProperty())


def _trainer(toy, **kwargs) -> Finetuner:
    config = FinetuneConfig(**{"batch_size": 8, "lr_g": 0.01, "ema_beta": 0.9, "lambda_prop": 3.0, **kwargs})
    return Finetuner(build_conditional_generator(toy["base_g"], seed=config.seed),
                     build_conditional_discriminator(toy["base_d"]), toy["images_u8"], toy["conditions"], config,
                     toy["prop"])


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_only_trainable_parameters_change(toy):
    trainer = _trainer(toy, train_d_layers="3")
    g_before, d_before = _snapshot(trainer.G), _snapshot(trainer.D)
    g_trainable = {n for n, p in trainer.G.named_parameters() if p.requires_grad}
    d_trainable = {n for n, p in trainer.D.named_parameters() if p.requires_grad}
    assert not any(n.startswith("synthesis.") for n in g_trainable)
    assert {n.split(".")[0] for n in g_trainable} == {"mapping", "condition"}
    assert {n.split(".")[0] for n in d_trainable} == {"projection", *d_layer_names(trainer.D)[:3]}
    # each optimiser holds exactly its model's trainable parameters
    assert {id(p) for g in trainer.opt_g.param_groups for p in g["params"]} == {
        id(p) for p in trainer.G.parameters() if p.requires_grad}
    assert {id(p) for g in trainer.opt_d.param_groups for p in g["params"]} == {
        id(p) for p in trainer.D.parameters() if p.requires_grad}
    for _ in range(3):
        row = trainer.step()
        assert all(np.isfinite(v) for v in row.values())
    g_after, d_after = trainer.G.state_dict(), trainer.D.state_dict()
    for name, before in g_before.items():
        changed = not torch.equal(before, g_after[name])
        if name.startswith("synthesis.") or name == "truncation.w_avg":
            assert not changed, f"frozen {name} changed"
    assert not torch.equal(g_before["condition.columns.weight"], g_after["condition.columns.weight"])
    assert not torch.equal(g_before["mapping.dense7.weight"], g_after["mapping.dense7.weight"])
    for name, before in d_before.items():
        changed = not torch.equal(before, d_after[name])
        assert changed == (name in d_trainable), f"{name}: changed={changed}, trainable={name in d_trainable}"
    # the EMA copy moved too, and its synthesis is still the pretrained one
    ema = trainer.G_ema.state_dict()
    assert not torch.equal(ema["condition.columns.weight"], g_before["condition.columns.weight"])
    assert all(torch.equal(ema[k], v) for k, v in g_before.items() if k.startswith("synthesis."))


def test_resume_from_state_dict_repeats_losses_exactly(toy):
    straight = _trainer(toy)
    rows = [straight.step() for _ in range(4)]
    first = _trainer(toy)
    rows_a = [first.step() for _ in range(2)]
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    second = _trainer(toy)
    second.load_state_dict(state)
    rows_b = [second.step() for _ in range(2)]
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in rows_a + rows_b]


def test_ema_beta_from_half_life():
    assert ema_beta_for(FinetuneConfig(batch_size=8, ema_half_life_kimg=10.0)) == pytest.approx(0.5 ** (8 / 10_000))
    assert ema_beta_for(FinetuneConfig(ema_beta=0.5)) == 0.5
    with pytest.raises(ValueError, match="multiple of 4"):
        FinetuneConfig(batch_size=6)


def _control_correlation(trainer: Finetuner, prop: torch.nn.Module, n: int = 256) -> float:
    gen = torch.Generator().manual_seed(123)
    z = torch.randn(n, 16, generator=gen)
    requested = torch.rand(n, generator=gen)
    cond = torch.cat([requested[:, None], CONSTANT.repeat(n, 1)], dim=1)
    with torch.no_grad():
        measured = prop(trainer.G_ema(z, cond)["image"])[:, 0]
    return float(np.corrcoef(requested.numpy(), measured.numpy())[0, 1])


def test_toy_control_experiment(toy, record_property):
    """lambda > 0 makes the requested property controllable (r > 0.9); lambda = 0 (plain GAN) is recorded beside it."""
    results = {}
    for lam in (3.0, 0.0):
        trainer = _trainer(toy, lambda_prop=lam)
        for _ in range(200):
            row = trainer.step()
            assert np.isfinite(row["loss_g"]) and np.isfinite(row["loss_d"])
        results[lam] = _control_correlation(trainer, toy["prop"])
    record_property("toy_control_r", results)
    print(f"toy control r: lambda=3 -> {results[3.0]:.3f}, lambda=0 -> {results[0.0]:.3f}")
    assert results[3.0] > 0.9


def test_property_regressor_learns_a_simple_signal():
    rng = np.random.default_rng(0)
    level = rng.uniform(30, 220, size=(120, 1, 1, 1))
    top = rng.uniform(-30, 30, size=(120, 1, 1, 1))
    images = level + rng.normal(0, 10, size=(120, 32, 32, 3))
    images[:, :16] += top
    images = np.clip(images, 0, 255).astype(np.uint8)
    targets = np.zeros((120, 5), dtype=np.float32)
    targets[:, 0] = images[:, :16].mean(axis=(1, 2, 3)) / 255.0  # top-half brightness
    targets[:, 4] = images[..., 0].mean(axis=(1, 2)) / 127.5 - 1.0  # red level
    model, metrics = train_property_regressor(images, targets, epochs=15, batch_size=16, seed=0,
                                              config=RegressorConfig(input_size=32, width=8))
    assert isinstance(model, PropertyRegressor) and not any(p.requires_grad for p in model.parameters())
    assert metrics["num_val"] == 12 and len(metrics["train_mse_per_epoch"]) == 15
    assert metrics["train_mse_per_epoch"][-1] < metrics["train_mse_per_epoch"][0]
    assert metrics["r_eyes"] > 0.5


def test_toy_two_entangled_properties(tmp_path, record_property):
    """Two toy properties at once (brightness of the top-left and bottom-right quarters, which the base generator
    anti-correlates, r = -0.70): with lambda = 3 both become controllable (r > 0.8 each) while lambda = 0 controls
    neither; the leakage (slope of the other property) is recorded: a frozen synthesis cannot fully separate
    properties that the pretrained generator entangles, which is what step 9's leakage matrix measures for real."""
    path = write_random_checkpoint(tmp_path / "g.pth", resolution=16, seed=0, **TINY)
    base_g, base_d = load_generator(path), load_discriminator(path)
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = base_g(z)["image"]

    def quarters(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, :, :8, :8].mean(dim=(1, 2, 3)), x[:, :, 8:, 8:].mean(dim=(1, 2, 3))], dim=1)

    low, high = quarters(images).min(0).values, quarters(images).max(0).values

    class TwoToyProperties(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            v = (quarters(x) - low.to(x)) / (high - low).to(x)
            half = torch.full((x.shape[0], 1), 0.5, device=x.device)
            return torch.cat([v[:, :1], half, half, v[:, 1:], torch.zeros_like(half)], dim=1)  # eyes, mouth vary

    prop = TwoToyProperties()
    with torch.no_grad():
        conditions = prop(images).numpy()
    zz = torch.randn(16, 16, generator=torch.Generator().manual_seed(1))
    median = np.median(conditions, axis=0)
    results = {}
    for lam in (3.0, 0.0):
        config = FinetuneConfig(batch_size=8, lr_g=0.01, ema_beta=0.9, lambda_prop=lam)
        trainer = Finetuner(build_conditional_generator(base_g, seed=0), build_conditional_discriminator(base_d),
                            postprocess_uint8(images), conditions, config, prop)
        for _ in range(200):
            trainer.step()
        for swept, other in ((0, 3), (3, 0)):
            requested, measured = [], []
            for value in np.linspace(0.0, 1.0, 5):
                cond = torch.tensor(np.tile(median, (16, 1)), dtype=torch.float32)
                cond[:, swept] = float(value)
                with torch.no_grad():
                    measured.append(prop(trainer.G_ema(zz, cond)["image"]).numpy())
                requested.append(np.full(16, value))
            requested, measured = np.concatenate(requested), np.concatenate(measured)
            results[(lam, swept)] = {
                "r": float(np.corrcoef(requested, measured[:, swept])[0, 1]),
                "leakage_slope": float(np.polyfit(requested, measured[:, other], 1)[0]),
            }
    record_property("toy_two_properties", {str(k): v for k, v in results.items()})
    print("two toy properties:", results)
    assert results[(3.0, 0)]["r"] > 0.8 and results[(3.0, 3)]["r"] > 0.8
    assert abs(results[(0.0, 0)]["r"]) < 0.5 and abs(results[(0.0, 3)]["r"]) < 0.5
