"""Benchmarks that print figures (never asserted in tests), in the project's environment:

    bash run.sh bench.py sampler          # tokens/s: sampler.sample vs model.generate, on CPU (and GPU if any)
    bash run.sh bench.py long             # a cache grown in chunks vs allocated up front: peak KV, tokens/s
    bash run.sh bench.py grpo             # peak memory of chunked log-probs + backward vs naive full logits
    bash run.sh bench.py bleu             # BLEU distance matrix + clustering time, vs nltk/sklearn if installed
    bash run.sh bench.py dist             # tokens/s of sampling and of one GRPO step, 1 and 2 processes (CPU)
    bash run.sh bench.py dist --nproc 8   # the same on 1, 2, 4 and 8 GPUs where there are GPUs
    bash run.sh bench.py real             # a real model (bash run.sh fetch ...) on this CPU: sampler, bf16, GRPO
    bash run.sh bench.py autocast         # the same model: a GRPO step under CPU bf16 autocast against float32
    bash run.sh bench.py nucleus          # top-p on a 151,936-token vocabulary: the full sort vs candidates
    bash run.sh bench.py dtypes           # bfloat16 against float32 on this CPU, and as one without native bf16
    bash run.sh bench.py grader           # vote.equivalent: answer pairs right, comparisons/s, the slowest call

Each section but `real`, `autocast` and the second half of `nucleus` builds randomly initialised models from a
real architecture's shapes; no weights are downloaded.
"""
import argparse
import os
import tempfile
import time

import torch

import vote


QWEN3_06B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                 bos_token_id=None, eos_token_id=None, pad_token_id=0)  # Qwen3-0.6B's shapes


QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, head_dim=64, tie_word_embeddings=True,
                  bos_token_id=None, eos_token_id=None, pad_token_id=0)  # Qwen2.5-0.5B's shapes
# How to make this CPU compute as a CPU with fewer instructions would (oneDNN's, MKL's and ATen's own kernels)
ISA = {"native": {}, "AVX512-BF16 without AMX": dict(ONEDNN_MAX_CPU_ISA="AVX512_CORE_BF16"),
       "AVX-512 without bf16": dict(ONEDNN_MAX_CPU_ISA="AVX512_CORE", ATEN_CPU_CAPABILITY="avx512"),
       "AVX2": dict(ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2", ATEN_CPU_CAPABILITY="avx2")}


def _dtypes_once(layers):
    """float32 against bfloat16 on this process's CPU, each figure printed as it is measured: a matmul of
    Qwen2.5-0.5B's MLP shape, the sampler's tokens/s and a forward and backward of GRPO's log-probs (float32 weights,
    with and without bfloat16 autocast), on a random model of Qwen2.5-0.5B's shapes with `layers` layers."""
    import grpo
    import sampler
    from transformers import Qwen2Config, Qwen2ForCausalLM
    say = lambda what, figure: print(f"  {what}: {figure}", flush=True)  # noqa: E731
    x, w = torch.randn(64, 896), torch.randn(4864, 896)
    for dtype in (torch.float32, torch.bfloat16):
        a, b = x.to(dtype), w.to(dtype)
        a @ b.T
        t0 = time.perf_counter()
        for _ in range(20):
            a @ b.T
        say(f"matmul 64x896 @ 896x4864, {dtype}", f"{(time.perf_counter() - t0) / 20 * 1e3:.2f} ms")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**{**QWEN25_05B, "num_hidden_layers": layers})).eval()
    prompts = [list(range(10, 60 + 5 * i)) for i in range(8)]
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        t0 = time.perf_counter()
        got = sampler.sample(model, prompts, n=2, max_new_tokens=16, temperature=1.0, progress=False,
                             generator=torch.Generator().manual_seed(0))
        tokens = sum(len(s.tokens) for g in got for s in g)
        say(f"sampler, 8 prompts x 2, 16 new tokens, {dtype}", f"{tokens / (time.perf_counter() - t0):.1f} tok/s")
    model.float().train()
    ids = torch.randint(10, 1000, (2, 128))
    mask, resp = torch.ones_like(ids), torch.zeros_like(ids)
    resp[:, 32:] = 1
    for autocast in (False, True):
        t0 = time.perf_counter()
        with grpo._autocast(model, grpo.GRPOConfig(cpu_autocast=autocast)):
            logp, _ = grpo.token_logprobs(model, ids, mask, resp)
        (logp * resp).sum().backward()
        model.zero_grad()
        say(f"GRPO log-probs forward + backward, 2 x 128 tokens, {'bf16 autocast' if autocast else 'float32'}",
            f"{time.perf_counter() - t0:.2f} s")


def bench_dtypes(args):
    """What bfloat16 costs or saves on this CPU, natively and restricted to the instructions of a CPU without native
    bfloat16 (each in a process of its own, the restriction set before torch loads, at most --timeout seconds); the
    rule that config.py applies (config.native_bf16) is printed with what torch reports of the CPU."""
    import subprocess
    import sys
    import config
    caps = torch.cpu.get_capabilities()
    print(f"{caps.get('cpu_name')}, {torch.get_num_threads()} threads; amx_bf16 {caps.get('amx_bf16')}, avx512_bf16 "
          f"{caps.get('avx512_bf16')}: config.native_bf16 -> {config.native_bf16(caps)}", flush=True)
    for name, env in ISA.items():
        print(f"{name} {env or ''}", flush=True)
        try:
            subprocess.run([sys.executable, "-c", f"import bench; bench._dtypes_once({args.layers})"],
                           env={**os.environ, **env}, cwd=os.path.dirname(os.path.abspath(__file__)),
                           timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"  (stopped after {args.timeout} s)", flush=True)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _gsm8k_rows(name, count):
    """The first `count` rows of data/gsm8k/NAME.jsonl: {question, answer}."""
    import json
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "gsm8k", f"{name}.jsonl")) as f:
        return [json.loads(line) for line in f][:count]


