"""Data-parallel training on torch.distributed (launched by torchrun): one process per
device, DistributedDataParallel, gloo on CPUs and nccl on CUDA GPUs.

The rules, so that P processes train the same network as one process would:

- ``--batch-size`` is the global batch B of one SGD step (the paper's 128 on CIFAR, 256 on
  ImageNet, §3.4 / §4.2). With ``--grad-accum-steps K`` a step is K micro-batches of B/K
  images, and each of the P processes takes B/(K·P) images of every micro-batch.
- Sharding is global-batch-major: the epoch's permutation (a pure function of seed and epoch)
  is cut into global micro-batches, and rank r takes the r-th contiguous part of each. So the
  images of step s are the same for every P: resuming with another process count continues
  exactly where the run stopped, and P processes with ``--sync-bn`` compute the gradient of
  one process with the whole batch. An epoch has ``N // B`` steps; the ``N mod B`` images
  left over by that epoch's permutation are skipped in that epoch (as with one process).
- Only rank 0 touches the run folder: it decides whether to resume, reads ``state.pt`` and
  sends it to the other ranks, and writes every file. Other ranks need no access to --out.
- Under ``torchrun --max-restarts R`` a failed worker makes torchrun restart the whole group;
  the restarted workers (TORCHELASTIC_RESTART_COUNT > 0) continue from the last checkpoint
  that this same torchrun job wrote (see ``restarted_run``).
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as tdist
from torch import nn

from deepres.errors import DeepresError

if TYPE_CHECKING:
    from deepres.data import BatchLoader

JOB_FILE = ".torchrun-job"


@dataclass
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]


def setup(device: str = "auto", threads: int | None = None) -> Context:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), pick the device
    and the thread count for this process's share of the CPU cores."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}" if world_size > 1 else "cuda"
        torch.cuda.set_device(torch.device(device))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_world))
    if world_size > 1 and not tdist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if (
            os.environ.get("TORCHELASTIC_RESTART_COUNT")
            and os.environ.get("GROUP_WORLD_SIZE") == "1"
        ):
            # One torchrun agent keeps one store over its restarts (torch 2.14, see
            # pytorch/pytorch#135712): key this attempt's rendezvous by the restart count, or a
            # restarted worker may read the failed attempt's addresses and fail to connect.
            store, _, _ = next(tdist.rendezvous("env://"))
            store = tdist.PrefixStore(f"deepres/attempt_{restart_count()}", store)
            tdist.init_process_group(backend, store=store, rank=rank, world_size=world_size)
        else:
            tdist.init_process_group(backend)
    return Context(rank, world_size, local_rank, device)


def teardown(ctx: Context) -> None:
    if ctx.world_size > 1 and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    if ctx.world_size == 1:
        return model
    device_ids = [torch.device(ctx.device).index] if ctx.device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_sum_tensor(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.world_size == 1:
        return values
    values = values.to(ctx.device)
    tdist.all_reduce(values)
    return values.cpu()


def all_sum(values: list[float], ctx: Context) -> list[float]:
    """Element-wise sum of a few numbers over all processes."""
    return all_sum_tensor(torch.tensor(values, dtype=torch.float64), ctx).tolist()


def broadcast(value: Any, ctx: Context) -> Any:
    """Rank 0's ``value`` on every rank: plain data (numbers, strings, lists, dicts, tensors),
    sent as ``torch.save`` bytes and read back with ``weights_only=True``."""
    if ctx.world_size == 1:
        return value
    payload = torch.empty(0, dtype=torch.uint8)
    if ctx.is_main:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        payload = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    size = torch.tensor([payload.numel()], dtype=torch.int64, device=ctx.device)
    tdist.broadcast(size, src=0)
    if not ctx.is_main:
        payload = torch.empty(int(size.item()), dtype=torch.uint8)
    data = payload.to(ctx.device)
    tdist.broadcast(data, src=0)
    if ctx.is_main:
        return value
    return torch.load(io.BytesIO(data.cpu().numpy().tobytes()), weights_only=True)


def broadcast_buffers(model: nn.Module, ctx: Context) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics): without --sync-bn
    each rank's statistics drift apart within a step; the checkpoint holds rank 0's."""
    if ctx.world_size == 1:
        return
    for buffer in model.buffers():
        tdist.broadcast(buffer.data, src=0)


# --- Sharding --------------------------------------------------------------------------


def global_batch_shard(
    order: torch.Tensor, rank: int, world_size: int, local_batch: int, batches: int
) -> torch.Tensor:
    """Rank ``rank``'s samples of the first ``batches`` global batches of ``order``, in batch
    order: global batch i is ``order[i*G:(i+1)*G]`` with G = local_batch * world_size, and
    rank r takes its r-th slice of ``local_batch`` samples."""
    used = order[: batches * local_batch * world_size]
    return used.view(batches, world_size, local_batch)[:, rank].reshape(-1)


