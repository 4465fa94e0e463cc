"""GRPO, the policy-gradient method that trains both R-Zero roles (paper Sec. 2.2 and 3; PAPER.md Sec. 5).

Given rollouts (prompt + response token ids) and one scalar reward per rollout, grouped by prompt:
1. `group_advantages`: A_i = (r_i - mean_g) / (std_g + eps), std unbiased as in the official trainer (EasyR1's
   compute_grpo_outcome_advantage); `scale_std=False` gives Dr. GRPO's A_i = r_i - mean_g.
2. `token_logprobs`: log pi(token) of every response token at the sampling temperature, without ever holding
   the (B, T, V) logits: the trunk runs once, then the output layer and log-softmax run over chunks of response
   positions, each chunk recomputed in backward (activation checkpointing).
3. `policy_loss`: PPO clipped surrogate with clip-higher bounds (0.2 / 0.3), dual-clip (3.0) for A < 0, plus
   kl_coef x the k3 ("low_var_kl") estimate of KL(pi || pi_ref), clamped to [-10, 10], as EasyR1 does.
4. `grpo_step`: one update over a batch of rollouts: old (and reference) log-probs once, then mini-batches of
   micro-batches with gradient accumulation, grad-norm clipping and an AdamW step per mini-batch.

Loss aggregation, one count per optimizer step over all its micro-batches:
- "token-mean" (default): sum of token losses / number of response tokens in the mini-batch;
- "seq-mean-token-mean": mean over the mini-batch's sequences of each sequence's token mean.
Departure from the official trainer, on purpose: it takes the token mean of each micro-batch and divides by the
accumulation count, so micro-batches with few tokens weigh more; ours is the exact mini-batch mean. With micro-
batches of one sequence (the official Solver) the official mean is "seq-mean-token-mean".

Rollouts with A = 0 (every group whose rewards are all equal) carry no policy gradient, only KL. As the official
trainer, the mini-batches are formed over all rollouts and those rows contribute their KL and their tokens to the
count. `skip_zero_advantage=True` drops them before any forward pass instead: faster, but a step then takes fewer
optimizer updates (a last mini-batch may be small and still gets a whole AdamW step), loses their KL, and divides
by fewer tokens. A group of size 1 gets A = 0 (no baseline); the official trainer refuses one (it asserts n > 1).

Only torch is needed; `model` is any transformers causal LM whose logits are `lm_head(trunk(x))` (no logit
soft-capping or scaling, which covers Qwen, Llama, Mistral and GPT-2).
"""
import math
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint


@dataclass
class GRPOConfig:
    lr: float = 1e-6  # AdamW, constant (official: 1e-6, betas 0.9/0.999, weight decay 1e-2, no warm-up)
    weight_decay: float = 1e-2
    clip_low: float = 0.2  # ratio may fall to 1 - clip_low for A > 0 ...
    clip_high: float = 0.3  # ... and rise to 1 + clip_high (DAPO's clip-higher, as in the official trainer)
    clip_dual: float = 3.0  # per-token loss capped at -clip_dual * A for A < 0 (dual-clip PPO)
    kl_coef: float = 0.01  # weight of k3 KL to the reference; 0 = no reference model at all
    temperature: float = 1.0  # logits / temperature, the distribution the sampler drew from
    loss_agg: str = "token-mean"  # or "seq-mean-token-mean" (the official Solver's effective aggregation)
    mini_batch: int = 64  # rollouts per optimizer step
    micro_batch: int = 8  # rollouts per forward/backward
    skip_zero_advantage: bool = False  # True: drop A = 0 rollouts before the mini-batches form (see the docstring)
    max_grad_norm: float = 1.0
    logprob_chunk: int = 256  # response positions per output-layer chunk: 256 x 152k vocab = 156 MB in fp32
    grad_checkpointing: bool = False  # the model's own activation checkpointing of its layers
    cpu_autocast: bool = False  # bfloat16 autocast on a CPU too (GPUs always); weights and AdamW stay in their dtype