def _solver_prompts(tok, rows):
    """Each row's question under the Solver's system message, in the model's chat template, as token ids."""
    import evaluation
    return [evaluation.encode(tok, evaluation.render(tok, evaluation.MATH_SYSTEM, r["question"])) for r in rows]


def _qwen3(device, dtype, **shape):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(0)
    return Qwen3ForCausalLM(Qwen3Config(**shape)).to(device=device, dtype=dtype).eval()


def bench_sampler_once(model, prompts, n, max_new, stop_ids, compile=False, reps=1):
    """Tokens/s of sampler.sample and of model.generate(do_sample=True) on the same work."""
    import sampler
    device = model.device
    kw = dict(n=n, max_new_tokens=max_new, temperature=1.0, top_p=1.0, top_k=0, stop_ids=stop_ids,
              max_rows=len(prompts) * n, compile=compile, progress=False)
    sampler.sample(model, prompts[:2], **{**kw, "max_rows": 2 * n})  # warm-up (and compile)
    if compile:
        sampler.sample(model, prompts, generator=torch.Generator(device).manual_seed(0), **kw)
    _sync(device)
    t0 = time.perf_counter()
    for r in range(reps):
        out = sampler.sample(model, prompts, generator=torch.Generator(device).manual_seed(r), **kw)
    _sync(device)
    ours_s = (time.perf_counter() - t0) / reps
    ours_tok = sum(len(s.tokens) for g in out for s in g)

    L = max(map(len, prompts))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts], device=device)
    mask = (torch.arange(L, device=device)[None] >= torch.tensor([L - len(p) for p in prompts], device=device)[:, None])
    gen_kw = dict(attention_mask=mask.long(), do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                  max_new_tokens=max_new, num_return_sequences=n, eos_token_id=list(stop_ids), pad_token_id=0)
    model.generate(ids[:2], **{**gen_kw, "attention_mask": mask[:2].long()})
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        seqs = model.generate(ids, **gen_kw)[:, L:]
    _sync(device)
    ref_s = (time.perf_counter() - t0) / reps
    stop = torch.isin(seqs, torch.tensor(stop_ids, device=device))
    first = torch.where(stop.any(1), stop.float().argmax(1) + 1, seqs.shape[1])  # tokens up to the first stop
    ref_tok = int(first.sum())
    return ours_tok / ours_s, ref_tok / ref_s, ours_tok / len(prompts) / n, ref_tok / len(prompts) / n


def bench_sampler_cpu(reps):
    """The CPU figure of the sampler section; returns sampler / generate."""
    cpu = torch.device("cpu")
    shape = dict(vocab_size=64, hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    model = _qwen3(cpu, torch.float32, **shape)
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 64, (int(torch.randint(8, 40, (1,), generator=g)),), generator=g).tolist()
               for _ in range(64)]
    ours, ref, our_len, ref_len = bench_sampler_once(model, prompts, 10, 64, [1, 2], reps=reps)
    print(f"CPU ({torch.get_num_threads()} threads), Qwen3-shaped {params / 1e6:.2f}M params, fp32, 64 prompts x n=10, "
          f"max_new_tokens 64, stop tokens end rows at varying lengths")
    print(f"  sampler.sample : {ours:9.0f} tok/s  (mean length {our_len:.1f})")
    print(f"  model.generate : {ref:9.0f} tok/s  (mean length {ref_len:.1f})")
    print(f"  speed-up       : {ours / ref:9.2f}x")
    return ours / ref


def bench_sampler(args):
    bench_sampler_cpu(args.reps)
    g = torch.Generator().manual_seed(0)
    if not torch.cuda.is_available():
        print("GPU: none available, GPU figures not measured")
        return
    gpu = torch.device("cuda")
    cfg = QWEN3_06B
    model = _qwen3(gpu, torch.bfloat16, **cfg)
    prompts = [torch.randint(3, 151936, (int(torch.randint(32, 128, (1,), generator=g)),), generator=g).tolist()
               for _ in range(256)]
    for compile in (False, True):
        t0 = time.perf_counter()
        ours, ref, our_len, ref_len = bench_sampler_once(model, prompts, 8, 512, [1, 2], compile=compile)
        print(f"GPU {torch.cuda.get_device_name()}, Qwen3-0.6B shapes, bf16, 256 prompts x n=8, 512 new tokens, "
              f"compile={compile}: sampler {ours:.0f} tok/s, generate {ref:.0f} tok/s, {ours / ref:.2f}x "
              f"({time.perf_counter() - t0:.0f} s)")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_bytes_per_tok = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"] * 2
    mean_ctx = 80 + 256  # mean prompt + mean position during decode
    step_bytes = weight_bytes + 256 * 8 * mean_ctx * kv_bytes_per_tok
    print(f"  bandwidth floor per decode step (weights {weight_bytes / 1e9:.2f} GB + KV of 2048 rows): "
          f"{step_bytes / 3.35e12 * 1e3:.2f} ms at 3.35 TB/s (H100 SXM)")


LONG_SHAPE = dict(vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=64, bos_token_id=None, eos_token_id=None, pad_token_id=0)
COUNT = 8  # token COUNT + k means "k tokens left" in the long section's workload; token 1 is its stop token


