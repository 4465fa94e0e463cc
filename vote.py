"""Answers and pseudo-labels: extraction, equivalence and the majority vote of R-Zero.

Both R-Zero rewards go through this file (paper Sec. 3; PAPER.md Sec. 2.3-2.4, 3.2, 4):
- the Challenger's uncertainty reward needs p_hat, the share of the Solver's m answers that agree with the
  majority answer, which is also the pseudo-label of the question;
- the Solver's reward is 1 when its \\boxed{} answer is `equivalent` to that pseudo-label.
Evaluation grades with the same `equivalent`, and reads multiple-choice answers with `extract_choice`.

The official code grades with mathruler (PRM800K's grader: string normalisation, then sympy, with no time bound of
its own: the official reward server and labelling script wrap each call in a 10-second timeout, the Solver's
training reward, math.py, in none). `equivalent` accepts what that grader's normalisation does: `\\sqrt3` =
`\\sqrt{3}`, `\\$` signs, `\\text{}` around a choice or after a value (a unit), mixed numbers (`3\\frac{3}{4}` =
3.75), `\\dfrac` and `\\tfrac`, degrees, percent signs, thousands separators and an `x = ` prefix. Here every
function runs in time linear in its input, with no sympy, no eval and no regex that can backtrack, so nothing ever
needs a timeout. Departures from that grader, each on purpose:
- Values are compared exactly as rationals, so 2/4, 1/2 and 0.5 are one answer. PRM800K refuses unreduced
  fractions and non-integer forms of an integer answer; a vote needs a symmetric relation, so we do not.
- No symbolic algebra: x+1 and 1+x are different answers.
- The official vote also merges any two answers that both contain "no " (a hack for yes/no questions); we don't.
- The official extraction (mathruler's extract_boxed_content) returns the string "None" for a response without a
  box, which then votes like an answer; here such an answer is None and never wins (rzero's --official-votes gives
  the official reading).
- A trailing period is dropped ("7." = 7).
- `extract_boxed` also reads `\\fbox{}` and a bare `\\boxed 5`, as MATH's last_boxed_only_string does.

Standard library only, so the file can be copied into another project alone.
"""
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

BOX_COMMANDS = ("\\boxed", "\\fbox")
BRACKETS = {"(": ")", "[": "]", "{": "}"}


def _match_brace(text, open_idx):
    """Index of the brace closing the one at text[open_idx], or -1 when it is never closed."""
    depth = 0
    for i in range(open_idx, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def extract_boxed(text):
    """Content of the last \\boxed{...} (or \\fbox{...}), braces matched; None when absent or unbalanced.

    `\\boxed 5` (a space, then one token) is read as in MATH's last_boxed_only_string. An empty box gives "".
    """
    if not isinstance(text, str):
        return None
    start, cmd = max((text.rfind(c), c) for c in BOX_COMMANDS)
    if start < 0:
        return None
    i = start + len(cmd)
    if text.startswith(" ", i):
        token = text[i:].lstrip().split(maxsplit=1)
        return token[0].split("$")[0] if token else None
    if not text.startswith("{", i):
        return None
    end = _match_brace(text, i)
    return text[i + 1:end].strip() if end >= 0 else None


_CHOICE = re.compile(r"\(?([A-Z])\)?(?![A-Za-z0-9])")  # a letter, maybe in parentheses, then no more of a word


def extract_choice(text, n_options=26):
    """The option letter that leads the last \\boxed{}: "C", "(C)", "\\text{(C)}", "C: 12 cm", "C. red"; None
    when the box is missing, holds no leading letter, or names a letter past the n_options options.

    Stricter than the official grader (the first of A-J found anywhere in the box, else a random letter): a box
    that holds prose does not count as choosing the first capital letter it happens to contain."""
    box = extract_boxed(text)
    if box is None:
        return None
    box = _strip_text(box.replace("$", "").strip()).strip()
    m = _CHOICE.match(box)
    return m.group(1) if m and ord(m.group(1)) - ord("A") < n_options else None


def extract_question(text):
    """Content of the last complete <question>...</question> block, stripped; None when missing or empty."""
    if not isinstance(text, str):
        return None
    end = text.rfind("</question>")
    start = text.rfind("<question>", 0, end) if end >= 0 else -1
    if start < 0:
        return None
    question = text[start + len("<question>"):end].strip()
    return question or None


_DROP = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\$", "$", "^{\\circ}", "^\\circ", "°", "\\%",
         "%", "{,}")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_VARIABLE = re.compile(r"[a-z]\s*=")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")  # unambiguous: no backtracking
_FRAC12 = re.compile(r"\\frac(\d)(\d)")
_SQRT1 = re.compile(r"\\sqrt(\w)")  # \sqrt3 -> \sqrt{3}, as MATH's _fix_sqrt
_LETTER = re.compile(r"\(([a-z])\)")  # (b) -> b: a choice written in parentheses


def _strip_text(s):
    """`\\text{5}` -> 5; `5\\text{ cm}` -> 5: a \\text{} after the value is a unit (MATH's _remove_right_units)."""
    for cmd in ("\\text{", "\\mbox{", "\\textbf{"):
        i = s.find(cmd)
        if i > 0:
            s = s[:i]
        elif i == 0:
            end = _match_brace(s, len(cmd) - 1)
            if end < 0:
                return s
            s = s[len(cmd):end] + s[end + 1:]
    return s


def _canonical_number(s):
    """'0.50' -> '0.5', '5.0' -> '5', '+3' -> '3', '-0' -> '0'; anything else unchanged."""
    if len(s) > 400 or not _DECIMAL.fullmatch(s):
        return s
    d = Decimal(s)
    return "0" if d == 0 else format(d.normalize(), "f")