@dataclass
class Rollouts:
    input_ids: torch.Tensor  # (B, T) prompt + response, right-padded
    attention_mask: torch.Tensor  # (B, T) 1 on real tokens
    response_mask: torch.Tensor  # (B, T) 1 on response tokens (the ones trained)
    advantages: torch.Tensor  # (B,)
    old_logprobs: torch.Tensor | None = None  # (B, T) at response positions, e.g. from the sampler

    def rows(self, idx):
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return Rollouts(*(pick(getattr(self, f)) for f in
                          ("input_ids", "attention_mask", "response_mask", "advantages", "old_logprobs")))


def make_rollouts(prompts, responses, advantages, pad_id, device):
    """grpo.Rollouts from token-id lists: prompt + response per row, right-padded."""
    T = max(len(p) + len(r) for p, r in zip(prompts, responses))
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)  # (B, T)
    attn, resp = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, :len(p) + len(r)] = torch.tensor(p + r)
        attn[i, :len(p) + len(r)] = 1
        resp[i, len(p):len(p) + len(r)] = 1
    return Rollouts(ids.to(device), attn.to(device), resp.to(device), advantages.float().to(device))


def group_advantages(rewards, scale_std=True, eps=1e-6):
    """rewards (G, n): n rollouts of each of G prompts -> advantages (G, n). A group whose rewards are all equal
    gets exactly 0: in float32 the mean of eight rewards of 0.3 is one ulp off, which the plain formula (the official
    trainer's) divides by the group's std (about 3e-8) + eps into +0.03 for every row, an artefact that would train.
    At the official sizes and rewards (4 Challenger rollouts, 5 Solver rollouts of 0, 0.1, 0.9 or 1) it gives 0 too."""
    rewards = rewards.float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    centred = centred.masked_fill((rewards == rewards[:, :1]).all(dim=1, keepdim=True), 0.0)
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards)
    if not scale_std:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)  # unbiased std, as torch.std in EasyR1


def _chunk_logprobs(lm_head, hidden, targets, temperature):
    logits = lm_head(hidden).float() / temperature  # (N, V) for this chunk only
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1).detach()
    return logp.gather(-1, targets[:, None])[:, 0], entropy


def _trunk(model, lm_head, input_ids, attention_mask, positions):
    """The hidden states that enter the output layer, from the model's own forward (so that FSDP's hooks
    gather and reduce every weight): a pre-hook takes them and hands the output layer an empty slice instead."""
    taken = []

    def take(module, args):
        taken.append(args[0])
        return (args[0][:, :0],)  # (B, 0, H): no logits are computed here

    handle = lm_head.register_forward_pre_hook(take)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False)
    finally:
        handle.remove()
    return taken[0]


def token_logprobs(model, input_ids, attention_mask, response_mask, temperature=1.0, chunk=256):
    """log pi(x_t | x_<t) and the policy's entropy (detached) at every response position, both (B, T), 0 elsewhere.

    Gradients reach the model only through response positions: the others are never gathered.
    """
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    lm_head = model.get_output_embeddings()
    hidden = _trunk(model, lm_head, input_ids, attention_mask, positions)  # (B, T, H)
    select = response_mask[:, 1:].bool()  # (B, T-1): position t predicts token t+1
    h = hidden[:, :-1][select]  # (N, H) for the N response tokens
    targets = input_ids[:, 1:][select]  # (N,)
    parts, entropies = [], []
    for i in range(0, len(h), chunk):
        lp, ent = checkpoint(_chunk_logprobs, lm_head, h[i:i + chunk], targets[i:i + chunk], temperature,
                             use_reentrant=False)
        parts.append(lp)
        entropies.append(ent)
    out, entropy = (hidden.new_zeros(select.shape, dtype=torch.float32) for _ in range(2))
    if parts:
        out = out.masked_scatter(select, torch.cat(parts))
        entropy = entropy.masked_scatter(select, torch.cat(entropies))
    pad = out.new_zeros(len(out), 1)
    return torch.cat([pad, out], dim=1), torch.cat([pad, entropy], dim=1)  # (B, T), aligned with input_ids