def _count_down(module, args, kwargs, out):
    """Forward hook: push each row to the next token of its countdown (COUNT + k -> COUNT + k - 1, then the stop
    token), so a random model writes answers of the lengths the workload drew. The model still does all its work."""
    last = kwargs["input_ids"][:, -1]  # (B,)
    target = torch.where(last > COUNT + 1, last - 1, 1)
    out.logits[:, -1].scatter_add_(-1, target[:, None], torch.full_like(target[:, None], 1e4, dtype=out.logits.dtype))


def _timed_sample(model, prompts, kv_gb, chunk, max_new, rows):
    """tokens/s, generated tokens, waves, and the largest decode cache (rows x positions) of one sample() call."""
    import sampler
    made, waves = [], []
    select, wave = sampler.KVCache.select, sampler.generate_wave
    sampler.KVCache.select = lambda self, r, length=None: (made.append(len(r) * (length or self.length)),
                                                         select(self, r, length))[1]
    sampler.generate_wave = lambda model, seqs, *a: (waves.append(len(seqs)), wave(model, seqs, *a))[1]
    try:
        t0 = time.perf_counter()
        out = sampler.sample(model, prompts, n=1, max_new_tokens=max_new, temperature=1.0, stop_ids=[1],
                             generator=torch.Generator().manual_seed(0), max_rows=rows, kv_cache_gb=kv_gb,
                             chunk=chunk, progress=False)
        secs = time.perf_counter() - t0
    finally:
        sampler.KVCache.select, sampler.generate_wave = select, wave
    tokens = sum(len(s.tokens) for g in out for s in g)
    return tokens / secs, tokens, waves, max(made)


def bench_long(args):
    """Solver-shaped answers: 1024 new tokens at most, log-normal lengths (median 150), a few reaching 1024."""
    import numpy as np
    import sampler
    model = _qwen3(torch.device("cpu"), torch.float32, **LONG_SHAPE)
    model.register_forward_hook(_count_down, with_kwargs=True)
    per_token = sampler.kv_bytes_per_token(model)
    rng = np.random.default_rng(0)
    R, L, max_new, chunk = args.rows, 64, 1024, 256
    lengths = np.clip(np.round(rng.lognormal(np.log(150), 1.0, R)), 1, max_new).astype(int)
    prompts = [rng.integers(COUNT + max_new + 1, LONG_SHAPE["vocab_size"], L - 1).tolist() + [COUNT + int(n)]
               for n in lengths]
    upfront_slots = 64 * sampler._round_up(L + max_new, 16)  # 64 rows allocated for 1024 new tokens
    kv_gb = upfront_slots * per_token / 1e9
    print(f"CPU ({torch.get_num_threads()} threads), Qwen3-shaped {model.num_parameters() / 1e6:.1f}M params, fp32, "
          f"{per_token} B of KV per token; {R} rows of a {L}-token prompt, max_new_tokens {max_new}, lengths "
          f"log-normal: median {np.median(lengths):.0f}, mean {lengths.mean():.0f}, "
          f"{(lengths == max_new).sum()} at {max_new}; KV budget {kv_gb * 1e3:.1f} MB = 64 rows allocated up front")
    _timed_sample(model, prompts[:4], None, chunk, 32, 4)  # warm-up
    first = prompts[:64]
    _, _, _, peak_up = _timed_sample(model, first, kv_gb, None, max_new, 64)
    _, _, _, peak_grow = _timed_sample(model, first, kv_gb, chunk, max_new, 64)
    print(f"  the first 64 rows alone: peak decode cache {peak_up * per_token / 1e6:.1f} MB up front, "
          f"{peak_grow * per_token / 1e6:.1f} MB grown by {chunk}")
    figures = {}
    for name, c in (("up front", None), (f"grown by {chunk}", chunk)):
        tps, tokens, waves, peak = _timed_sample(model, prompts, kv_gb, c, max_new, 4096)
        figures[name] = tps
        print(f"  all {R} rows, {name:12s}: {tps:7.0f} tok/s ({tokens} tokens), {len(waves)} waves, first wave "
              f"{waves[0]} rows, peak cache {peak * per_token / 1e6:.1f} MB")
    ratio = bench_sampler_cpu(1)
    print(f"peak KV ratio: {peak_grow / peak_up:.3f}")
    print(f"throughput ratio at equal KV budget: {figures[f'grown by {chunk}'] / figures['up front']:.2f}")
    print(f"sampler / generate: {ratio:.2f}")


def _logprob_peak(variant, batch, seq, vocab, hidden, chunk, queue):
    """Run in a fresh process: peak RSS growth (bytes) of log-probs + backward, and the log-probs' sum."""
    import resource
    import grpo
    torch.manual_seed(0)
    model = _qwen3(torch.device("cpu"), torch.float32, vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden,
                   num_hidden_layers=1, num_attention_heads=8, num_key_value_heads=8, head_dim=hidden // 8,
                   tie_word_embeddings=True)
    ids = torch.randint(0, vocab, (batch, seq))
    attn = torch.ones_like(ids)
    resp = torch.zeros_like(ids)
    resp[:, seq // 8:] = 1  # a short prompt, then the response
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if variant == "chunked":
        lp, _ = grpo.token_logprobs(model, ids, attn, resp, 1.0, chunk)
    else:
        logits = model(input_ids=ids, attention_mask=attn).logits.float()  # (B, T, V)
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0] * resp[:, 1:]
        del logits
    lp.sum().backward()
    queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, lp.sum().item(),
               time.perf_counter() - t0))


