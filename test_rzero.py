"""Tests of rzero: each checks a fast path against a slow, obviously right one, or a rule against known cases.

Run with `bash run.sh test` (it sets up the environment first).
"""
import random
import time

import pytest

import vote

# ----------------------------------------------------------------------------- vote.py


@pytest.mark.parametrize("text, expected", [
    ("so \\boxed{42}.", "42"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{x^{2}+1}", "x^{2}+1"),
    ("\\boxed 5$ done", "5"),
    ("\\fbox{7}", "7"),
    ("\\boxed{1} and \\fbox{2}", "2"),
    ("\\boxed{}", ""),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("no box here", None),
    ("\\boxed{12", None),
    ("\\boxed{1} then \\boxed{2", None),
    ("\\boxed", None),
    (None, None),
])
def test_extract_boxed(text, expected):
    assert vote.extract_boxed(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("<question>What is 2+2?</question>\n\\boxed{4}", "What is 2+2?"),
    ("<question> a </question> <question>\n b \n</question>", "b"),
    ("<question>a</question> <question>b", "a"),
    ("<question>   </question>", None),
    ("<question>open but never closed", None),
    ("what is 2+2?", None),
    ("</question> <question>", None),
])
def test_extract_question(text, expected):
    assert vote.extract_question(text) == expected


@pytest.mark.parametrize("raw, expected", [
    ("$5$", "5"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("1\\,000", "1000"),
    ("12\\!", "12"),
    ("5\\text{ cm}", "5"),
    ("\\text{Yes}", "yes"),
    ("90^\\circ", "90"),
    ("90°", "90"),
    ("7.", "7"),
    ("1,234,567", "1234567"),
    ("x = 3", "3"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\tfrac{3}{4}", "\\frac{3}{4}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("0.50", "0.5"),
    ("5.0", "5"),
    ("+3", "3"),
    ("-0.0", "0"),
    ("50\\%", "50"),
    ("x=y=2", "x=y=2"),
    (None, ""),
])
def test_normalize(raw, expected):
    assert vote.normalize(raw) == expected


@pytest.mark.parametrize("a, b", [
    ("42", "42"), ("5", "5.0"), ("0.5", "\\frac{1}{2}"), ("1/2", "\\dfrac{1}{2}"), ("2/4", "0.5"),
    ("-\\frac{1}{2}", "-0.5"), ("\\frac{-1}{2}", "-1/2"), ("50\\%", "50"), ("x = 5", "5"), ("1,000", "1000"),
    ("(1,2)", "(1, 2.0)"), ("[0,\\frac{1}{2})", "[0, 0.5)"), ("\\left[1,2\\right]", "[1,2]"), ("\\text{B}", "b"),
    ("10\\text{ cm}", "10"), ("$\\sqrt{2}$", "\\sqrt{2}"),
])
def test_equivalent_true(a, b):
    assert vote.equivalent(a, b) and vote.equivalent(b, a)


@pytest.mark.parametrize("a, b", [
    ("1/2", "2"), ("(1,2)", "(2,1)"), ("[1,2)", "[1,2]"), ("(1,2)", "(1,2,3)"), ("3", "-3"), ("0.333", "1/3"),
    ("", ""), (None, None), ("5", None), ("\\frac{1}{0}", "\\frac{2}{0}x"), ("x+1", "1+x"), ("12", "1,2"),
])
def test_equivalent_false(a, b):
    assert not vote.equivalent(a, b) and not vote.equivalent(b, a)


def test_majority_vote_known_cases():
    v = vote.majority_vote(["1/2", "0.5", "2", "\\frac{1}{2}", None, ""])
    assert (v.label, v.sizes, v.class_of) == ("1/2", [3, 1], [0, 0, 1, 0, -1, -1])
    assert v.p_hat == pytest.approx(3 / 6)  # unparseable answers stay in the denominator
    tie = vote.majority_vote(["7", "8", "8", "7"])
    assert (tie.label, tie.p_hat) == ("7", 0.5)  # ties go to the class seen first
    none = vote.majority_vote([None, "", "  "])
    assert (none.label, none.p_hat, none.sizes) == (None, 0.0, [])
    assert vote.majority_vote([]).label is None
    assert vote.majority_vote(["3"] * 10).p_hat == 1.0


def test_vote_functions_are_fast_and_total_on_adversarial_input():
    rng = random.Random(0)
    alphabet = "0123456789{}()[],./\\$-+ x=boxedfrac%.text"
    cases = [
        "{" * 100_000, "}" * 100_000, "\\boxed{" * 20_000, "\\boxed{" + "{" * 50_000 + "}" * 49_999,
        "1" * 100_000 + "x", "(" + "1," * 50_000 + "1)", "\\frac{" * 30_000, "<question>" * 20_000,
        "1,000" * 20_000, "9" * 5_000 + ".5", "\\text{" * 30_000, "-" * 100_000 + "1",
    ]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(2000)]
    start = time.perf_counter()
    for s in cases:
        vote.extract_boxed(s)
        vote.extract_question(s)
        vote.normalize(s)
        vote.equivalent(s, s[::-1])
    vote.majority_vote(cases[:12])
    assert time.perf_counter() - start < 20  # a hang or quadratic blow-up would take minutes, not seconds

# ----------------------------------------------------------------------------- sampler.py
import torch  # noqa: E402
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen3Config,  # noqa: E402
                          Qwen3ForCausalLM)

