"""Which share of the work this process does: one process, a torchrun rank, or a ``--shard K/N``.

Every heavy loop of the pipeline walks images by their global index i, and image i depends only
on (seed, i). So N processes split the work by ``i mod N == rank`` and their results are the same
files a single process writes; only the lists (CSVs, ``latents.npy``) are written per rank
(``part_path``) and merged by rank 0 after a barrier, sorted by index, so the merged file is
byte-identical to a one-process run. ``--shard K/N`` is the same split without a process group,
for separate machines; the merge then runs when the user asks for it (``merge_shards.py``).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we use ``torch.distributed`` (gloo on CPU, nccl on
CUDA), never a launcher of our own. A process started without them is rank 0 of 1 and notices nothing.
"""
from __future__ import annotations

import atexit
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.steps import StepError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(StepError, ValueError):
    """A malformed ``--shard`` or a shard/torchrun mix-up; the message says what to type."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N (K counted from 0, as torchrun's ranks)."""
    match = _SHARD.match(str(text))
    if not match:
        raise ShardError(f"--shard must look like K/N (e.g. 0/4, K counted from 0), got {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= k < n:
        raise ShardError(f"--shard {text}: need 0 <= K < N (K counted from 0), e.g. 0/{max(n, 2)} .. {max(n, 2) - 1}/"
                         f"{max(n, 2)}")
    return k, n


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when launched by torchrun (or any launcher setting them), else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


@dataclass(frozen=True)
class DistContext:
    """This process's share: rank of world_size; ``grouped`` when a torch.distributed group exists."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    grouped: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def device(self, device: str) -> str:
        """The device this rank uses: under torchrun "auto"/"cuda" become this rank's GPU (LOCAL_RANK)."""
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and self.grouped:
            return f"cuda:{self.local_rank}"
        return device

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank

    def take(self, indices: Iterable[int]) -> list[int]:
        """The indices (global image indices) this rank processes, in their order."""
        return [i for i in indices if i % self.world_size == self.rank]

    def barrier(self) -> None:
        if self.grouped:
            import torch.distributed as dist

            dist.barrier()

    def part_path(self, path: Path | str, rank: int | None = None) -> Path:
        """The per-rank partial file of ``path``: ``name.part-K-of-N.suffix`` in the same folder."""
        path = Path(path)
        k = self.rank if rank is None else rank
        return path.with_name(f"{path.stem}.part-{k}-of-{self.world_size}{path.suffix}")

    def parts_of(self, path: Path | str) -> list[Path]:
        return [self.part_path(path, k) for k in range(self.world_size)]

    def gather(self, obj: Any) -> list[Any] | None:
        """Rank 0 receives every rank's ``obj`` (in rank order); other ranks get None. One process: [obj]."""
        if not self.grouped:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out


SINGLE = DistContext()


def _destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def init_distributed(shard: str | None = None, backend: str | None = None) -> DistContext:
    """This process's context; under torchrun, joins (or reuses) the default process group.

    ``backend`` defaults to nccl when CUDA is available and gloo otherwise. ``shard`` ("K/N") and
    torchrun are exclusive: a shard is a separate machine's share, torchrun splits one job.
    """
    env = torchrun_env()
    if env is not None and env[1] > 1:
        if shard:
            raise ShardError(f"--shard {shard} under torchrun: torchrun already splits the work by rank; "
                             "drop --shard (or run without torchrun on each machine)")
        import torch
        import torch.distributed as dist

        rank, world, local_rank = env
        if not dist.is_initialized():
            chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
            if chosen == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend=chosen)
            # gloo's threads abort the process ("terminate called without an active exception") when the
            # group is torn down by interpreter exit instead of destroyed first
            atexit.register(_destroy_group)
        return DistContext(rank, world, local_rank, grouped=True)
    if shard:
        k, n = parse_shard(shard)
        return DistContext(k, n, 0, grouped=False)
    return SINGLE