def bench_grpo(args):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    vocab, hidden, seq, chunk = 151936, 1024, 2048, 256
    print(f"CPU, response log-probs + backward, vocab {vocab}, hidden {hidden}, 1-layer Qwen3 trunk, sequences "
          f"of {seq} tokens (response = last 7/8), chunk {chunk}; peak RSS growth over the loaded model:")
    results = {}
    for variant, batch in [("naive", 2), ("chunked", 2), ("chunked", 8)]:
        q = ctx.Queue()
        p = ctx.Process(target=_logprob_peak, args=(variant, batch, seq, vocab, hidden, chunk, q))
        p.start()
        peak, total, secs = q.get()
        p.join()
        results[variant, batch] = (peak, total)
        print(f"  {variant:8s} batch {batch} x {seq}: peak {peak / 2**30:6.2f} GiB, sum of log-probs {total:.6f}, "
              f"{secs:.1f} s")
    ratio = results["chunked", 2][0] / results["naive", 2][0]
    print(f"  chunked / naive at batch 2: {ratio:.3f} (values differ by "
          f"{abs(results['chunked', 2][1] - results['naive', 2][1]):.2e})")
    print(f"  batch 8 x {seq} naive needs about 4x its batch-2 peak ({4 * results['naive', 2][0] / 2**30:.1f} GiB), "
          f"more than this 24 GiB machine holds, so it is not run; chunked batch 8 / (4 x naive batch 2) = "
          f"{results['chunked', 8][0] / (4 * results['naive', 2][0]):.3f}")


def _questions(B, seed=0):
    """B synthetic questions of about 40 words: Zipf-distributed common words, rarer words, and near-duplicates."""
    import numpy as np
    rng = np.random.default_rng(seed)
    common = [f"w{i}" for i in range(300)]
    zipf = 1 / np.arange(1, 301)
    out = []
    for _ in range(B):
        if out and rng.random() < 0.2:  # a near-duplicate of an earlier question, as a collapsing Challenger writes
            words = out[rng.integers(len(out))].split()
            for _ in range(rng.integers(0, 8)):
                words[rng.integers(len(words))] = f"r{rng.integers(5000)}"
        else:
            n = int(rng.integers(30, 51))
            words = [common[i] if rng.random() < 0.7 else f"r{rng.integers(5000)}"
                     for i in rng.choice(300, n, p=zipf / zipf.sum())]
        out.append(" ".join(words))
    return out


def bench_bleu(args):
    import numpy as np
    import bleu
    try:
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from sklearn.cluster import AgglomerativeClustering
    except ImportError:
        sentence_bleu = None
        print("nltk / scikit-learn not importable: the official way is not timed "
              "(pip install --target /tmp/benchdeps nltk scikit-learn; PYTHONPATH=/tmp/benchdeps)")
    for B in (512, 2048):
        qs = _questions(B)
        t0 = time.perf_counter()
        d = bleu.bleu_distance_matrix(qs)
        t1 = time.perf_counter()
        ours = bleu.average_linkage_clusters(d, 0.5)
        ours_s = time.perf_counter() - t0
        print(f"B={B} ({np.mean([len(q.split()) for q in qs]):.0f} words/question): distance matrix {t1 - t0:.2f} s, "
              f"clustering {ours_s - (t1 - t0):.2f} s, total {ours_s:.2f} s, {ours.max() + 1} clusters")
        if sentence_bleu is None:
            continue
        smooth, toks = SmoothingFunction().method1, [q.split() for q in qs]
        t0 = time.perf_counter()
        ref = np.zeros((B, B))
        for i in range(B):
            for j in range(i + 1, B):
                ref[i, j] = 1 - sentence_bleu([toks[j]], toks[i], smoothing_function=smooth)
        ref = ref + ref.T
        t1 = time.perf_counter()
        theirs = AgglomerativeClustering(n_clusters=None, distance_threshold=0.5, metric="precomputed",
                                         linkage="average").fit(ref).labels_
        theirs_s = time.perf_counter() - t0
        print(f"  official (nltk sentence_bleu over pairs, then sklearn): distance {t1 - t0:.1f} s, clustering "
              f"{theirs_s - (t1 - t0):.2f} s, total {theirs_s:.1f} s; max |difference| {np.abs(ref - d).max():.1e}; "
              f"identical clusters: {_canon(theirs) == _canon(ours)}; speed-up {theirs_s / ours_s:.0f}x")


CPU_SHAPE = dict(vocab_size=8192, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64, bos_token_id=None, eos_token_id=None, pad_token_id=0)


def _dist_rank(rank, world, store, cuda, queue):
    """One process of the dist bench: the loop's own sampling (dist.sample) and grpo_step, on a sharded model
    (a plain one for 1 CPU process, as `bash run.sh` runs), with every rank's share of a fixed workload."""
    import dist
    import grpo
    if cuda:
        torch.cuda.set_device(rank)
    if world > 1 or cuda:
        torch.distributed.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{store}", rank=rank,
                                             world_size=world)
    device = torch.device("cuda" if cuda else "cpu")
    P, n, new, R, T = (128, 8, 512, 256, 512) if cuda else (32, 4, 64, 64, 64)  # prompts, n, new, rollouts, length
    model = _qwen3(torch.device("cpu"), torch.float32, **(QWEN3_06B if cuda else CPU_SHAPE))
    compute = torch.bfloat16 if cuda else torch.float32
    model = dist.shard(model, compute) if dist.active() else model.to(device)
    cfg = grpo.GRPOConfig(lr=1e-6, kl_coef=0.0, mini_batch=R, micro_batch=8 if cuda else 16)
    opt = grpo.make_optimizer(model, cfg)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prompts = [torch.randint(3, vocab, (64,), generator=g).tolist() for _ in range(P)]
    ids = torch.randint(3, vocab, (R, 2 * T), generator=g, device="cpu").to(device)
    resp = torch.zeros_like(ids)
    resp[:, T:] = 1
    batch = grpo.Rollouts(ids, torch.ones_like(ids), resp, torch.randn(R, generator=g).to(device))

    def timed(fn):
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()
        return time.perf_counter() - t0

    kw = dict(max_new_tokens=new, temperature=1.0, stop_ids=[], max_rows=512 if cuda else P * n,  # 512: 34 GB of KV
              compile=cuda, progress=False)
    dist.sample(model, prompts[:world], n=2, **{**kw, "max_new_tokens": 8})  # warm-up (and compile)
    grpo.grpo_step(model, opt, batch.rows(torch.arange(min(R, 8 * world), device=device)), cfg)
    gen = torch.Generator(device).manual_seed(rank)
    sample_s = timed(lambda: dist.sample(model, prompts, n=n, generator=gen, **kw))
    step_s = timed(lambda: grpo.grpo_step(model, opt, batch, cfg))
    if rank == 0:
        queue.put((P * n * new / sample_s, R * T / step_s, model.num_parameters()))
    dist.close()