import sampler  # noqa: E402

VOCAB, EOS = 48, 7


def tiny_model(arch="qwen3", seed=0):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, bos_token_id=None, eos_token_id=EOS, pad_token_id=0)
    if arch == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, head_dim=16, **common))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, **common))
    else:
        model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, **common))
    return model.eval()


PROMPTS = [[5, 6, 8, 9, 10, 11, 12], [3, 4], [13, 14, 15, 16], [20]]


def full_logprobs(model, prompt, tokens, temperature):
    """Log-probs of `tokens` after `prompt` from one plain forward pass with no cache: the slow reference."""
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1:-1].float()
    logp = torch.log_softmax(logits / (temperature or 1.0), dim=-1)
    return logp, logp.gather(-1, torch.tensor(tokens)[:, None])[:, 0]


@pytest.mark.parametrize("arch", ["qwen3", "llama", "gpt2"])
def test_sampler_greedy_equals_generate(arch):
    model = tiny_model(arch)
    ours = sampler.sample(model, PROMPTS, n=2, max_new_tokens=10, temperature=0, stop_ids=[EOS], progress=False)
    L = max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in PROMPTS])
    ref = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=10, eos_token_id=EOS,
                         pad_token_id=0)[:, L:].tolist()
    for i, row in enumerate(ref):
        expected = row[:row.index(EOS) + 1] if EOS in row else row
        assert [s.tokens for s in ours[i]] == [expected, expected]
        assert ours[i][0].finish == ("stop" if EOS in row else "length")


@pytest.mark.parametrize("arch", ["qwen3", "gpt2"])
def test_sampler_logprobs_equal_full_forward(arch):
    model = tiny_model(arch, seed=1)
    g = torch.Generator().manual_seed(0)
    out = sampler.sample(model, PROMPTS, n=3, max_new_tokens=12, temperature=0.8, top_p=0.95, top_k=20,
                         stop_ids=[EOS], generator=g, check_every=2, progress=False)
    for prompt, group in zip(PROMPTS, out):
        for s in group:
            _, ref = full_logprobs(model, prompt, s.tokens, 0.8)
            assert torch.allclose(torch.tensor(s.logprobs), ref, atol=1e-4)


def test_sampler_is_reproducible_with_a_generator():
    model = tiny_model()
    run = lambda seed: [[s.tokens for s in g] for g in sampler.sample(  # noqa: E731
        model, PROMPTS, n=4, max_new_tokens=15, temperature=1.0, generator=torch.Generator().manual_seed(seed),
        progress=False)]
    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize("top_k, top_p", [(3, 1.0), (0, 0.5), (5, 0.7)])
