"""Distributed plumbing: torchrun processes, FSDP2 sharding, data-parallel sampling, full-state checkpoints.

    bash run.sh --nproc 8 [OPTIONS]          # one node: 8 GPUs, or 8 CPU processes over gloo
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank R --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        rzero.py -- [OPTIONS]                # 2 nodes x 8 GPUs; --out on a file system both nodes see

Only torch's own stack: torchrun starts one process per device, torch.distributed talks (NCCL on GPUs, gloo on
CPU) and FSDP2's `fully_shard` shards each role, one unit per decoder block plus the root (torchtitan's layout).
The trained weights and AdamW's states stay float32 and sharded over the ranks; on GPUs every forward computes
in bfloat16 (MixedPrecisionPolicy) and gradients are reduced in float32. A GPU run without torchrun is a group
of one, so one GPU and many train through the same path. A CPU run without torchrun uses none of this.

Sampling does not go through FSDP: in `sample`, `replica` all-gathers each parameter once into a plain model in
the sampling dtype, every rank samples its share of the rows on it (`split`), `gather` puts the results back in
order on every rank, and the replica is freed. Rank 0 writes every file; `barrier` makes the others wait for it.
"""
import os

import torch
import torch.distributed as tdist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

import sampler


def active():
    """True inside a process group: models are then FSDP2-sharded."""
    return tdist.is_available() and tdist.is_initialized()


def rank():
    """This process's rank; before the group is joined, the one torchrun gave it (so errors come from rank 0)."""
    return tdist.get_rank() if active() else int(os.environ.get("RANK", 0))


def world():
    return tdist.get_world_size() if active() else 1


def sharded(model):
    return isinstance(model, FSDPModule)


def is_main():
    return rank() == 0


def init(device):
    """Join torchrun's process group, or on a GPU start a group of one. Raises ValueError if a rank has no GPU."""
    if active():
        return
    size, cuda = int(os.environ.get("WORLD_SIZE", 1)), device.startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        if local >= torch.cuda.device_count():
            raise ValueError(f"local rank {local} has no GPU: {torch.cuda.device_count()} here; lower --nproc "
                             "(torchrun: --nproc_per_node)")
        torch.cuda.set_device(local)  # "cuda" now names this rank's GPU
    if "MASTER_ADDR" in os.environ:  # launched by torchrun
        tdist.init_process_group("nccl" if cuda else "gloo")
    elif cuda:
        tdist.init_process_group("nccl", store=tdist.HashStore(), rank=0, world_size=1)
    elif size > 1:
        raise ValueError("WORLD_SIZE is set but MASTER_ADDR is not: launch with torchrun or bash run.sh --nproc N")


def close():
    if active():
        tdist.destroy_process_group()


def barrier():
    if active():
        tdist.barrier()


def broadcast(obj):
    """Rank 0's value of obj, on every rank."""
    if not active():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def split(n):
    """This rank's contiguous share of range(n); shares differ in size by at most one."""
    r, w = rank(), world()
    return range(n * r // w, n * (r + 1) // w)


def gather(items):
    """Every rank's list, concatenated in rank order, on every rank: the inverse of `split`."""
    if not active():
        return list(items)
    parts = [None] * world()
    tdist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def shard(model, compute_dtype):
    """FSDP2 over every rank: one unit per decoder block (the classes transformers never splits) and the root.
    Parameters stay in their loaded dtype (the master copy); forwards compute in compute_dtype and gradients are
    reduced in float32. Moves the shards to this rank's device."""
    mesh = init_device_mesh("cuda" if tdist.get_backend() == "nccl" else "cpu", (world(),))
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    blocks = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    model.compute_dtype = compute_dtype  # the dtype `replica` samples in unless told another
    return model


@torch.no_grad()
def replica(model, dtype=None):
    """A plain copy of the model in `dtype` for sampling (default: a sharded model's compute dtype, else its own);
    the model itself where it already is one. A sharded model's weights are gathered one parameter at a time from
    the master copy, cast and copied, so the copy is the only whole model held."""
    dtype = dtype or getattr(model, "compute_dtype", model.dtype)
    if not sharded(model) and model.dtype == dtype:
        return model
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights
    with torch.device(model.device), no_init_weights():  # every weight is overwritten below
        plain = AutoModelForCausalLM.from_config(model.config, dtype=dtype)
    plain.tie_weights()  # skipped with the initialisation; a tied output layer must share the embedding
    params = dict(plain.named_parameters())
    for name, p in model.named_parameters():
        params[name].copy_(p.full_tensor() if isinstance(p, DTensor) else p)
    for name, b in model.named_buffers():
        plain.get_buffer(name).copy_(b)
    return plain.eval()


def full_state_dict(model):
    """The whole model's weights on rank 0's CPU ({} on the other ranks); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def sample(model, prompts, n, dtype=None, **kw):
    """sampler.sample over every rank: each samples its share of the rows on a gathered copy of the weights in
    `dtype` (`replica`), and every rank gets all the results, in order. One prompt is shared out by its n samples,
    several prompts by prompt. In one process this is sampler.sample itself, on a copy where dtype asks for one.
    kv_cache_gb=0: 80% of the GPU memory left free once the replica is built (none on CPU)."""
    plain = replica(model, dtype)
    kw["progress"] = kw.get("progress", True) and is_main()  # a bar on rank 0's terminal only
    if kw.get("kv_cache_gb") == 0:
        cuda = plain.device.type == "cuda"
        kw["kv_cache_gb"] = 0.8 * torch.cuda.mem_get_info(plain.device)[0] / 1e9 if cuda else None
    if len(prompts) == 1:
        share = len(split(n))
        return [gather(sampler.sample(plain, prompts, n=share, **kw)[0] if share else [])]
    mine = [prompts[i] for i in split(len(prompts))]
    return gather(sampler.sample(plain, mine, n=n, **kw) if mine else [])