def bench_dist(args):
    cuda = torch.cuda.is_available()
    worlds = [w for w in (1, 2, 4, 8) if w <= args.nproc] if cuda else [1, 2]
    shape = "Qwen3-0.6B shapes, fp32 master weights, bf16 compute" if cuda else "a Qwen3-shaped model, fp32"
    work = ("128 prompts x n=8, 512 new tokens; GRPO step: 256 rollouts of 512 + 512 tokens" if cuda else
            "32 prompts x n=4, 64 new tokens; GRPO step: 64 rollouts of 64 + 64 tokens")
    print(f"{'GPU ' + torch.cuda.get_device_name() if cuda else 'CPU, ' + str(os.cpu_count()) + ' cores'}, {shape}; "
          f"sampling: {work}")
    if not cuda:
        print("GPU: none available, GPU figures not measured")
    ctx = torch.multiprocessing.get_context("spawn")
    for world in worlds:
        store, queue = tempfile.mktemp(), ctx.Queue()
        threads = str(max(1, (os.cpu_count() or 1) // world))
        os.environ["OMP_NUM_THREADS"] = threads  # what run.sh gives each process
        procs = [ctx.Process(target=_dist_rank, args=(r, world, store, cuda, queue)) for r in range(world)]
        for p in procs:
            p.start()
        sample_tps, step_tps, params = queue.get()
        for p in procs:
            p.join()
        print(f"  {world} process{'es' if world > 1 else ''} ({threads} thread{'s' if threads != '1' else ''}"
              f"{' each' if world > 1 else ''}): "
              f"sampling {sample_tps:8.0f} tok/s, GRPO step {step_tps:8.0f} tok/s ({params / 1e6:.1f}M params)")


def _real_grpo_step(model_dir, prompts, stop, autocast, queue):
    """Run in a fresh process: one GRPO step of the real model as the loop takes it on a CPU (float32 master
    weights, a float32 KL reference, rollouts sampled on a bfloat16 copy), its seconds and the peak RSS."""
    import resource
    import dist
    import grpo
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    groups = dist.sample(model, prompts, n=4, max_new_tokens=256, temperature=1.0, top_p=0.99,
                         stop_ids=stop, dtype=torch.bfloat16, progress=False,
                         generator=torch.Generator().manual_seed(0))
    responses = [s.tokens for g in groups for s in g]
    rewards = torch.tensor([[float(len(s.tokens) % 3 == 0) for s in g] for g in groups])  # a stand-in reward
    batch = grpo.make_rollouts([p for p in prompts for _ in range(4)], responses, grpo.group_advantages(rewards)
                                .flatten(), 0, "cpu")
    cfg = grpo.GRPOConfig(lr=1e-6, kl_coef=0.01, mini_batch=len(responses), micro_batch=4, cpu_autocast=autocast)
    opt = grpo.make_optimizer(model, cfg)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    stats = grpo.grpo_step(model, opt, batch, cfg, ref)
    queue.put((time.perf_counter() - t0, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               int(batch.response_mask.sum()), stats["updates"]))


def bench_real(args):
    """A real model on this CPU (default: the folder `bash run.sh fetch qwen2.5-coder-0.5b-instruct` makes):
    sampler.sample against model.generate at equal work in float32 and bfloat16, a bfloat16 sampling copy against
    float32 (tokens/s, and how far greedy outputs agree), and one GRPO step's seconds and peak memory."""
    import multiprocessing as mp
    import evaluation
    import sampler
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        raise SystemExit(f"bench.py: {args.model} holds no model.safetensors: bash run.sh fetch "
                         "qwen2.5-coder-0.5b-instruct")
    tok = AutoTokenizer.from_pretrained(args.model)
    prompts = _solver_prompts(tok, _gsm8k_rows("gsm8k-probe", 32))
    print(f"CPU ({torch.get_num_threads()} threads), {args.model}, GSM8K questions with the Solver's system message "
          "in the chat template")
    greedy = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).eval()
        stop = evaluation.stop_ids(model, tok)
        ours, ref, our_len, ref_len = bench_sampler_once(model, prompts[:16], 2, 128, stop)
        print(f"  {str(dtype)[6:]:8s} 16 prompts x n=2, temperature 1, 128 new tokens: sampler {ours:6.1f} tok/s "
              f"(mean {our_len:.0f} tokens), generate {ref:6.1f} tok/s (mean {ref_len:.0f}), {ours / ref:.2f}x")
        t0 = time.perf_counter()
        out = sampler.sample(model, prompts, n=1, max_new_tokens=256, temperature=0, stop_ids=stop, progress=False)
        seconds = time.perf_counter() - t0
        greedy[dtype] = [s.tokens for (s,) in out]
        print(f"  {str(dtype)[6:]:8s} greedy, 32 prompts, 256 new tokens: {sum(map(len, greedy[dtype])) / seconds:6.1f}"
              f" tok/s ({seconds:.0f} s)")
        del model
    a, b = greedy[torch.float32], greedy[torch.bfloat16]
    first = [next((i for i, (x, y) in enumerate(zip(s, t)) if x != y), None) for s, t in zip(a, b)]
    answers = [vote.extract_boxed(tok.decode(s, skip_special_tokens=True)) for s in a + b]
    same = sum(vote.equivalent(x, y) or x is y is None for x, y in zip(answers[:32], answers[32:]))
    print(f"  greedy bfloat16 against float32: {sum(f is None for f in first)}/32 rows token for token the same; "
          f"the others part after {sorted(f for f in first if f is not None)} tokens; the same \\boxed{{}} answer "
          f"in {same}/32")
    ctx = mp.get_context("spawn")
    for autocast in (False, True):
        q = ctx.Queue()
        p = ctx.Process(target=_real_grpo_step, args=(args.model, prompts[:4], stop, autocast, q))
        p.start()
        secs, before, after, tokens, updates = q.get()
        p.join()
        print(f"  one GRPO step, 4 prompts x 4 rollouts (up to 256 new tokens: {tokens} response tokens), "
              f"{updates} update, float32 master weights and KL reference"
              f"{', bfloat16 autocast (--cpu-autocast)' if autocast else ''}: {secs:.0f} s; peak RSS "
              f"{before / 2**30:.1f} GiB before the step, {after / 2**30:.1f} GiB after")


class _Recorder:
    """Stands in for the optimizer of one grpo_step: keeps the gradient it was given, updates nothing."""

    def __init__(self, model):
        self.params, self.grads = list(model.parameters()), None

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        self.grads = [p.grad.detach().clone() for p in self.params]


def _cosine(a, b):
    dot = sum((x.double() * y.double()).sum() for x, y in zip(a, b))
    norm = lambda v: sum((x.double() ** 2).sum() for x in v).sqrt()  # noqa: E731
    return (dot / (norm(a) * norm(b))).item()  # a gradient clipped to a norm keeps its direction


def bench_autocast(args):
    """CPU bfloat16 autocast around GRPO's forward and backward against float32, on the same rollouts of the real
    model from the same float32 weights: the log-prob gap, the loss and clip share (old log-probs are float32's, so
    float32's ratio is exactly 1 and autocast's differs by its rounding alone), the cosine of the two gradients
    and of the two first AdamW updates (lr x g / (|g| + eps), the first step's update from zero states), seconds."""
    import dist
    import evaluation
    import grpo
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    rows = _gsm8k_rows("gsm8k-train", 4)
    prompts = _solver_prompts(tok, rows)
    groups = dist.sample(model, prompts, n=4, max_new_tokens=256, temperature=1.0, top_p=0.99,
                         stop_ids=evaluation.stop_ids(model, tok), dtype=torch.bfloat16, progress=False,
                         generator=torch.Generator().manual_seed(0))
    rewards = torch.tensor([[float(vote.equivalent(vote.extract_boxed(tok.decode(s.tokens, skip_special_tokens=True)),
                                                   r["answer"])) for s in g] for g, r in zip(groups, rows)])
    if (rewards == rewards[:, :1]).all():  # no group differs: a stand-in reward, so that the gradient is not 0
        rewards = torch.tensor([[float(len(s.tokens) % 3 == 0) for s in g] for g in groups])
    batch = grpo.make_rollouts([p for p in prompts for _ in range(4)], [s.tokens for g in groups for s in g],
                                grpo.group_advantages(rewards).flatten(), 0, "cpu")
    mask = batch.response_mask.bool()
    print(f"CPU ({torch.get_num_threads()} threads), {args.model}: 4 GSM8K train questions x 4 rollouts, "
          f"{int(mask.sum())} response tokens, rewards {rewards.tolist()}")
    logp, grads, norms = {}, {}, {}
    for autocast in (False, True):
        cfg = grpo.GRPOConfig(lr=1e-6, kl_coef=0.0, mini_batch=len(batch.advantages), micro_batch=4,
                              cpu_autocast=autocast)
        logp[autocast] = grpo._logprobs_no_grad(model, batch, cfg)
    gap = (logp[True] - logp[False])[mask]
    print(f"  token log-probs, autocast - float32: mean |gap| {gap.abs().mean():.4f}, max {gap.abs().max():.3f}, "
          f"mean {gap.mean():+.4f}; per-sequence sum: mean |gap| "
          f"{((logp[True] - logp[False]) * mask).sum(1).abs().mean():.3f} nats")
    batch.old_logprobs = logp[False]
    for autocast in (False, True):
        cfg = grpo.GRPOConfig(lr=1e-6, kl_coef=0.0, mini_batch=len(batch.advantages), micro_batch=4,
                              cpu_autocast=autocast)
        rec = _Recorder(model)
        t0 = time.perf_counter()
        stats = grpo.grpo_step(model, rec, batch, cfg)
        grads[autocast], norms[autocast] = rec.grads, stats["grad_norm"]
        print(f"  {'bf16 autocast' if autocast else 'float32':13s}: loss {stats['loss']:+.6f}, clip share "
              f"{stats['clip_frac']:.4f}, mean ratio {stats['ratio']:.5f}, "
              f"{time.perf_counter() - t0:.0f} s")
    adam = {k: [g / (g.abs() + 1e-8) for g in v] for k, v in grads.items()}  # first AdamW step, up to -lr
    print(f"  cosine of the gradients {_cosine(grads[False], grads[True]):.4f}; of the first AdamW updates "
          f"{_cosine(adam[False], adam[True]):.4f}; gradient norms {norms[False]:.4f} (float32), "
          f"{norms[True]:.4f} (autocast)")


def _canon(labels):
    first = {}
    return [first.setdefault(int(x), len(first)) for x in labels]


def bench_nucleus(args):
    """Top-p (the rollouts' 0.99) on Qwen's 151,936-token vocabulary, where sorting it costs a third of a CPU decode
    step at 20 rows: one sampler.sample_tokens call with the full sort (nucleus_by_sort) against nucleus(), then
    a real model's Solver rollouts sampled both ways, with the same seed (tokens/s, and whether every token agrees)."""
    import evaluation
    import sampler
    g = torch.Generator().manual_seed(0)
    by_sort, fast = sampler.nucleus_by_sort, sampler.nucleus
    print(f"CPU ({torch.get_num_threads()} threads)")
    for rows in (20, 80):
        logits = torch.randn(rows, QWEN3_06B["vocab_size"], generator=g) * 8  # a nucleus of a few dozen tokens
        for name, fn in (("full sort", by_sort), ("candidates", fast)):
            sampler.nucleus = fn
            sampler.sample_tokens(logits, 1.0, 0, 0.99, g)
            t0 = time.perf_counter()
            for _ in range(args.reps * 10):
                sampler.sample_tokens(logits, 1.0, 0, 0.99, g)
            ms = (time.perf_counter() - t0) / (args.reps * 10) * 1e3
            print(f"  sample_tokens, {rows} rows, top-p 0.99, {name:10s}: {ms:6.1f} ms a call")
    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        print(f"  ({args.model} holds no model: bash run.sh fetch qwen2.5-coder-0.5b-instruct for the rollouts)")
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16).eval()
    prompts = _solver_prompts(tok, _gsm8k_rows("gsm8k-train", 4))
    out = {}
    for name, fn in (("full sort", by_sort), ("candidates", fast)):
        sampler.nucleus = fn
        t0 = time.perf_counter()
        groups = sampler.sample(model, prompts, n=5, max_new_tokens=args.max_new, temperature=1.0, top_p=0.99,
                                stop_ids=evaluation.stop_ids(model, tok), generator=torch.Generator().manual_seed(0),
                                progress=False)
        seconds = time.perf_counter() - t0
        out[name] = [s.tokens for grp in groups for s in grp]
        print(f"  bfloat16 rollouts, 4 GSM8K prompts x 5, top-p 0.99, up to {args.max_new} new tokens, {name:10s}: "
              f"{sum(map(len, out[name])) / seconds:6.1f} tok/s ({seconds:.0f} s)")
    sampler.nucleus = fast
    same = sum(a == b for a, b in zip(out["full sort"], out["candidates"]))
    print(f"  the same tokens in {same} of {len(out['candidates'])} rollouts")


