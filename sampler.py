"""Batched, KV-cached sampling from any transformers causal LM, in plain torch.

R-Zero samples almost all the time: the Challenger's questions, the Solver's m = 10 votes per question, and the
GRPO rollouts of both roles (paper Sec. 3; the official code uses vLLM, PAPER.md Sec. 2.4, 3.1). This file is
the replacement, and it imports nothing from the rest of the project.

    from sampler import sample
    groups = sample(model, [[1, 2, 3], [4, 5]], n=10, max_new_tokens=64, temperature=1.0, stop_ids=[eos])
    groups[0][3].tokens, groups[0][3].logprobs, groups[0][3].finish   # prompt 0, sample 3

How it works (gpt-fast's and nanochat's techniques, and a cache sized by need):
- Rows (prompts x n) run in waves, longest prompts first. A wave starts as many rows as fit in `max_rows` and
  in the KV budget (`kv_cache_gb`) at their current length, not at the longest they could grow to.
- Prefill: the unique prompts of a wave, left-padded, run once (only the last position's logits are made). Their
  keys and values are then copied n times into the decode cache (`KVCache`), so a prompt is never recomputed per
  sample.
- Decode: one token per row per step, written at the same cache slot for every row (left padding lines the rows
  up), with per-row position ids and an explicit 4-D mask.
- The cache grows by `chunk` positions when the longest live row reaches its end; finished rows are left behind
  then, and whenever the live rows fall to half the batch (compaction). If the grown cache would exceed the
  budget, the rows that do not fit leave the wave with what they have generated; a later wave prefills their
  prompt and tokens so far and continues them (vLLM's preemption by recomputation), so every sample is exact.
- Why waves and not admitting new prompts into the rows that finished ones free (continuous batching): in one
  contiguous cache every row pays the longest live row's length, so a young row beside an old long one costs as
  much as the long one. Rows that start together grow together; the budget then holds many more of them.
- Sampling is on the device: temperature, top-k, top-p, then argmax(probs / Exponential(1)) with noise from the
  caller's generator. Top-p looks among each row's 256 most likely tokens first and sorts the whole vocabulary
  only for a row whose nucleus is wider (`nucleus`): the same tokens, without a sort that costs a third of a CPU
  decode step at 20 rows. The host looks at the `done` flags only every `check_every` steps and when the cache
  grows.
- `compile=True` (opt-in) captures the decode forward with torch.compile(mode="reduce-overhead") (CUDA graphs on
  a GPU). Shapes come from a small set: cache lengths are multiples of `chunk` (or the wave's last length), and
  after compaction row counts are padded with finished rows to powers of two up to 64, then multiples of 64. A
  capture that fails is one line on stderr, and the process samples eagerly from then on.
"""
import sys
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from tqdm.std import tqdm as plain_tqdm


class LogLines(plain_tqdm):
    """tqdm for a log file: whole lines and never a carriage return. One line when the work starts, one at each
    further tenth done (at most one every 5 s) and one at the end, so long work is never silent in a log."""

    def display(self, msg=None, pos=None):
        tenth, now = (10 * self.n // self.total if self.total else 0), self._time()
        last = getattr(self, "last_line", None)  # (tenth, time) of the last line written
        if msg == "" or last is None or (tenth > last[0] and now - last[1] >= 5):  # msg "": tqdm is closing
            self.fp.write(self.__str__() + "\n")
            self.fp.flush()
            self.last_line = (tenth, now)
        return False


def progress_bar(iterable=None, total=None, desc="", unit="it", enabled=True):
    """A tqdm bar while stderr is a terminal; lines (LogLines) when it is not; nothing when not enabled."""
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)
    return LogLines(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, mininterval=1,
                    bar_format="{desc}: {n_fmt}/{total_fmt} {unit}s ({percentage:.0f}%), {elapsed} elapsed{postfix}")


@dataclass
class Sample:
    tokens: list  # generated token ids, the stop token included when one was hit
    logprobs: list  # log-prob of each token under softmax(logits / temperature), before top-k/top-p
    finish: str  # "stop" or "length"


class BudgetError(ValueError):
    """kv_cache_gb cannot hold one row at its longest."""


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