def k3_kl(logp, ref_logp):
    """k3 estimator of KL(pi || pi_ref) per token (EasyR1 "low_var_kl"): e^(ref-logp) - (ref-logp) - 1."""
    log_ratio = ref_logp - logp
    return (log_ratio.exp() - log_ratio - 1).clamp(-10.0, 10.0)


def policy_loss(logp, old_logp, advantages, cfg, ref_logp=None):
    """Per-token loss (B, T) of the clipped surrogate (+ KL), and the (B, T) mask of tokens whose ratio was clipped."""
    A = advantages[:, None]  # (B, 1)
    log_ratio = logp - old_logp  # unclamped, as the official trainer
    ratio = log_ratio.exp()
    clipped = log_ratio.clamp(math.log(1 - cfg.clip_low), math.log(1 + cfg.clip_high)).exp()
    surrogate = torch.maximum(-A * ratio, -A * clipped)  # PPO: the pessimistic of the two
    loss = torch.where(A < 0, torch.minimum(surrogate, -A * cfg.clip_dual), surrogate)  # dual-clip for A < 0
    was_clipped = (-A * ratio < -A * clipped) | ((A < 0) & (surrogate > -A * cfg.clip_dual))
    if ref_logp is not None and cfg.kl_coef > 0:
        loss = loss + cfg.kl_coef * k3_kl(logp, ref_logp)
    return loss, was_clipped


def aggregate(token_loss, mask, cfg, n_tokens, n_seqs):
    """This micro-batch's share of the mini-batch loss; summed over micro-batches it is the exact mean."""
    mask = mask.float()
    if cfg.loss_agg == "token-mean":
        return (token_loss * mask).sum() / max(n_tokens, 1)
    if cfg.loss_agg == "seq-mean-token-mean":
        return ((token_loss * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / max(n_seqs, 1)
    raise ValueError(f"unknown loss_agg {cfg.loss_agg!r}: use 'token-mean' or 'seq-mean-token-mean'")


def make_optimizer(model, cfg):
    if hasattr(model, "reshard"):  # FSDP2 leaves the root's weights gathered after a forward; AdamW takes the shards
        model.reshard()
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)


def _autocast(model, cfg):
    kind = model.device.type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=kind == "cuda" or kind == "cpu" and cfg.cpu_autocast)


@torch.no_grad()
def _logprobs_no_grad(model, batch, cfg):
    out = []
    for i in range(0, len(batch.input_ids), cfg.micro_batch):
        with _autocast(model, cfg):
            out.append(token_logprobs(model, batch.input_ids[i:i + cfg.micro_batch],
                                      batch.attention_mask[i:i + cfg.micro_batch],
                                      batch.response_mask[i:i + cfg.micro_batch], cfg.temperature,
                                      cfg.logprob_chunk)[0])
    return torch.cat(out)


def _enable_checkpointing(model):
    """The model's own activation checkpointing of its layers (transformers >= 5.2x renamed the switch)."""
    if hasattr(type(model), "is_activation_checkpointing"):
        if not model.is_activation_checkpointing:
            model.activation_checkpointing_enable()
    elif not model.is_gradient_checkpointing:
        model.gradient_checkpointing_enable()


def _rank_world():
    d = torch.distributed
    return (d.get_rank(), d.get_world_size()) if d.is_available() and d.is_initialized() else (0, 1)


