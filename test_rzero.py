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
