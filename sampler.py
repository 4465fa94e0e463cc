"""Batched, KV-cached sampling from any transformers causal LM, in plain torch.

R-Zero samples almost all the time: the Challenger's questions, the Solver's m = 10 votes per question, and the
GRPO rollouts of both roles (paper Sec. 3; the official code uses vLLM, RZERO-SPEC Sec. 2.4, 3.1). This file is
the replacement, and it imports nothing from the rest of the project.

    from sampler import sample
    groups = sample(model, [[1, 2, 3], [4, 5]], n=10, max_new_tokens=64, temperature=1.0, stop_ids=[eos])
    groups[0][3].tokens, groups[0][3].logprobs, groups[0][3].finish   # prompt 0, sample 3

How it works (gpt-fast's and nanochat's techniques):
- Prompts are sorted by length and cut into batches of at most `max_rows` rows (prompts x n).
- Prefill: the unique prompts of a batch, left-padded, run once. Their keys and values are then copied n times
  into a cache allocated once for the whole batch (`KVCache`), so a prompt is never recomputed per sample.
- Decode: one token per row per step, written at the same cache slot for every row (left padding lines the rows
  up), with per-row position ids and an explicit 4-D mask, so every step has the same shapes.
- Sampling is on the device: temperature, top-k, top-p, then argmax(probs / Exponential(1)) with noise from the
  caller's generator. The host looks at the `done` flags only every `check_every` steps.
- When the live rows fall to half the batch or fewer, they are gathered into a smaller cache (compaction), so
  late steps run on live rows only. On a GPU, `compile=True` captures the decode forward with
  torch.compile(mode="reduce-overhead") (CUDA graphs); each compacted batch size is one more captured graph.
"""
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass
class Sample:
    tokens: list  # generated token ids, the stop token included when one was hit
    logprobs: list  # log-prob of each token under softmax(logits / temperature), before top-k/top-p
    finish: str  # "stop" or "length"


class KVCache:
    """Keys and values preallocated as (B, H, S, D) per layer; the part of transformers' Cache a forward uses.

    Every row writes at the same slots (`self.slot`, a device tensor the sampler sets). Rows are told apart by their
    position ids and attention mask, not by where they sit in the cache. `self.end` (None = all S slots) is how many
    slots attention reads: eager decoding reads only the filled ones, a captured graph needs static shapes.
    """

    def __init__(self, num_layers, batch, length):
        self.k, self.v = [None] * num_layers, [None] * num_layers
        self.batch, self.length = batch, length
        self.slot = None  # (T,) cache slots that the next forward writes
        self.end = None

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if self.k[layer_idx] is None:  # allocated on first use: heads, head size and dtype come from the model
            b, h, _, d = key_states.shape
            self.k[layer_idx] = key_states.new_zeros(b, h, self.length, d)  # (B, H, S, D)
            self.v[layer_idx] = value_states.new_zeros(b, h, self.length, value_states.shape[-1])
        self.k[layer_idx].index_copy_(2, self.slot, key_states)
        self.v[layer_idx].index_copy_(2, self.slot, value_states)
        return self.k[layer_idx][:, :, :self.end], self.v[layer_idx][:, :, :self.end]

    def select(self, rows, length=None):
        """A new cache holding `rows` (indices into this one), optionally longer; used to expand and to compact."""
        new = KVCache(len(self.k), len(rows), length or self.length)
        new.slot = torch.zeros(1, dtype=torch.long, device=rows.device)
        for i, (k, v) in enumerate(zip(self.k, self.v)):
            new.k[i], new.v[i] = k[rows], v[rows]
            if new.length > self.length:  # zeros, not garbage: a masked NaN would still poison attention
                pad = (0, 0, 0, new.length - self.length)
                new.k[i], new.v[i] = torch.nn.functional.pad(new.k[i], pad), torch.nn.functional.pad(new.v[i], pad)
        return new

    def mark_static(self):
        for t in self.k + self.v + [self.slot]:
            torch._dynamo.mark_static_address(t)


def _cache_kwarg(model):
    """transformers >= 5.2x names the cache argument `cache`; earlier releases call it `past_key_values`."""
    import inspect
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _attention_bias(pad_len, query_slots, length, dtype):
    """(B, 1, T, S) additive mask: a query at slot q sees the slots from its row's first real token up to q."""
    keys = torch.arange(length, device=pad_len.device)
    visible = (keys[None, None, :] >= pad_len[:, None, None]) & (keys[None, None, :] <= query_slots[None, :, None])
    return torch.zeros(visible.shape, dtype=dtype, device=pad_len.device).masked_fill_(
        ~visible, torch.finfo(dtype).min)[:, None]


def forward(model, cache, tokens, positions, pad_len, cache_kwarg="cache"):
    """Logits of the last position, (B, V), for `tokens` (B, T) written at cache slots `cache.slot`."""
    bias = _attention_bias(pad_len, cache.slot, cache.end or cache.length, model.dtype)
    out = model(input_ids=tokens, position_ids=positions, attention_mask=bias, use_cache=True,
                **{cache_kwarg: cache})
    return out.logits[:, -1]