def test_sampler_top_k_top_p_stay_in_the_allowed_set(top_k, top_p):
    model = tiny_model(seed=2)
    T = 1.5  # flat distributions make an escape from the allowed set likely if the filter were wrong
    out = sampler.sample(model, PROMPTS, n=8, max_new_tokens=12, temperature=T, top_k=top_k, top_p=top_p,
                         generator=torch.Generator().manual_seed(0), progress=False)
    for prompt, group in zip(PROMPTS, out):
        for s in group:
            logp, _ = full_logprobs(model, prompt, s.tokens, T)
            for step, tok in enumerate(s.tokens):
                probs, order = logp[step].exp().sort(descending=True)
                rank = (order == tok).nonzero().item()
                allowed = top_k if top_k else len(probs)
                nucleus = int((probs.cumsum(0) - probs <= top_p).sum())  # smallest prefix reaching top_p
                assert rank < min(allowed, nucleus)


def test_sampler_rows_stop_at_their_stop_token():
    model = tiny_model(seed=3)
    out = sampler.sample(model, PROMPTS, n=6, max_new_tokens=20, temperature=1.2, stop_ids=[EOS, 9],
                         check_every=1, generator=torch.Generator().manual_seed(5), progress=False)
    finishes = set()
    for s in (s for group in out for s in group):
        stops = [i for i, t in enumerate(s.tokens) if t in (EOS, 9)]
        if s.finish == "stop":
            assert stops == [len(s.tokens) - 1]
        else:
            assert stops == [] and len(s.tokens) == 20
        finishes.add(s.finish)
    assert finishes == {"stop", "length"}  # both kinds of row occurred, so the checks above meant something


def test_sampler_compaction_leaves_every_row_unchanged(monkeypatch):
    # Greedy, so that rows are comparable across batch layouts (sampling noise is drawn per live row).
    model = tiny_model(seed=3)
    prompts = [[i + 1, (3 * i) % 40 + 1, (7 * i) % 40 + 1][: 1 + i % 3] for i in range(24)]
    kw = dict(n=1, max_new_tokens=24, temperature=0, stop_ids=list(range(5, 20)), progress=False)
    plain = sampler.sample(model, prompts, check_every=10**6, **kw)
    batch_sizes = []
    select = sampler.KVCache.select
    monkeypatch.setattr(sampler.KVCache, "select", lambda self, rows, length=None: (
        batch_sizes.append(len(rows)), select(self, rows, length))[1])
    compacting = sampler.sample(model, prompts, check_every=1, **kw)
    assert len(batch_sizes) > 2 and batch_sizes[-1] < 12  # the batch was compacted, more than once
    for (a,), (b,) in zip(compacting, plain):
        assert a.tokens == b.tokens and a.finish == b.finish
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)


def test_sampler_shared_prefill_equals_repeated_prompts():
    model = tiny_model(seed=4)
    prompt = PROMPTS[0]
    greedy_shared = sampler.sample(model, [prompt], n=3, max_new_tokens=10, temperature=0, progress=False)[0]
    greedy_repeat = sampler.sample(model, [prompt] * 3, n=1, max_new_tokens=10, temperature=0, progress=False)
    assert [s.tokens for s in greedy_shared] == [g[0].tokens for g in greedy_repeat]
    kw = dict(max_new_tokens=10, temperature=1.0, progress=False)
    shared = sampler.sample(model, [prompt], n=3, generator=torch.Generator().manual_seed(0), **kw)[0]
    repeat = sampler.sample(model, [prompt] * 3, n=1, generator=torch.Generator().manual_seed(0), **kw)
    for a, (b,) in zip(shared, repeat):
        assert a.tokens == b.tokens  # same rows, same noise: the same draws
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)


def test_sampler_splits_large_requests_and_keeps_prompt_order():
    model = tiny_model()
    prompts = [[i % 40 + 1] * (1 + i % 5) for i in range(11)]
    batched = sampler.sample(model, prompts, n=3, max_new_tokens=6, temperature=0, max_rows=4, progress=False)
    single = [sampler.sample(model, [p], n=1, max_new_tokens=6, temperature=0, progress=False)[0][0]
              for p in prompts]
    assert [g[0].tokens for g in batched] == [s.tokens for s in single]
    with pytest.raises(ValueError):
        sampler.sample(model, [[1], []], progress=False)