def _share(start, stop, rank, world):
    """This rank's rows of the mini-batch [start, stop) and which of them are real: the share is padded to
    ceil((stop - start) / world) rows with copies of row `start` that the loss leaves out, because FSDP gathers
    weights in every forward and so all ranks must run as many micro-batches."""
    per_rank = -(-(stop - start) // world)
    idx = [start + rank * per_rank + j for j in range(per_rank)]
    return [i if i < stop else start for i in idx], [i < stop for i in idx]


def grpo_step(model, optimizer, batch, cfg, ref_model=None):
    """One GRPO update on `batch` (Rollouts). Returns a dict of stats for logging.

    Inside a torch.distributed process group (the model then FSDP-sharded), every rank passes the same batch and
    trains its share of each mini-batch; the loss is still normalised by the whole mini-batch's counts, so one
    step on N ranks equals one step on one rank over the same batch, up to the order of float sums.
    """
    nonzero = batch.advantages != 0
    stats = dict(rollouts=len(batch.advantages), zero_adv=int((~nonzero).sum()),
                 response_len=batch.response_mask.sum(1).float().mean().item())
    if cfg.skip_zero_advantage:
        batch = batch.rows(nonzero.nonzero()[:, 0])
    n, device = len(batch.advantages), batch.advantages.device
    if n == 0:
        return {**stats, "updates": 0, "loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "ratio": 1.0, "grad_norm": 0.0,
                "entropy": 0.0}
    rank, world = _rank_world()
    spans = [(a, min(a + cfg.mini_batch, n)) for a in range(0, n, cfg.mini_batch)]
    shares = [_share(a, b, rank, world) for a, b in spans]
    mine = batch.rows(torch.tensor([i for idx, _ in shares for i in idx], device=device))  # this rank's rows
    real = torch.tensor([r for _, rs in shares for r in rs], device=device)  # (B_rank,) False on padding
    model.train()  # dropout, if the config has any, stays on for old and new log-probs alike (Qwen/Llama have none)
    if cfg.grad_checkpointing:
        _enable_checkpointing(model)
    old = mine.old_logprobs if mine.old_logprobs is not None else _logprobs_no_grad(model, mine, cfg)
    ref = _logprobs_no_grad(ref_model, mine, cfg) if ref_model is not None and cfg.kl_coef > 0 else None

    sums = torch.zeros(6, dtype=torch.float64)  # loss, kl, clipped, ratio, entropy x tokens, tokens
    norms, offset = [], 0
    for (a, b), (idx, _) in zip(spans, shares):
        n_tokens, n_seqs = int(batch.response_mask[a:b].sum()), b - a  # the whole mini-batch's counts (Sec. 5)
        optimizer.zero_grad(set_to_none=True)
        for i in range(offset, offset + len(idx), cfg.micro_batch):
            j = min(i + cfg.micro_batch, offset + len(idx))
            mask = mine.response_mask[i:j].bool() & real[i:j, None]
            with _autocast(model, cfg):
                logp, entropy = token_logprobs(model, mine.input_ids[i:j], mine.attention_mask[i:j],
                                               mine.response_mask[i:j], cfg.temperature, cfg.logprob_chunk)
            ref_lp = ref[i:j] if ref is not None else None
            tok_loss, was_clipped = policy_loss(logp, old[i:j], mine.advantages[i:j], cfg, ref_lp)
            loss = aggregate(tok_loss, mask, cfg, n_tokens, n_seqs)  # padding rows: in the graph, out of the loss
            (loss * world).backward()  # FSDP averages gradients over the ranks; the sum is wanted
            with torch.no_grad():
                kl = k3_kl(logp, ref_lp)[mask].sum().item() if ref_lp is not None else 0.0
                n = int(mask.sum())
                sums += torch.tensor([loss.item(), kl, was_clipped[mask].float().sum().item(),
                                      (logp - old[i:j]).exp()[mask].sum().item(),
                                      entropy[mask].mean().item() * n if n else 0.0, n], dtype=torch.float64)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        norms.append((norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item())  # DTensor under FSDP
        if math.isfinite(norms[-1]):  # as the official trainer, a non-finite gradient skips the update
            optimizer.step()
        offset += len(idx)
    optimizer.zero_grad(set_to_none=True)  # no gradients held while the next batch is sampled
    if world > 1:
        sums = sums.to(model.device)
        torch.distributed.all_reduce(sums)
    loss, kl, clipped, ratio, entropy, tokens = sums.tolist()
    tokens = max(tokens, 1)
    return {**stats, "updates": len(spans), "loss": loss / len(spans), "kl": kl / tokens, "clip_frac": clipped / tokens,
            "ratio": ratio / tokens, "grad_norm": sum(norms) / len(norms), "entropy": entropy / tokens}
