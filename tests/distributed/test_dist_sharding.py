"""What each process of a data-parallel run sees, checked without starting processes: the
global-batch-major shards, the sharded test set, the torchrun command line, and the
decision to continue a run after a torchrun restart."""

import pytest
import torch

from deepres import DeepresError
from deepres.cli import build_parser, torchrun_command
from deepres.data import BatchLoader, TensorData
from deepres.train import resolve_config
from deepres.train.batches import FolderBatches, build_data
from deepres.train.distributed import (
    RankBatches,
    claim_run,
    global_batch_shard,
    job_id,
    restarted_run,
)


def numbered(n: int) -> TensorData:
    """n images whose label is their own index, so batches tell which samples they hold."""
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(1))
    return TensorData(images.to(torch.uint8), torch.arange(n), [str(i) for i in range(n)])


def rank_batches(data, global_batch, world, accum=1, augment=False):
    micro = global_batch // accum
    loader = BatchLoader(
        data, micro, mean=(0.5,) * 3, std=(0.25,) * 3, drop_last=True, augment=augment, seed=7
    )
    return [RankBatches(loader, rank, world, accum) for rank in range(world)]


def steps(ranks, epoch, accum, start=0):
    """Per SGD step: the sorted sample ids of all ranks' micro-batches of that step."""
    per_rank = [[y for _, y in r.iter_epoch(epoch, start * accum)] for r in ranks]
    micro = len(per_rank[0])
    assert all(len(p) == micro for p in per_rank), "ranks must run the same number of batches"
    out = []
    for s in range(micro // accum):
        ids = torch.cat([p[s * accum + k] for p in per_rank for k in range(accum)])
        out.append(sorted(ids.tolist()))
    return out


@pytest.mark.parametrize("world,accum", [(1, 1), (2, 1), (3, 2), (4, 1), (4, 2)])
def test_every_step_holds_the_same_global_batch_for_any_process_count(world, accum):
    data = numbered(96)
    single = steps(rank_batches(data, 24, 1, accum), epoch=0, accum=accum)
    parallel = steps(rank_batches(data, 24, world, accum), epoch=0, accum=accum)
    assert parallel == single and len(parallel) == 96 // 24
    flat = [i for step in parallel for i in step]
    assert sorted(flat) == list(range(96)), "one epoch is exactly one pass over the data"
    # Mid-epoch resume with another process count continues with the same batches.
    resumed = steps(rank_batches(data, 24, world, accum), epoch=0, accum=accum, start=2)
    assert resumed == single[2:]


def test_a_partial_last_batch_is_dropped_and_epochs_differ():
    data = numbered(100)  # 4 steps of 24; 4 images left over per epoch
    ranks = rank_batches(data, 24, 2)
    epochs = [steps(ranks, e, 1) for e in range(3)]
    for taken in epochs:
        flat = [i for step in taken for i in step]
        assert len(flat) == len(set(flat)) == 96
    assert epochs[0] != epochs[1] != epochs[2]
    left_over = [set(range(100)) - {i for s in t for i in s} for t in epochs]
    assert left_over[0] != left_over[1], "the skipped images change from epoch to epoch"


def test_rank_slices_of_augmented_batches_equal_the_single_process_batch():
    data = numbered(64)
    one = rank_batches(data, 16, 1, augment=True)[0]
    two = rank_batches(data, 16, 2, augment=True)
    for (x1, y1), (xa, ya), (xb, yb) in zip(
        one.iter_epoch(3), two[0].iter_epoch(3), two[1].iter_epoch(3), strict=True
    ):
        assert torch.equal(torch.cat([xa, xb]), x1) and torch.equal(torch.cat([ya, yb]), y1)


def test_global_batch_shard_of_folder_data_is_disjoint_and_whole():
    dataset = list(range(50))  # FolderBatches needs only len() and indexing
    shards = [
        FolderBatches(
            dataset,  # type: ignore[arg-type]
            4,
            shuffle=True,
            drop_last=True,
            seed=3,
            rank=r,
            world_size=3,
            workers=0,
            accum=2,
        )
        for r in range(3)
    ]
    assert [len(s) for s in shards] == [4, 4, 4]  # 50 // 24 = 2 steps of 2 micro-batches
    taken = torch.cat([s._indices(0) for s in shards]).tolist()
    assert len(taken) == len(set(taken)) == 48
    # Two global batches of 3 x 4: rank 1 takes the second 4 of each.
    assert global_batch_shard(torch.arange(24), 1, 3, 4, 2).tolist() == [4, 5, 6, 7, 16, 17, 18, 19]


def test_the_test_set_is_split_without_padding_or_duplicates():
    cfg = resolve_config(data="synthetic:3x8x8:10:131", batch_size=30, epochs=1, device="cpu")
    full = build_data(cfg).test
    everything = torch.cat([y for _, y in full.iter_epoch(0)])
    parts = [build_data(cfg, rank, 3).test for rank in range(3)]
    counts = [sum(len(y) for _, y in p.iter_epoch(0)) for p in parts]
    assert counts == [44, 44, 43]
    labels = torch.cat([y for p in parts for _, y in p.iter_epoch(0)])
    assert torch.equal(labels.bincount(minlength=10), everything.bincount(minlength=10))


def test_a_global_batch_that_does_not_split_is_refused():
    cfg = resolve_config(data="synthetic:3x8x8:10:64", batch_size=30, epochs=1)
    with pytest.raises(DeepresError, match="multiple of processes"):
        build_data(cfg, 0, 4)


def test_nproc_passes_rendezvous_and_restart_options_to_torchrun():
    args = build_parser().parse_args(
        ["train", "--nproc", "2", "--nnodes", "2", "--rdzv-endpoint", "node0:29400"]
        + ["--rdzv-id", "job7", "--max-restarts", "3", "--batch-size", "64", "--sync-bn"]
        + ["--scale-lr", "128", "--milestones", "0.5", "0.75", "--no-nesterov"]
    )
    command = torchrun_command(args)
    launcher = command[: command.index("deepres")]
    assert launcher[-1] == "-m" and "--standalone" not in launcher
    for flag, value in [
        ("--nproc-per-node", "2"),
        ("--nnodes", "2"),
        ("--rdzv-backend", "c10d"),
        ("--rdzv-endpoint", "node0:29400"),
        ("--rdzv-id", "job7"),
        ("--max-restarts", "3"),
    ]:
        assert launcher[launcher.index(flag) + 1] == value
    worker = build_parser().parse_args(command[command.index("deepres") + 1 :])
    for key in ("batch_size", "sync_bn", "lr_scale_batch", "milestones", "nesterov"):
        assert getattr(worker, key) == getattr(args, key), key
    assert worker.nproc is None and worker.max_restarts is None
    one_machine = torchrun_command(build_parser().parse_args(["train", "--nproc", "2"]))
    assert "--standalone" in one_machine


def test_scale_lr_applies_the_linear_scaling_rule():
    from deepres.train.loop import learning_rate

    plain = resolve_config(batch_size=512, lr=0.1, schedule="constant", epochs=1)
    scaled = resolve_config(
        batch_size=512, lr=0.1, lr_scale_batch=256, schedule="constant", epochs=1
    )
    assert learning_rate(plain, 0, 10, 10) == 0.1
    assert learning_rate(scaled, 0, 10, 10) == pytest.approx(0.2)


def test_a_restart_continues_only_the_folder_its_own_job_started(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    claim_run(tmp_path)
    assert not restarted_run(tmp_path), "the first attempt is a fresh run"
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert restarted_run(tmp_path)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-b")
    assert not restarted_run(tmp_path), "another job's folder is never continued silently"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # static rendezvous: the agent's folder
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", "/tmp/te_1/none_x/attempt_1/0/error.json")
    ident = job_id()
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", "/tmp/te_1/none_x/attempt_2/1/error.json")
    assert job_id() == ident and ident.endswith("/tmp/te_1/none_x")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert job_id() is None