def normalize(answer):
    """A canonical string for an answer: what is left when the notation that does not change the value is gone."""
    if answer is None:
        return ""
    s = str(answer).strip()
    for token in _DROP:
        s = s.replace(token, "")
    s = _strip_text(s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _FRAC12.sub(r"\\frac{\1}{\2}", s)
    s = "".join(s.split()).lower()
    s = _SQRT1.sub(r"\\sqrt{\1}", s)
    s = s.rstrip(".")
    m = _VARIABLE.match(s)
    if m and "=" not in s[m.end():]:
        s = s[m.end():]
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if _LETTER.fullmatch(s):
        s = s[1]
    return _canonical_number(s)


def _fraction_value(s):
    """Exact value of a normalised number: int, decimal, a/b or \\frac{a}{b}, with an optional sign; else None."""
    sign = 1
    if s.startswith("-"):
        sign, s = -1, s[1:]
    if len(s) > 400:  # Fraction() on a huge literal is slow; no real answer is that long
        return None
    whole = s.find("\\frac{")
    if whole > 0 and s[:whole].isdigit():  # a mixed number: 3\frac{3}{4} = 3 + 3/4, as the MATH grader reads it
        part = _fraction_value(s[whole:])
        return sign * (int(s[:whole]) + part) if part is not None and part >= 0 else None
    if s.startswith("\\frac{") and s.endswith("}"):
        mid = _match_brace(s, len("\\frac"))
        if mid < 0 or not s.startswith("{", mid + 1) or _match_brace(s, mid + 1) != len(s) - 1:
            return None
        num, den = s[len("\\frac{"):mid], s[mid + 2:-1]
    elif s.count("/") == 1:
        num, den = s.split("/")
    else:
        num, den = s, "1"
    if not (_DECIMAL.fullmatch(num) and _DECIMAL.fullmatch(den)):
        return None
    den = Fraction(den)
    return sign * Fraction(num) / den if den != 0 else None


def _split_top_level(s):
    """Split on commas that are not inside brackets: '(1,(2,3))' inner text -> ['1', '(2,3)']."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _as_tuple(s):
    """('(', ['1', '2'], ']') for a bracketed list of two or more elements, else None. Intervals keep their ends."""
    if len(s) < 5 or s[0] not in "([" or s[-1] not in ")]":
        return None
    parts = _split_top_level(s[1:-1])
    return (s[0], parts, s[-1]) if len(parts) > 1 else None


def _scalar_equal(a, b):
    if a == b:
        return True
    va, vb = _fraction_value(a), _fraction_value(b)
    return va is not None and va == vb


def equivalent(a, b):
    """True when two answers mean the same: equal after `normalize`, equal as exact numbers, or tuples/intervals
    whose brackets match and whose elements are equal one by one. Unparseable or empty answers equal nothing."""
    na, nb = normalize(a), normalize(b)
    if not na or not nb:
        return False
    if _scalar_equal(na, nb):
        return True
    ta, tb = _as_tuple(na), _as_tuple(nb)
    if ta is None or tb is None or ta[0] != tb[0] or ta[2] != tb[2] or len(ta[1]) != len(tb[1]):
        return False
    return all(_scalar_equal(x, y) for x, y in zip(ta[1], tb[1]))


@dataclass
class Vote:
    label: str | None  # the pseudo-label: first-seen member of the largest class (None if no answer parsed)
    p_hat: float  # size of that class / number of answers (paper Sec. 3.1: the Solver's self-consistency)
    sizes: list  # size of each equivalence class, in order of first appearance
    class_of: list  # class index of each answer, -1 for an unparseable one


def majority_vote(answers):
    """Majority vote over m answers (PAPER.md Sec. 2.4): greedy clustering against class representatives.

    Unparseable answers (None, or empty after normalisation) stay in the denominator of p_hat and never win.
    Ties go to the class seen first.
    """
    reps, sizes, class_of = [], [], []
    for ans in answers:
        k = -1
        if normalize(ans):
            k = next((j for j, rep in enumerate(reps) if equivalent(ans, rep)), -1)
            if k < 0:
                reps.append(ans)
                sizes.append(0)
                k = len(reps) - 1
            sizes[k] += 1
        class_of.append(k)
    if not reps:
        return Vote(None, 0.0, [], class_of)
    best = max(range(len(reps)), key=lambda j: (sizes[j], -j))
    return Vote(reps[best].strip(), sizes[best] / max(len(answers), 1), sizes, class_of)


def official_answers(answers, labels):
    """m extracted answers as the official code votes on them (rzero's --official-votes): a missing or unclosed
    \\boxed{} is the string "None" (mathruler's extract_boxed_content), an answer like any other that can win the
    vote; the labelling script (question_evaluate/evaluate.py, labels=True) also leaves empty answers out, so out of
    p_hat's denominator, where the reward server (vllm_service_init/start_vllm_server.py) keeps them."""
    answers = ["None" if a is None else a for a in answers]
    return [a for a in answers if a] if labels else answers


def in_band(p_hat, band=(0.25, 0.75)):
    """LOW <= p_hat <= HIGH: the questions R-Zero keeps for the Solver (paper Sec. 3.3, |p_hat - 1/2| <= 0.25).
    With a tolerance, because p_hat = k/m is a float (3/10 must pass a band that starts at 0.3)."""
    return band[0] - 1e-9 <= p_hat <= band[1] + 1e-9
