"""Which command measures each record: what the docs print where a figure has no record yet.

One entry per benchmark (the ``name`` its record carries). ``{device}`` is the device kind of the
missing record (``cpu`` or ``cuda``); an entry may give a device its own command (multi-GPU runs)
or say why a kind cannot be measured by this benchmark at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Benchmark:
    """How to produce the records of one benchmark."""

    command: str
    """Command line, run from the repository root, ``{device}`` filled in."""
    per_device: dict[str, str] = field(default_factory=dict)
    """A device kind's own command where it differs (torchrun for several GPUs)."""
    needs: dict[str, str] = field(default_factory=dict)
    """What a device kind needs beyond a checkout (``{"cuda": "a CUDA GPU"}``), said next to "not measured"."""
    devices: tuple[str, ...] = ("cpu",)
    """The device kinds whose records it writes (``run_all.py --device`` runs only those)."""
    manual: bool = False
    """Not run by ``run_all.py``: it needs a file or checkout this repository does not ship, or hours."""

    def command_for(self, device_kind: str) -> str:
        return self.per_device.get(device_kind, self.command).format(device=device_kind)


_GPU = {"cuda": "a CUDA GPU"}
_GPUS = {"cuda": "a machine with several CUDA GPUs"}
_BOTH = ("cpu", "cuda")