def _model_kwargs(model):
    """How this model's forward takes the cache (transformers >= 5.2x names it `cache`, earlier releases
    `past_key_values`), and `logits_to_keep` where it exists, so a prefill makes no (B, T, V) logits."""
    import inspect
    params = inspect.signature(model.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def _attention_bias(pad_len, query_slots, length, dtype):
    """(B, 1, T, S) additive mask: a query at slot q sees the slots from its row's first real token up to q."""
    keys = torch.arange(length, device=pad_len.device)
    visible = (keys[None, None, :] >= pad_len[:, None, None]) & (keys[None, None, :] <= query_slots[None, :, None])
    return torch.zeros(visible.shape, dtype=dtype, device=pad_len.device).masked_fill_(
        ~visible, torch.finfo(dtype).min)[:, None]


def forward(model, cache, tokens, positions, pad_len, kwargs=("cache", False)):
    """Logits of the last position, (B, V), for `tokens` (B, T) written at cache slots `cache.slot`."""
    bias = _attention_bias(pad_len, cache.slot, cache.end or cache.length, model.dtype)
    cache_kwarg, keep_last = kwargs
    out = model(input_ids=tokens, position_ids=positions, attention_mask=bias, use_cache=True,
                **{cache_kwarg: cache}, **({"logits_to_keep": 1} if keep_last else {}))
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
        kept = nucleus(kept, top_p)
    noise = torch.empty_like(kept).exponential_(1.0, generator=generator)
    tok = (kept.exp() / noise).argmax(dim=-1)  # exponential race == sampling from the renormalised kept probs
    return tok, logp.gather(-1, tok[:, None])[:, 0]


def nucleus_by_sort(logp, top_p):
    """logp (B, V) with the tokens past the top-p nucleus set to -inf: the fewest most likely tokens whose
    probability, counted before each token, stays within top_p (the first token always stays)."""
    sorted_logp, order = logp.sort(dim=-1, descending=True)
    probs = sorted_logp.exp()
    drop = probs.cumsum(dim=-1) - probs > top_p  # tokens past the nucleus
    return logp.scatter(-1, order, sorted_logp.masked_fill(drop, float("-inf")))


def nucleus(logp, top_p, candidates=256):
    """nucleus_by_sort's result, found among each row's `candidates` most likely tokens: sorting a 151k vocabulary
    costs a third of a CPU decode step at 20 rows (bench.py nucleus). A row whose nucleus ends inside its
    candidates keeps exactly the tokens at or above its last kept value, the same set as the sort's when no tie
    straddles the edge; a row whose nucleus is wider, or whose edge splits a tie, takes the full sort."""
    if logp.is_cuda:  # a GPU sorts fast, and `slow.any()` below would stop the host at every decode step
        return nucleus_by_sort(logp, top_p)
    k = min(candidates, logp.shape[-1])
    top = logp.topk(k, dim=-1).values  # (B, k), descending
    probs = top.exp()
    drop = probs.cumsum(dim=-1) - probs > top_p  # (B, k); a prefix of the sorted cumsum is the same numbers
    edge = drop.int().argmax(dim=-1, keepdim=True)  # first dropped candidate (0 where none is dropped)
    last_kept = top.gather(-1, (edge - 1).clamp(min=0))
    ok = drop[:, -1:] & (top.gather(-1, edge) < last_kept)  # ends inside, and no tie across the edge
    kept = logp.masked_fill(ok & (logp < last_kept), float("-inf"))
    slow = ~ok[:, 0]
    if slow.any():
        kept[slow] = nucleus_by_sort(logp[slow], top_p)
    return kept


def kv_bytes_per_token(model):
    """Bytes of keys and values that one token of one row holds in the cache, from the model's config."""
    c = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 2 * c.num_hidden_layers * heads * head_dim * model.dtype.itemsize


def _round_up(x, step):
    return -(-x // step) * step


def _cache_length(cur, cap, chunk):
    """Slots for a batch whose next write is at slot `cur`: the next multiple of chunk, at most cap (no chunk: cap)."""
    return min(cap, _round_up(cur + 1, chunk)) if chunk else cap


def _row_bucket(rows, down=False):
    """The row counts a compiled decode step sees after compaction: powers of two up to 64, then multiples of 64.
    The smallest bucket holding `rows`, or with down=True the largest that `rows` holds."""
    if down:
        return 1 << (rows.bit_length() - 1) if rows < 64 else rows // 64 * 64
    return 1 << (rows - 1).bit_length() if rows <= 64 else _round_up(rows, 64)


_capture_failed = []  # the error of a capture that failed: this process then samples eagerly


def _captured(compiled):
    """The compiled decode step, or the eager one once a capture has failed (a backend or a model that
    torch.compile cannot capture here): one line says so, the failed step is redone eagerly, and every later step
    and wave is eager, so a run goes on at eager speed instead of stopping."""
    def step(*args):
        if not _capture_failed:
            try:
                return compiled(*args)
            except Exception as e:  # torch.compile raises many kinds (BackendCompilerFailed, Unsupported, ...)
                _capture_failed.append(e)
                first = (str(e).strip().splitlines() or [""])[0][:120]
                print(f"sampler: torch.compile could not capture the decode step ({type(e).__name__}: {first}); "
                      "sampling eagerly", file=sys.stderr)
        return forward(*args)
    return step


@torch.no_grad()
def generate_wave(model, seqs, remaining, temperature=1.0, top_p=1.0, top_k=0, stop_ids=(), generator=None,
                  budget=None, chunk=256, check_every=8, compile=False, pad_id=0, bar=None):
    """Continue each token list in `seqs` (a prompt, or a prompt and what a row already generated) by at most
    `remaining[i]` tokens, as one batch whose rows all start now: a wave.

    budget: the most cache slots (rows x positions) the wave may hold, or None. chunk: the cache grows by this many
    positions when the longest live row reaches its end (None: allocated for the longest possible row up front).
    Returns (tokens, logprobs, finish) per row; finish None marks a row taken out to keep the cache in the budget,
    which the caller continues in a later wave.
    """
    device, compile = model.device, compile and not _capture_failed
    L, T = max(map(len, seqs)), max(remaining)
    cap = _round_up(L + T, 16)  # no row goes past slot L + T - 1
    unique = {}
    src = torch.tensor([unique.setdefault(tuple(s), len(unique)) for s in seqs], device=device)  # (B,)
    prompts = list(unique)  # rows with the same tokens (a fresh prompt's n samples) share one prefill
    ids = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):] = torch.tensor(p)
    ids = ids.to(device)  # (P, L), left-padded
    pad_len = torch.tensor([L - len(p) for p in prompts], device=device)  # (P,)
    positions = (torch.arange(L, device=device)[None] - pad_len[:, None]).clamp(min=0)  # (P, L)

    prefill = KVCache(model.config.num_hidden_layers, len(prompts), L)
    prefill.slot = torch.arange(L, device=device)
    kwargs = _model_kwargs(model)
    logits = forward(model, prefill, ids, positions, pad_len, kwargs)  # (P, V)
    cache = prefill.select(src, _cache_length(L, cap, chunk))
    del prefill
    if compile:
        cache.mark_static()
    B = len(seqs)
    logits, pad_len, pos = logits[src], pad_len[src], positions[src, -1]  # (B, V), (B,), (B,)
    row_ids = torch.arange(B, device=device)  # the wave's row of each row in the cache, changed by compaction
    limit = torch.tensor(remaining, device=device)  # (B,)
    stop = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    out_tok = torch.full((B, T), pad_id, dtype=torch.long, device=device)  # (B, T)
    out_lp = torch.zeros(B, T, device=device)  # (B, T)
    n_gen = torch.zeros(B, dtype=torch.long, device=device)  # (B,)
    hit_stop = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
    done = torch.zeros(B, dtype=torch.bool, device=device)  # (B,) per row in the cache
    step_fn = _captured(torch.compile(forward, mode="reduce-overhead")) if compile else forward
    taken_out, reported = 0, 0

    for t in range(T):
        tok, lp = sample_tokens(logits, temperature, top_k, top_p, generator)
        live = ~done
        out_tok[row_ids, t] = torch.where(live, tok, pad_id)
        out_lp[row_ids, t] = torch.where(live, lp, 0.0)
        n_gen[row_ids] += live.long()
        now_stopped = live & torch.isin(tok, stop)
        hit_stop[row_ids] |= now_stopped
        done = done | now_stopped | (n_gen[row_ids] >= limit[row_ids])
        if t == T - 1:
            break
        cur = L + t  # the slot the next forward writes
        grow = cur >= cache.length
        if grow or (t + 1) % check_every == 0:
            n_live = int((~done).sum())  # the only host sync, once every check_every steps
            if bar is not None:
                bar.update(B - taken_out - n_live - reported)
                reported = B - taken_out - n_live
            if n_live == 0:
                break
            if grow or n_live <= len(done) // 2:  # compaction: keep the live rows only, in a longer cache if full
                length = _cache_length(cur, cap, chunk) if grow else cache.length
                keep = (~done).nonzero()[:, 0]
                fits = n_live if budget is None else budget // length
                if compile and budget is not None:  # a bucket, so that padding to a bucket stays in the budget
                    fits = _row_bucket(fits, down=True)
                taken_out += max(0, n_live - fits)  # these rows stop here; a later wave continues them
                keep = keep[:fits]
                if compile:  # finished rows pad the batch to a bucket, so few shapes are captured
                    keep = torch.cat([keep, done.nonzero()[:, 0][:_row_bucket(len(keep)) - len(keep)]])
                cache = cache.select(keep, length)
                tok, pad_len, pos, row_ids, done = tok[keep], pad_len[keep], pos[keep], row_ids[keep], done[keep]
                if compile:
                    cache.mark_static()
        pos = pos + 1
        cache.slot.fill_(cur)
        cache.end = None if compile else cur + 1
        logits = step_fn(model, cache, tok[:, None], pos[:, None], pad_len, kwargs)

    out_tok, out_lp, n_gen, hit_stop = out_tok.tolist(), out_lp.tolist(), n_gen.tolist(), hit_stop.tolist()
    finish = ["stop" if hit_stop[r] else "length" if n_gen[r] == remaining[r] else None for r in range(B)]
    if bar is not None:
        bar.update(sum(f is not None for f in finish) - reported)
    return [out_tok[r][:n_gen[r]] for r in range(B)], [out_lp[r][:n_gen[r]] for r in range(B)], finish


