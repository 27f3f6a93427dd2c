"""common.distributed: the split by index, shard parsing, and a real 2-process gloo group under torchrun."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.distributed import SINGLE, DistContext, ShardError, init_distributed, parse_shard


def test_parse_shard_accepts_k_of_n_and_refuses_the_rest():
    assert parse_shard("0/4") == (0, 4)
    assert parse_shard(" 3 / 4 ") == (3, 4)
    for bad in ("4/4", "-1/2", "1/0", "1", "a/b", "1/2/3", ""):
        with pytest.raises(ShardError, match="--shard"):
            parse_shard(bad)


def test_ranks_partition_the_indices_exactly():
    indices = list(range(23))
    shares = [DistContext(r, 3).take(indices) for r in range(3)]
    assert sorted(i for share in shares for i in share) == indices
    assert shares[1] == [1, 4, 7, 10, 13, 16, 19, 22]
    assert all(DistContext(r, 3).owns(i) for r, share in enumerate(shares) for i in share)
    assert SINGLE.take(indices) == indices and SINGLE.is_main and not SINGLE.sharded


def test_part_paths_are_per_rank_and_in_the_same_folder(tmp_path):
    ctx = DistContext(1, 2)
    assert ctx.part_path(tmp_path / "generated.csv") == tmp_path / "generated.part-1-of-2.csv"
    assert ctx.parts_of(tmp_path / "latents.npy") == [tmp_path / "latents.part-0-of-2.npy",
                                                      tmp_path / "latents.part-1-of-2.npy"]


def test_single_process_and_shard_need_no_process_group(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert init_distributed() == SINGLE
    ctx = init_distributed("1/3")
    assert (ctx.rank, ctx.world_size, ctx.grouped) == (1, 3, False)
    assert ctx.gather("x") == ["x"]


@pytest.mark.slow
def test_torchrun_two_ranks_gather_and_barrier(tmp_path):
    """Two real processes (gloo): rank 0 gathers both ranks' shares; --shard under torchrun is refused."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import sys, json
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from common.distributed import init_distributed, ShardError
        ctx = init_distributed()
        shares = ctx.gather(ctx.take(range(7)))
        ctx.barrier()
        try:
            init_distributed("0/2")
            refused = False
        except ShardError:
            refused = True
        if ctx.is_main:
            print(json.dumps({{"shares": shares, "world": ctx.world_size, "refused": refused,
                              "device": ctx.device("cpu")}}))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    out = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert out == {"shares": [[0, 2, 4, 6], [1, 3, 5]], "world": 2, "refused": True, "device": "cpu"}