BENCHMARKS: dict[str, Benchmark] = {
    "bench_generate": Benchmark("python benchmarks/bench_generate.py --device {device}", needs=_GPU,
                                per_device={"cuda": "python benchmarks/bench_generate.py --device cuda --num 512"}, devices=_BOTH),
    "bench_segment": Benchmark("python benchmarks/bench_segment.py --device {device}", needs=_GPU, devices=_BOTH),
    "bench_scores": Benchmark("python benchmarks/bench_scores.py"),
    "bench_scores_vs_original": Benchmark(
        "python benchmarks/bench_scores.py --original PATH/compute_property_scores.py",
        needs={"cpu": "a checkout of the original Oh-LoRA code (PATH)"}, manual=True),
    "bench_cnn": Benchmark("python benchmarks/bench_cnn.py --device {device}", needs=_GPU, devices=_BOTH),
    "bench_directions": Benchmark("python benchmarks/bench_directions.py --skip-timing"),
    "bench_directions_timing": Benchmark("python benchmarks/bench_directions.py --timing-only"),
    "bench_finetune": Benchmark("python benchmarks/bench_finetune.py --device {device}", needs=_GPU,
                                per_device={"cpu": "python benchmarks/bench_finetune.py --device cpu --steps 2"}, devices=_BOTH),
    "bench_finetune_processes": Benchmark(
        "python benchmarks/bench_finetune_processes.py --device {device}", needs=_GPUS,
        per_device={"cuda": "python benchmarks/bench_finetune_processes.py --device cuda --processes 4 "
                            "--resolution 256 --fmaps-max 512 --batch-size 32"}, devices=_BOTH),
    "bench_generate_processes": Benchmark(
        "python benchmarks/bench_generate_processes.py --device {device}", needs=_GPUS,
        per_device={"cuda": "python benchmarks/bench_generate_processes.py --device cuda --processes 4 --num 512"}, devices=_BOTH),
    "bench_segment_processes": Benchmark(
        "python benchmarks/bench_segment_processes.py --device {device}", needs=_GPUS,
        per_device={"cuda": "python benchmarks/bench_segment_processes.py --device cuda --procs 4 --images 64"}, devices=_BOTH),
    "bench_generate_vs_genforce": Benchmark(
        "python benchmarks/bench_generate_vs_genforce.py --genforce PATH",
        needs={"cpu": "a checkout of genforce (PATH)"}, manual=True),
    "bench_facexformer_vs_official": Benchmark(
        "python benchmarks/bench_facexformer_vs_official.py --official PATH",
        needs={"cpu": "a checkout of the official FaceXFormer (PATH)"}, manual=True),
    "bench_step5_vs_model": Benchmark("python benchmarks/bench_facexformer_vs_official.py"),
    "bench_judges": Benchmark("python benchmarks/bench_judges.py",
                              needs={"cpu": "the optional judge extra (requirements-judges.txt)"}),
    "bench_judges_segmentation": Benchmark(
        "python benchmarks/bench_judges.py --segmentation-checkpoint segmentation/models/segmentation_model.pt",
        needs={"cpu": "the FaceXFormer checkpoint (download_models.py) and the judge extra"}, manual=True),
    "bench_labeller": Benchmark("python benchmarks/bench_labeller.py"),
    "bench_servers": Benchmark("python benchmarks/bench_servers.py"),
    "replay_cases": Benchmark("python stylegan_and_segmentation/run_pipeline.py --demo --root /tmp/replay/demo_run -q && "
                              "python benchmarks/replay_cases.py --demo /tmp/replay/demo_run --scratch /tmp/replay/scratch "
                              "&& python benchmarks/replay_cases.py --scratch /tmp/replay/scratch --record",
                              manual=True),  # about 1.5 h on 2 loaded cores; mounts small tmpfs (root)
    "bench_refine": Benchmark("python benchmarks/bench_refine.py --device {device}", needs=_GPU,
                              per_device={"cpu": "python benchmarks/bench_refine.py --device cpu --threads 2"}, devices=_BOTH),
    "bench_edit_correction": Benchmark("python benchmarks/bench_edit_correction.py --device {device}", needs=_GPU,
                                       per_device={"cpu": "python benchmarks/bench_edit_correction.py --device cpu "
                                                          "--threads 2 --timed-steps 2"}, devices=_BOTH),
    "device_check": Benchmark("python benchmarks/device_check.py --device {device}", needs=_GPU, devices=("cuda",)),
    "device_check_quick": Benchmark("python benchmarks/device_check.py --quick --device {device}", manual=True),
    "toy_margins": Benchmark("python benchmarks/toy_margins.py --steps 400 --isa-sweep"),
    "batch_margins": Benchmark("python benchmarks/batch_margins.py"),
    "cnn_margins": Benchmark("python benchmarks/cnn_margins.py --isa-sweep"),
    "bench_demo": Benchmark("python benchmarks/bench_demo.py"),
    "bench_tests": Benchmark("python benchmarks/bench_tests.py"),
    "bench_install": Benchmark("python benchmarks/bench_install.py"),
    "bench_install_package_only": Benchmark('python benchmarks/bench_install.py --label package_only --pip "-e ."'),
    "bench_install_judges": Benchmark("python benchmarks/bench_install.py --label judges --pip "
                                      '"-r requirements.txt -r requirements-dev.txt -r requirements-judges.txt -e ."'),
    "bench_install_cpu_torch": Benchmark('python benchmarks/bench_install.py --label cpu_torch --pip "torch==2.13.0"',
                                         needs={"cpu": "torch 2.13.0's CPU build on pip's index (a file on the "
                                                       "development machine's disk)"}),
    "bench_venv_sizes": Benchmark("python benchmarks/bench_venv_sizes.py --cpu-wheel PATH_TO_A_CPU_TORCH_WHEEL",
                                  manual=True),
    "bench_studio": Benchmark("python benchmarks/bench_studio.py --device {device}", needs=_GPU, devices=_BOTH),
    "control_lab_worlds": Benchmark("python benchmarks/control_lab.py --worlds", manual=True),
    "control_lab_finetune": Benchmark("python benchmarks/control_lab_finetune.py --variants default decorrelate=1.0 "
                                      "pair_weight=3.0,decorrelate=1.0 pair_weight=5.0,decorrelate=1.0,lr_rampdown=0.5",
                                      manual=True),
    "control_lab_small": Benchmark("python benchmarks/control_lab.py --small-seeds 0 1 2 --isa-sweep", manual=True),
}
"""Every benchmark whose records the docs may cite."""


def measure_command(name: str, device_kind: str) -> str | None:
    """The command that writes record ``name``-``device_kind``, or None for a benchmark nobody listed."""
    entry = BENCHMARKS.get(name)
    return entry.command_for(device_kind) if entry else None


def needs(name: str, device_kind: str) -> str | None:
    """What measuring that record needs beyond this checkout (None: nothing)."""
    entry = BENCHMARKS.get(name)
    return entry.needs.get(device_kind) if entry else None