def sample(model, prompts, n=1, max_new_tokens=256, temperature=1.0, top_p=1.0, top_k=0, stop_ids=(),
           generator=None, max_rows=512, kv_cache_gb=None, chunk=256, check_every=8, compile=False, progress=True,
           desc="sampling"):
    """n samples for each prompt (a list of token-id lists). Returns, in the order of `prompts`, one list of n
    Sample per prompt.

    Rows (prompts x n) run in waves of at most max_rows rows, longest prompts first. kv_cache_gb (10^9 bytes, None
    = no bound) bounds the cache: a wave starts as many rows as fit at their current length, and when its cache
    grows past the budget the rows that do not fit are taken out and continued in a later wave (their prompt and
    tokens so far are prefilled again, so the samples are exact). chunk: see generate_wave. progress: a bar on a
    terminal, lines in a log (`progress_bar`).
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("sample() needs a non-empty list of non-empty prompts")
    per_token = kv_bytes_per_token(model)
    budget = None if kv_cache_gb is None else round(kv_cache_gb * 1e9) // per_token  # in cache slots
    longest = _round_up(max(map(len, prompts)) + max_new_tokens, 16)
    if budget is not None and budget < longest:
        raise BudgetError(f"kv_cache_gb={kv_cache_gb:g} holds {budget} tokens of KV cache ({per_token} bytes each); "
                         f"one row of the longest prompt and max_new_tokens={max_new_tokens} needs up to {longest}")
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    tokens, logprobs, finish = [[] for _ in range(len(prompts) * n)], [[] for _ in range(len(prompts) * n)], {}
    queue = sorted(range(len(prompts) * n), key=lambda r: -len(prompts[r // n]))  # row r: sample r % n of r // n
    bar = progress_bar(total=len(prompts) * n, desc=desc, unit="sample", enabled=progress)
    while queue:
        seqs = [prompts[r // n] + tokens[r] for r in queue]
        wave, L = [], 0
        for r, s in zip(queue, seqs):  # as many rows as the cache holds when the wave starts
            L = max(L, len(s))
            start = _cache_length(L, _round_up(L + max_new_tokens, 16), chunk)  # at most generate_wave's first
            if len(wave) == max_rows or (budget is not None and wave and (len(wave) + 1) * start > budget):
                break
            wave.append(r)
        new, lps, ends = generate_wave(model, seqs[:len(wave)], [max_new_tokens - len(tokens[r]) for r in wave],
                                       temperature, top_p, top_k, stop_ids, generator, budget, chunk, check_every,
                                       compile, pad_id, bar)
        for r, t, lp, end in zip(wave, new, lps, ends):
            tokens[r] += t
            logprobs[r] += lp
            if end is not None:
                finish[r] = end
        queue = [r for r in wave if r not in finish] + queue[len(wave):]  # rows taken out go first
    bar.close()
    samples = [Sample(tokens[r], logprobs[r], finish[r]) for r in range(len(prompts) * n)]
    return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]
