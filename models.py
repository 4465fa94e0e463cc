"""The models of a run on this rank: loaded (sharded inside a process group, dist.py) and saved (whole, atomic), the
dtype each role computes and samples in, the sampler's limits, and each stage's seeds.
"""
import os
import shutil
import zlib

import torch

import dist
from runfolder import RZeroError, io_error


def compute_dtype(cfg):
    return torch.bfloat16 if cfg.device.startswith("cuda") else getattr(torch, cfg.dtype)


def sample_dtype(cfg):
    return getattr(torch, cfg.sample_dtype)


def limits(cfg):
    """The sampler's settings of precision, memory and speed, as dist.sample's keyword arguments."""
    return dict(dtype=sample_dtype(cfg), max_rows=cfg.max_rows, kv_cache_gb=cfg.kv_cache_gb, compile=cfg.compile)


def load_model(path, cfg, dtype=None):
    """A role's model on this rank: FSDP2-sharded inside a process group (dist.py), else whole on cfg.device.
    A trained model keeps cfg.dtype (the master weights, the default); a frozen one needs no master copy: the KL
    reference is held in the compute dtype, a model that only samples (a Solver that votes or answers, the
    Challenger that writes the candidates) in the sampling dtype."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # its loading bars would bury the stage lines
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or getattr(torch, cfg.dtype))
    except (OSError, ValueError, SafetensorError) as e:
        raise RZeroError(f"cannot load a model from {path!r}: {str(e).strip().splitlines()[0]}") from None
    model = dist.shard(model, compute_dtype(cfg)) if dist.active() else model.to(cfg.device)
    return model.eval(), tokenizer


def save_model(model, tokenizer, path):
    """A safetensors model folder that AutoModelForCausalLM.from_pretrained loads, written by rank 0 under a
    temporary name and renamed into place, so a killed run never leaves half a checkpoint. A sharded model is
    gathered first (every rank takes part) and saved whole, in its master dtype."""
    from safetensors import SafetensorError
    state = dist.full_state_dict(model) if dist.sharded(model) else None
    if not dist.is_main():
        return
    tmp = f"{path}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, state_dict=state)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, SafetensorError)):
            raise io_error(path, e) from None
        raise


def stage_seed(cfg, *names):
    """Each stage seeds its own randomness from the run seed and its name, so a resumed run redoes a stage
    exactly as an uninterrupted run would."""
    return zlib.crc32(repr((cfg.seed,) + names).encode())


def generator(cfg, *names):
    """The stage's generator on this rank: rank 0 keeps the stage's seed, so one process draws exactly what it
    always did; the others derive their own (the same seed would give every rank the same samples)."""
    seed, r = stage_seed(cfg, *names), dist.rank()
    return torch.Generator(cfg.device).manual_seed(seed if r == 0 else zlib.crc32(repr((seed, r)).encode()))