def _adversarial_expression(rng, depth=0):
    """A random expression tree of the kinds that make sympy work long: sums of many letters, products, powers with
    negative, fractional, nested or symbolic exponents, roots, fractions, logarithms, binomials and floors."""
    leaves = [lambda: str(rng.randint(0, 999)), lambda: rng.choice("abcdefghjkmnpqrstuvwxyz"), lambda: "\\pi",
              lambda: "i", lambda: rng.choice(["\\omega", "\\theta", "\\alpha"]),
              lambda: str(rng.randint(1, 9)) * rng.randint(20, 60),
              lambda: f"{rng.randint(1, 99)}.{rng.randint(1, 99)}",
              lambda: f"{rng.randint(1, 9)}e{rng.randint(1, 999)}"]
    if depth >= 4 or rng.random() < 0.25:
        return rng.choice(leaves)()
    sub = lambda: _adversarial_expression(rng, depth + 1)  # noqa: E731
    exponent = rng.choice([lambda: str(rng.randint(2, 40)), lambda: f"{{-{rng.randint(2, 40)}}}",
                           lambda: f"{{\\frac{{{rng.randint(1, 400)}}}{{{rng.randint(2, 12)}}}}}",
                           lambda: f"{{{sub()}}}",
                           lambda: f"{{{rng.randint(2, 9)}^{{{rng.randint(2, 9)}}}}}"])
    return rng.choice([
        lambda: "+".join(sub() for _ in range(rng.randint(2, 10))),
        lambda: "(" + "+".join(sub() for _ in range(rng.randint(2, 10))) + ")",
        lambda: "".join(f"({sub()})" for _ in range(rng.randint(2, 8))),
        lambda: f"({sub()})^{exponent()}", lambda: f"{sub()}^{exponent()}",
        lambda: f"\\sqrt{{{sub()}}}", lambda: f"\\sqrt[{rng.randint(2, 14)}]{{{sub()}}}",
        lambda: f"\\frac{{{sub()}}}{{{sub()}}}", lambda: f"\\ln({sub()})", lambda: f"\\log_{{{sub()}}} {sub()}",
        lambda: f"\\binom{{{sub()}}}{{{sub()}}}", lambda: f"\\lfloor {sub()} \\rfloor",
        lambda: f"{sub()} \\cdot {sub()}",
    ])()