class RankBatches:
    """This rank's part of every global micro-batch of an in-memory ``BatchLoader``.

    ``loader`` yields global micro-batches (B/K images, world_size 1); each rank keeps its
    contiguous slice. The augmentation of a global micro-batch is seeded by (seed, epoch,
    micro-batch index), so a resumed run sees the same pixels whatever the process count.
    Only whole SGD steps are yielded: ``len`` is a multiple of ``accum``.
    """

    def __init__(self, loader: BatchLoader, rank: int, world_size: int, accum: int = 1) -> None:
        if loader.batch_size % world_size:
            raise DeepresError(
                f"a micro-batch of {loader.batch_size} images does not split over "
                f"{world_size} processes; make --batch-size a multiple of processes x "
                "--grad-accum-steps"
            )
        self.loader, self.rank, self.world_size, self.accum = loader, rank, world_size, accum
        self.local_batch = loader.batch_size // world_size

    def __len__(self) -> int:
        """Micro-batches per epoch for this rank (the same on every rank)."""
        return len(self.loader) // self.accum * self.accum

    def iter_epoch(
        self, epoch: int, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Micro-batches ``start_batch``, ..., len(self) - 1 of ``epoch`` (global indices)."""
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        batches = self.loader.iter_epoch(epoch, min(start_batch, len(self)))
        for _, (images, labels) in zip(range(start_batch, len(self)), batches, strict=False):
            yield images[lo:hi], labels[lo:hi]


# --- Batch normalisation over all processes -----------------------------------------------


class _AllSum(torch.autograd.Function):
    """Sum over all ranks; the gradient of each rank's input is the sum of the ranks'
    output gradients (every rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        tdist.all_reduce(values)
        return values

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        tdist.all_reduce(grad)
        return grad


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, for CPU
    processes (torch's SyncBatchNorm runs on GPUs only). The mean and variance are sums over
    all ranks through autograd-aware all-reduces, so the backward pass is exact too: P
    processes with batch b normalise like one process with batch P·b (paper §3.4: BN after
    each convolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and tdist.is_initialized() and tdist.get_world_size() > 1):
            return super().forward(x)
        dims, shape = [0, 2, 3], (1, -1, 1, 1)
        xf = x.float() if x.dtype != torch.float64 else x
        count = torch.tensor([x.numel() // x.shape[1]], dtype=xf.dtype, device=x.device)
        head = _AllSum.apply(torch.cat([xf.sum(dims), count]))
        total = head[-1]
        mean = head[:-1] / total
        centred = xf - mean.view(shape)
        var = _AllSum.apply(centred.square().sum(dims)) / total
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None and self.running_var is not None
                self.num_batches_tracked.add_(1)
                momentum = self.momentum
                if momentum is None:  # cumulative moving average
                    momentum = 1.0 / float(self.num_batches_tracked)
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.copy_(momentum * mean + (1 - momentum) * self.running_mean)
                self.running_var.copy_(momentum * unbiased + (1 - momentum) * self.running_var)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, ctx: Context) -> nn.Module:
    """--sync-bn: batch statistics over all processes (nothing to do for one process)."""
    if ctx.world_size == 1:
        return model
    if ctx.device_type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _to_gloo_sync(model)


def _to_gloo_sync(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        bn = module
        sync = GlooSyncBatchNorm(
            bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats
        )
        sync.load_state_dict(bn.state_dict())
        sync.train(bn.training)
        return sync
    for name, child in module.named_children():
        setattr(module, name, _to_gloo_sync(child))
    return module


# --- Elastic restarts ----------------------------------------------------------------------


def restart_count() -> int:
    """How many times torchrun has restarted this job's workers (0: first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def job_id() -> str | None:
    """An identity of the current torchrun job that stays the same over its restarts: the
    rendezvous id (a fresh uuid on one machine, --rdzv-id otherwise), or, when that is the
    default "none", the torchrun agent's log folder on this host (made afresh for every
    torchrun invocation). None without torchrun."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id is None:
        return None
    if run_id and run_id != "none":
        return run_id
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE", "")
    agent = error_file.split("/attempt_")[0] if "/attempt_" in error_file else os.getppid()
    return f"{socket.gethostname()}:{agent}"


def restarted_run(out: Path) -> bool:
    """True when torchrun restarted this job after a failure and ``out`` is the folder this
    job itself started (so its checkpoint is ours to continue, never someone else's run)."""
    ident = job_id()
    marker = out / JOB_FILE
    return (
        restart_count() > 0
        and ident is not None
        and marker.is_file()
        and marker.read_text().strip() == ident
    )


def claim_run(out: Path) -> None:
    """Rank 0: mark ``out`` as this torchrun job's run folder (see ``restarted_run``)."""
    ident = job_id()
    if ident is None:
        return
    from deepres.runtime.files import atomic_write

    atomic_write(out / JOB_FILE, f"{ident}\n".encode())