def sample_tokens(logits, temperature, top_k, top_p, generator=None):
    """One token per row from logits (B, V), and its log-prob under softmax(logits / temperature).

    temperature 0 means greedy; its log-probs are then those of softmax(logits). top_k 0 and top_p 1 are off.
    """
    logits = logits.float()
    if temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)
        tok = logits.argmax(dim=-1)
        return tok, logp.gather(-1, tok[:, None])[:, 0]
    logp = torch.log_softmax(logits / temperature, dim=-1)  # (B, V): the distribution GRPO trains
    kept = logp
    if top_k and top_k < logp.shape[-1]:
        kth = logp.topk(top_k, dim=-1).values[:, -1:]
        kept = kept.masked_fill(kept < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logp, order = kept.sort(dim=-1, descending=True)
        probs = sorted_logp.exp()
        drop = probs.cumsum(dim=-1) - probs > top_p  # tokens past the nucleus; the first one always stays
        kept = kept.scatter(-1, order, sorted_logp.masked_fill(drop, float("-inf")))
    noise = torch.empty_like(kept).exponential_(1.0, generator=generator)
    tok = (kept.exp() / noise).argmax(dim=-1)  # exponential race == sampling from the renormalised kept probs
    return tok, logp.gather(-1, tok[:, None])[:, 0]


@torch.no_grad()
def generate_batch(model, prompts, n, max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, stop_ids=(),
                   generator=None, check_every=8, compile=False, pad_id=0):
    """Sample n continuations of each prompt in one batch. Returns a list (prompt) of lists (sample) of Sample."""
    device = model.device
    P, L = len(prompts), max(len(p) for p in prompts)
    S = -(-(L + max_new_tokens) // 16) * 16  # cache length, a multiple of 16
    ids = torch.full((P, L), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):] = torch.tensor(p)
    ids = ids.to(device)  # (P, L), left-padded
    pad_len = torch.tensor([L - len(p) for p in prompts], device=device)  # (P,)
    positions = (torch.arange(L, device=device)[None] - pad_len[:, None]).clamp(min=0)  # (P, L)

    prefill = KVCache(model.config.num_hidden_layers, P, L)
    prefill.slot = torch.arange(L, device=device)
    cache_kwarg = _cache_kwarg(model)
    logits = forward(model, prefill, ids, positions, pad_len, cache_kwarg)  # (P, V)

    rows = torch.arange(P, device=device).repeat_interleave(n)  # (B,) prompt of each row
    cache = prefill.select(rows, S)
    del prefill
    if compile:
        cache.mark_static()
    B = P * n
    logits, pad_len, pos = logits[rows], pad_len[rows], positions[rows, -1]  # (B, V), (B,), (B,)
    row_ids = torch.arange(B, device=device)  # original row of each live row, changed by compaction
    stop = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    out_tok = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)  # (B, N)
    out_lp = torch.zeros(B, max_new_tokens, device=device)  # (B, N)
    n_gen = torch.zeros(B, dtype=torch.long, device=device)  # (B,)
    hit_stop = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
    done = torch.zeros(B, dtype=torch.bool, device=device)  # (B,) per live row
    step_fn = torch.compile(forward, mode="reduce-overhead") if compile else forward

    for t in range(max_new_tokens):
        tok, lp = sample_tokens(logits, temperature, top_k, top_p, generator)
        live = ~done
        out_tok[row_ids, t] = torch.where(live, tok, pad_id)
        out_lp[row_ids, t] = torch.where(live, lp, 0.0)
        n_gen[row_ids] += live.long()
        now_stopped = live & torch.isin(tok, stop)
        hit_stop[row_ids] |= now_stopped
        done = done | now_stopped
        if t == max_new_tokens - 1:
            break
        if (t + 1) % check_every == 0:
            n_live = int((~done).sum())  # the only host sync, once every check_every steps
            if n_live == 0:
                break
            if n_live <= len(done) // 2:  # compaction: keep the live rows only
                keep = (~done).nonzero()[:, 0]
                cache = cache.select(keep)
                tok, pad_len, pos, row_ids, done = tok[keep], pad_len[keep], pos[keep], row_ids[keep], done[keep]
                if compile:
                    cache.mark_static()
        pos = pos + 1
        cache.slot.fill_(L + t)
        cache.end = None if compile else L + t + 1
        logits = step_fn(model, cache, tok[:, None], pos[:, None], pad_len, cache_kwarg)

    out_tok, out_lp, n_gen, hit_stop = out_tok.tolist(), out_lp.tolist(), n_gen.tolist(), hit_stop.tolist()
    samples = [Sample(out_tok[r][:n_gen[r]], out_lp[r][:n_gen[r]], "stop" if hit_stop[r] else "length")
               for r in range(B)]
    return [samples[i * n:(i + 1) * n] for i in range(P)]


def sample(model, prompts, n=1, max_new_tokens=256, temperature=1.0, top_p=1.0, top_k=0, stop_ids=(),
           generator=None, max_rows=512, check_every=8, compile=False, progress=True, desc="sampling"):
    """n samples for each prompt (a list of token-id lists), in batches of at most max_rows rows (prompts x n).

    Memory is bounded by max_rows: the cache of a batch holds max_rows x (longest prompt + max_new_tokens)
    positions. progress: a bar while stderr is a terminal. Returns, in the order of `prompts`, one list of n
    Sample per prompt.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("sample() needs a non-empty list of non-empty prompts")
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths share a batch
    per_batch = max(1, max_rows // n)
    results = [None] * len(prompts)
    bar = tqdm(total=len(prompts) * n, desc=desc, unit="sample", disable=None if progress else True, leave=False)
    for start in range(0, len(order), per_batch):
        chunk = order[start:start + per_batch]
        groups = generate_batch(model, [prompts[i] for i in chunk], n, max_new_tokens, temperature, top_p, top_k,
                                stop_ids, generator, check_every, compile, pad_id)
        for i, g in zip(chunk, groups):
            results[i] = g
        bar.update(len(chunk) * n)
    bar.close()
    return results