def _adversarial_inputs(count, seed=0):
    """count random expression trees, then long runs of whitespace and of every separator the patterns match, deep
    brackets and huge literals."""
    import random
    rng = random.Random(seed)
    inputs = []
    while len(inputs) < count:  # most under vote's 200 characters, past which an answer is text at once
        s = _adversarial_expression(rng)
        if len(s) <= 200 or rng.random() < 0.05:
            inputs.append(s)
    runs = [" ", "\t", ",", ", ", " and ", " or ", "\\text{ and }", "\\cup", "\\pm", "=", "x=", "\\\\", "&", "_", "^",
            "{,}", "\\,", "\\!", "1,000", "(", ")", "\\{", "\\frac{", "\\sqrt", "\\text{", "\\overline{", "e", "1e",
            "(1,1),", "\\begin{pmatrix}", "\\left(", "x+", "a"]
    for r in runs:
        for n in (10_000, 100_000):
            inputs += ["1" + r * (n // len(r)) + "2", r * (n // len(r)), "x" + r * (n // len(r))]
    inputs += ["(" * 5000 + "1" + ")" * 5000, "9" * 100_000, "(" + "1," * 5000 + "1)", "\\{" + "x+1," * 500 + "2\\}",
               "2^{2^{100}}", "9^{9^{9}}", "10^{100000}", "1e99999", "(x+y+z+w+a+b+c+d)^{12}",
               ",".join(f"(x+{k})^{{20}}" for k in range(40)), "+".join(f"(x+{k})^{{20}}" for k in range(8))]
    return inputs


def bench_grader(args):
    """vote.equivalent on the hand-checked answer pairs of data/grader/ (share right; mathruler's too and the
    agreement, where it imports: pip install --target DIR mathruler pylatexenc, PYTHONPATH=DIR), comparisons per
    second (every cache cleared first, then warm), and the slowest call on --adversarial random expression trees
    and long runs of whitespace and separators, each compared cold with itself reversed and with itself + 1.
    --vote PATH measures another copy of vote.py (an older commit's: git show COMMIT:vote.py > PATH)."""
    import importlib.util
    import json
    from collections import Counter
    spec = importlib.util.spec_from_file_location("vote_under_test", args.vote or vote.__file__)
    grader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grader)
    clear = getattr(getattr(grader, "_key", None), "cache_clear", lambda: None)
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "grader")
    files = {name: [json.loads(line) for line in open(os.path.join(folder, name))]
             for name in sorted(os.listdir(folder))}
    for name, pairs in files.items():  # pairs-heldout.jsonl was written after #47's grader, pairs-audit.jsonl for #50
        ours = [grader.equivalent(p["given"], p["reference"]) for p in pairs]
        print(f"{name}: {args.vote or 'vote.py'} {sum(o == p['equal'] for o, p in zip(ours, pairs))} of {len(pairs)} "
              f"right; {[(p['given'], p['reference']) for o, p in zip(ours, pairs) if o != p['equal']]} wrong")
        try:
            from mathruler.grader import grade_answer
            theirs = [grade_answer(p["given"], p["reference"]) for p in pairs]
            print(f"  mathruler: {sum(t == p['equal'] for t, p in zip(theirs, pairs))} of {len(pairs)} right; agrees "
                  f"with this grader on {sum(t == o for t, o in zip(theirs, ours))}")
        except ImportError:
            print("  mathruler: not importable (see the docstring)")
    pairs = files["pairs.jsonl"]
    for warm in (False, True):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 3:
            if not warm:
                clear()
            for p in pairs:
                grader.equivalent(p["given"], p["reference"])
            n += len(pairs)
        print(f"  {'warm cache' if warm else 'cold'}: {n / (time.perf_counter() - t0):,.0f} comparisons/s")
    inputs, times = _adversarial_inputs(args.adversarial), []
    t_all = time.perf_counter()
    for s in inputs:
        for other in (s[::-1], s + "+1"):
            clear()
            t0 = time.perf_counter()
            grader.equivalent(s, other)
            times.append((time.perf_counter() - t0, s))
    times.sort(key=lambda ts: ts[0], reverse=True)
    kinds = Counter((grader.answer_key(s) or ["empty"])[0] for s in inputs)  # text: refused by a bound, or words
    print(f"  {len(inputs):,} adversarial inputs ({dict(kinds)}), {len(times):,} calls, cold, in "
          f"{time.perf_counter() - t_all:.0f} s; median {1e3 * times[len(times) // 2][0]:.1f} ms; slowest:")
    for seconds, s in times[:5]:
        print(f"    {1e3 * seconds:7.1f} ms  {s[:100]!r}{f' ... ({len(s):,} characters)' if len(s) > 100 else ''}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sampler", "long", "grpo", "bleu", "dist", "real", "autocast", "nucleus",
                                         "dtypes", "grader"])
    parser.add_argument("--reps", type=int, default=1, help="timed repetitions")
    parser.add_argument("--nproc", type=int, default=8, help="dist on GPUs: the most processes (one per GPU)")
    parser.add_argument("--rows", type=int, default=512, help="long: rows in the workload")
    parser.add_argument("--max-new", type=int, default=128, help="nucleus: new tokens of each rollout")
    parser.add_argument("--layers", type=int, default=2, help="dtypes: layers of the Qwen2.5-0.5B-shaped model")
    parser.add_argument("--timeout", type=int, default=300, help="dtypes: seconds for each instruction set")
    parser.add_argument("--vote", help="grader: the vote.py to measure (default this one)")
    parser.add_argument("--adversarial", type=int, default=10_000, help="grader: random expression trees to time")
    parser.add_argument("--model", default=os.path.join("cache", "qwen2.5-coder-0.5b-instruct"),
                        help="real, autocast, nucleus: a model folder")
    args = parser.parse_args()
    run = {"sampler": bench_sampler, "long": bench_long, "grpo": bench_grpo, "bleu": bench_bleu, "dist": bench_dist,
           "real": bench_real, "autocast": bench_autocast, "nucleus": bench_nucleus, "dtypes": bench_dtypes,
           "grader": bench_grader}
    run[args.what](args)


if __name__ == "__main__":
    main()
