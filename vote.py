"""Answers and pseudo-labels: extraction, equivalence and the majority vote of R-Zero.

Both R-Zero rewards go through this file (paper Sec. 3; PAPER.md Sec. 2.3-2.4, 3.2, 4):
- the Challenger's uncertainty reward needs p_hat, the share of the Solver's m answers that agree with the
  majority answer, which is also the pseudo-label of the question;
- the Solver's reward is 1 when its \\boxed{} answer is `equivalent` to that pseudo-label.
Evaluation grades with the same `equivalent`, and reads multiple-choice answers with `extract_choice`.

The order of this file is the order of use: extraction, `normalize`, `answer_key`, `equivalent`, the vote
(`majority_vote`, `in_band`), then the expression parser that `answer_key` calls.

Equivalence compares keys (`answer_key`): each answer is normalised (`\\sqrt3` = `\\sqrt{3}`, `\\$` signs, a unit
in `\\text{}` or `\\mathrm{}`, `\\dfrac`, degrees, percent signs, thousands separators, a label such as `x = ` or
`AB = `, a choice's letter before its value, a trailing period), then read as a number (exact rationals: 0.5 = 1/2 =
2/4, mixed numbers, powers of ten, 1.87e6, 0.\\overline{3}), an expression, a tuple or interval, a set or list, a
union, a matrix, else text. Two answers are equivalent when their keys are equal, so the relation is symmetric and
transitive, no tolerance is involved, and the majority vote's classes are the keys themselves, whatever the order.

Expressions are compared by value with sympy, which every torch installation already carries, so nothing new is
installed: parsed by a small parser of our own (`_Parser`: arithmetic, powers, roots, \\frac, \\binom, \\pi, i,
single letters and Greek letters as variables, \\ln, \\log, floor and ceiling; no eval and no LaTeX package), then
expanded. An expression whose value is a rational number is that number (3^{10} = 59049, \\sqrt{4} = 2), as a careful
human grader decides; else the key is sympy's canonical form, so 2\\sqrt3 = \\sqrt{12}, x^2+2x+1 = (x+1)^2 and 1+2i =
2i+1. sympy can run for hours on a short input (the official grader hangs there, PAPER.md Sec. 7), so every input is
bounded before sympy expands it (`_expression`, `_size`): what falls outside the bounds is compared as text. Every
other step is linear in the input, with no regex that can backtrack more than once over it. `bash run.sh bench.py
grader` measures the slowest call on 10,000 adversarial inputs (RESULTS.md Sec. 7: 0.11 s).

The official code grades with mathruler (PRM800K's grader: string normalisation, then sympy's simplify, with no
time bound of its own: the official reward server and labelling script wrap each call in a 10-second timeout, the
Solver's training reward, math.py, in none). Departures from it, each on purpose:
- A vote needs a transitive relation: mathruler accepts 0.5 = 2/4 and 0.5 = 1/2 but refuses 2/4 = 1/2 (unreduced
  fractions must match as strings), and it refuses 3+4 = 7 (a non-integer form of an integer); here every form of a
  value is that value.
- Sets, bare lists ("2, 3", "2 \\text{ and } 3", "1 \\pm \\sqrt2") and unions of intervals compare in any order; a
  set equals a list of the same distinct elements; tuples and intervals in order; "x=1, y=2" is the point (1, 2).
- No simplify: expressions are expanded, not reduced, so (x^2-1)/(x-1) is not x+1; nested radicals are not denested.
  mathruler also refuses `^(`, chained powers and any expression with more than two distinct letters, and drops bare
  unit words ("5 cm" is 5; here a unit counts only inside \\text{} or \\mathrm{}).
- The official vote also merges any two answers that both contain "no " (a hack for yes/no questions); we don't.
- The official extraction (mathruler's extract_boxed_content) returns the string "None" for a response without a
  box, which then votes like an answer; here such an answer is None and never wins (rzero's --official-votes gives
  the official reading).
- `extract_boxed` also reads `\\fbox{}` and a bare `\\boxed 5`, as MATH's last_boxed_only_string does (official=True
  reads mathruler's last `\\boxed{` only).

The standard library, and sympy where torch is installed (without it an expression is compared as text), so the
file can be copied into another project alone.
"""
import functools
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

BOX_COMMANDS = ("\\boxed", "\\fbox")

# ----------------------------------------------------------------------------- extraction


def _closing(text, i, opens="{", closes="}"):
    """Index of the bracket closing the one at text[i] (every bracket of opens and closes counts), or -1."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] in opens:
            depth += 1
        elif text[j] in closes:
            depth -= 1
            if depth == 0:
                return j
    return -1


def extract_boxed(text, official=False):
    """Content of the last \\boxed{...} (or \\fbox{...}), braces matched; None when absent or unbalanced.

    `\\boxed 5` (a space, then one token) is read as in MATH's last_boxed_only_string. An empty box gives "".
    official=True reads as mathruler's extract_boxed_content: the last `\\boxed{` only (None where it says "None").
    """
    if not isinstance(text, str):
        return None
    start, cmd = (text.rfind("\\boxed{"), "\\boxed") if official else max((text.rfind(c), c) for c in BOX_COMMANDS)
    if start < 0:
        return None
    i = start + len(cmd)
    if text.startswith(" ", i):
        token = text[i:].lstrip().split(maxsplit=1)
        return token[0].split("$")[0] if token else None
    if not text.startswith("{", i):
        return None
    end = _closing(text, i)
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


def extract_question(text, official=False):
    """Content of the last complete <question>...</question> block, stripped; None when missing or empty.
    official=True reads as caller_penalty.py's non-greedy findall, last match: each block runs from a <question>
    to the first </question> after it, so a nested <question> stays inside the block."""
    if not isinstance(text, str):
        return None
    open_, close = "<question>", "</question>"
    if official:
        question, i = None, 0
        while (start := text.find(open_, i)) >= 0 and (end := text.find(close, start + len(open_))) >= 0:
            question, i = text[start + len(open_):end], end + len(close)
    else:
        end = text.rfind(close)
        start = text.rfind(open_, 0, end) if end >= 0 else -1
        question = text[start + len(open_):end] if start >= 0 else None
    return (question or "").strip() or None

# ----------------------------------------------------------------------------- normalisation


_DROP = ("\\left", "\\right", "\\displaystyle", "\\!", "\\,", "\\;", "\\:", "\\ ", "~", "\\$", "$", "^{\\circ}",
         "^\\circ", "°", "\\%", "%", "{,}")
_UNITS = ("\\text{", "\\mbox{", "\\textbf{", "\\mathrm{", "\\textrm{")
_VALUE_UNIT = re.compile(r"([+-]?[\d.,]+) [a-z]+", re.IGNORECASE)
_CONNECTIVE = re.compile(r"\\(?:text|mbox)\{ ?(?:and|or) ?\}| (?:and|or) ")  # whitespace is single spaces by then
_CHOICE_VALUE = re.compile(r"\(([A-Z])\)(?: |$)")  # "(D) 7": the choice, then its value
_FRAC12 = re.compile(r"\\frac(\d)(\d)")
_SQRT1 = re.compile(r"\\sqrt(\w)")  # \sqrt3 -> \sqrt{3}, as MATH's _fix_sqrt
_SUBSCRIPT = re.compile(r"_(\w)")  # 1011_2 -> 1011_{2}
_RELATION = re.compile(r"\\(ge|le)(?:q(?:slant)?|slant)?(?![a-z])")  # \ge, \geqslant -> \geq
_LABEL = re.compile(r"\\?[a-z]+(?:_\{\w+\})?=")  # x=, ab=, \theta=, x_{1}=: a name, then its value
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_LETTER = re.compile(r"\(([a-z])\)")  # (b) -> b: a choice written in parentheses
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")  # unambiguous: no backtracking


def _strip_text(s):
    """`\\text{5}` -> 5; `5\\text{ cm}` -> 5: a \\text{} after the value is a unit (MATH's _remove_right_units);
    `\\text{14 cm}` -> 14. \\mathrm{} and the others of _UNITS alike."""
    for cmd in _UNITS:
        i = s.find(cmd)
        if i > 0:
            s = s[:i]
        elif i == 0:
            end = _closing(s, len(cmd) - 1)
            if end < 0:
                return s
            inner = s[len(cmd):end].strip()
            m = _VALUE_UNIT.fullmatch(inner)  # \text{14 cm}: the value and its unit in one \text{}
            s = (m.group(1) if m else inner) + s[end + 1:]
    return s


def _canonical_number(s):
    """'0.50' -> '0.5', '5.0' -> '5', '+3' -> '3', '-0' -> '0'; anything else unchanged."""
    if len(s) > 400 or not _DECIMAL.fullmatch(s):
        return s
    d = Decimal(s)
    return "0" if d == 0 else format(d.normalize(), "f")


def _unlabel(s):
    """`x=3` -> 3, `AB=12` -> 12: the value after a name, unless another = follows (x=y=2 stays)."""
    m = _LABEL.match(s)
    return s[m.end():] if m and "=" not in s[m.end():] else s


def normalize(answer):
    """A canonical string for an answer: what is left when the notation that does not change the value is gone."""
    if answer is None:
        return ""
    s = " ".join(str(answer).split()).replace("\\\\", "\0")  # a row break \\ must survive the drop of "\ " below
    for token in _DROP:
        s = s.replace(token, "")
    s = _CONNECTIVE.sub(",", s)  # 2 \text{ and } 3 is the list 2, 3 (not 2 with a unit)
    s = _strip_text(s).replace("\0", "\\\\")
    m = _CHOICE_VALUE.match(s)
    s = m.group(1) if m else s
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\dbinom", "\\binom")
    s = _FRAC12.sub(r"\\frac{\1}{\2}", s)
    s = "".join(s.split()).lower().replace("≥", "\\geq").replace("≤", "\\leq")
    s = _RELATION.sub(r"\\\1q", _SUBSCRIPT.sub(r"_{\1}", _SQRT1.sub(r"\\sqrt{\1}", s)))
    s = _unlabel(s.rstrip("."))
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if _LETTER.fullmatch(s):
        s = s[1]
    return _canonical_number(s)

# ----------------------------------------------------------------------------- keys: what an answer means


def answer_key(answer):
    """The class of an answer: two answers are `equivalent` exactly when their keys are equal, so the relation is
    symmetric and transitive, and the vote's classes do not depend on the order of the answers. None for a missing or
    empty answer, which equals nothing. A key is one of
    - ("number", exact value): a plain number (`_number`), or an expression whose value is rational (3+4 is 7);
    - ("expression", sympy's form of it, expanded): arithmetic on numbers, variables, i, \\pi, \\frac, \\sqrt, powers
      and a few functions, within bounds on size (`_expression`);
    - ("tuple", "(", elements, "]"), ordered, the brackets kept (points, intervals); ("set", elements) for \\{..\\} and
      for a bare list or items joined by "and"/"or" or \\pm, in any order ("list", with its repeats, where an element
      repeats); ("union", intervals) in any order; ("matrix", rows);
    - ("text", the normalised string) for anything else: words, letters, what cannot be parsed within the bounds."""
    s = normalize(answer)
    return _key(s, 0) if s else None


def _element(e, depth):
    return _key(normalize(e), depth + 1)


def _collection(parts, depth):
    """The key of an unordered collection: a set's, or a list's where an element repeats (2, 2: a double root)."""
    keys = sorted((_element(p, depth) for p in parts), key=repr)
    return ("set" if len(set(keys)) == len(keys) else "list", tuple(keys))


@functools.lru_cache(maxsize=1 << 16)
def _key(s, depth):
    if len(s) > 2000 or depth > 8:  # past any real answer: compared as text, in linear time
        return ("text", s)
    rows = _matrix_rows(s)
    if rows is not None:
        return ("matrix", tuple(tuple(_element(c, depth) for c in row.split("&")) for row in rows))
    if "\\pm" in s:  # a \pm b: the two values a + b and a - b
        return _collection([s.replace("\\pm", "+"), s.replace("\\pm", "-")], depth)
    if len(union := _split_top_level(s, "\\cup")) > 1:
        return ("union", tuple(sorted({_element(p, depth) for p in union}, key=repr)))
    if s.startswith("\\{") and s.endswith("\\}") and len(s) > 4:
        return ("set", tuple(sorted({_element(e, depth) for e in _split_top_level(s[2:-2])}, key=repr)))
    t = _as_tuple(s)
    if t:
        return ("tuple", t[0], tuple(_element(e, depth) for e in t[1]), t[2])
    parts = _split_top_level(s)
    if len(parts) > 1:
        names = [_LABEL.match(p) for p in parts]
        if all(names) and len({n.group() for n in names}) == len(parts):  # x=1, y=2: the point (1, 2)
            values = [p[n.end():] for n, p in sorted(zip(names, parts), key=lambda np: np[0].group())]
            return ("tuple", "(", tuple(_element(v, depth) for v in values), ")")
        return _collection(parts, depth)
    value = _number(s)
    if value is not None:
        return ("number", value)
    return _expression(s) or ("text", s)


def equivalent(a, b):
    """True when two answers mean the same: their `answer_key`s are equal. Missing or empty answers equal nothing."""
    ka = answer_key(a)
    return ka is not None and ka == answer_key(b)


_MATRIX = re.compile(r"\\begin\{([pbv]?matrix|array)\}(\{[lcr|]*\})?(.*)\\end\{\1\}")


def _matrix_rows(s):
    """The rows of a matrix (\\begin{pmatrix}, bmatrix, vmatrix, matrix, or an array in brackets), else None."""
    m = _MATRIX.fullmatch(s)
    if m is None and s[:1] in ("(", "[") and s[-1:] in (")", "]"):
        m = _MATRIX.fullmatch(s[1:-1])
    return m.group(3).removesuffix("\\\\").split("\\\\") if m else None


def _split_top_level(s, sep=","):
    """Split on separators that are not inside brackets: '(1,(2,3))' inner text -> ['1', '(2,3)']."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            i = start = i + len(sep)
            continue
        i += 1
    parts.append(s[start:])
    return parts


def _as_tuple(s):
    """('(', ['1', '2'], ']') for a bracketed list of two or more elements, else None. Intervals keep their ends;
    '(1,1),(3,2)' is a list of two tuples, not one tuple (its first bracket closes before the end)."""
    if len(s) < 5 or s[0] not in "([" or s[-1] not in ")]" or _closing(s, 0, "([{", ")]}") != len(s) - 1:
        return None
    parts = _split_top_level(s[1:-1])
    return (s[0], parts, s[-1]) if len(parts) > 1 else None


_SCIENTIFIC = re.compile(r"(?:([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:\\times|\\cdot|\*))?10\^(?:\{([+-]?\d{1,4})\}|(\d))")
_E_NOTATION = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)e([+-]?\d{1,4})")  # 1.87e6, Minerva's spelling
_REPEATING = re.compile(r"([+-]?)(\d*)\.(\d*)\\overline\{(\d+)\}")  # 0.1\overline{6} = 1/6


def _number(s):
    """The exact value of a plain number: an integer, a decimal, a fraction (a/b, \\frac{a}{b}), a mixed number
    (3\\frac{3}{4}), a power of ten (10^6, 1.5\\times10^{3}, 1.5e3) or a repeating decimal; None for anything else."""
    if m := _SCIENTIFIC.fullmatch(s):
        exponent = int(m.group(2) or m.group(3))
        return Fraction(m.group(1) or 1) * Fraction(10) ** exponent if abs(exponent) <= 400 else None
    if m := _E_NOTATION.fullmatch(s):
        return Fraction(s) if abs(int(m.group(1))) <= 400 else None
    if (m := _REPEATING.fullmatch(s)) and len(s) <= 400:
        sign, whole, fixed, cycle = m.groups()
        shift = 10 ** len(fixed)
        value = int(whole or 0) + Fraction(int(fixed or 0), shift)
        value += Fraction(int(cycle), shift * (10 ** len(cycle) - 1))  # 0.0\overline{6} = 6 / (10 x 9)
        return -value if sign == "-" else value
    return _fraction_value(s)


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
        mid = _closing(s, len("\\frac"))
        if mid < 0 or not s.startswith("{", mid + 1) or _closing(s, mid + 1) != len(s) - 1:
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

# ----------------------------------------------------------------------------- the vote


@dataclass
class Vote:
    label: str | None  # the pseudo-label: first-seen member of the largest class (None if no answer parsed)
    p_hat: float  # size of that class / number of answers (paper Sec. 3.1: the Solver's self-consistency)
    sizes: list  # size of each equivalence class, in order of first appearance
    class_of: list  # class index of each answer, -1 for an unparseable one


def majority_vote(answers):
    """Majority vote over m answers (PAPER.md Sec. 2.4): the classes are the answers' keys (`answer_key`), so they
    are the same in any order of the answers, each represented by its first member.

    Missing answers (None, or empty after normalisation) stay in the denominator of p_hat and never win.
    Ties go to the class seen first.
    """
    index, reps, sizes, class_of = {}, [], [], []
    for ans in answers:
        key = answer_key(ans)
        if key is None:
            class_of.append(-1)
            continue
        if key not in index:
            index[key] = len(reps)
            reps.append(ans)
            sizes.append(0)
        sizes[index[key]] += 1
        class_of.append(index[key])
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

# ----------------------------------------------------------------------------- expressions, by value and bounded


_GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
          "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega")
_FUNCTIONS = ("frac", "sqrt", "binom", "pi", "times", "cdot", "div", "ln", "log", "lfloor", "rfloor", "lceil", "rceil")
_COMMANDS = {"\\" + c for c in _GREEK + _FUNCTIONS}
# the known commands first, longest first: normalize removed the spaces, so 2\pi r reads \pir
_TOKEN = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:e\d+)?|"
                    + "|".join(map(re.escape, sorted(_COMMANDS, key=len, reverse=True)))
                    + r"|\\[a-z]+|[a-z]|[-+*/^_()\[\]{}]")
_MULTIPLY = {"\\times", "\\cdot", "*"}
_ENDS = {"+", "-", ")", "]", "}", "^", "_", "\\rfloor", "\\rceil"}  # what ends a product
_MAX_TERMS, _MAX_SYMBOLIC_POWER, _MAX_DIGITS = 300, 24, 600


class _Refused(Exception):
    """The answer is not an expression this parser reads, or reading it could take long: it is compared as text."""


def _expression(s):
    """The key of the expression that s writes: ("number", its value) where that is rational, else ("expression",
    sympy's srepr of it, expanded); None where s is not read (then it is compared as text). The bounds that keep every
    call short, whatever the input: at most 200 characters and 10 levels of brackets; no word of three letters or
    more (yes, odd, sin), no LaTeX command but the known ones; numbers of at most 50 digits; powers of a variable at
    most 24, of a number at most 600 digits, roots of order at most 12, binomials of at most 1000; at most 300 terms
    and numbers of at most 600 digits once expanded, counted before expanding in every part that expand works through
    (`_size`). sympy comes with torch; without it every expression is text."""
    if not s or len(s) > 200 or s.isalpha() or s[0] in "([" and _closing(s, 0, "([{", ")]}") == len(s) - 1:
        return None  # a word or a letter is text; a whole in brackets, (1), is a label, not a value
    tokens = _TOKEN.findall(s)
    letters = "".join("a" if len(t) == 1 and t.isalpha() else " " for t in tokens)  # runs of single letters
    if "".join(tokens) != s or any(t.startswith("\\") and t not in _COMMANDS for t in tokens) or "aaa" in letters:
        return None
    try:
        import sympy
    except ImportError:
        return None
    try:
        parser = _Parser(tokens, sympy)
        expr = parser.sum()
        if parser.i != len(tokens) or expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            return None
        if not _bounded(expr):
            return None
        expr = sympy.expand(expr)
        return ("number", Fraction(int(expr.p), int(expr.q))) if expr.is_Rational else ("expression", sympy.srepr(expr))
    except Exception:  # _Refused, and the many kinds sympy raises: an answer it cannot read is text
        return None


def _size(e):
    """Upper bounds on (the terms, the digits of the largest number) of e once expanded, and of every part of it,
    since sympy's expand works through all of them: the base of a power whatever its exponent (1/(a+b)^24 and
    \\sqrt{(a+b)^{24}} expand (a+b)^24), an exponent (2^{(a+b)^2} becomes 2^{a^2} 2^{2ab} 2^{b^2}) and a function's
    arguments. Terms: sums add, products multiply, (a + b + ...)^n of k terms gives at most C(k + n - 1, n), n the
    whole part of the exponent's size. Digits: products add them, and a power of a sum multiplies them, multinomial
    coefficients included (sympy factors the integers under a root: huge ones would take it hours)."""
    if e.is_Rational:
        return 1, max(len(str(abs(e.p))), len(str(e.q)))
    sizes = [_size(a) for a in e.args]
    if e.is_Add:
        return sum(t for t, _ in sizes), max(d for _, d in sizes) + len(str(len(sizes)))
    if e.is_Pow and e.exp.is_Rational:
        (terms, digits), n = sizes[0], abs(int(e.exp.p)) // int(e.exp.q)
        if terms > 1 and n > 0:
            terms, digits = math.comb(terms + n - 1, n), n * (digits + len(str(terms)))
        return terms, max(n, 1) * digits + sizes[1][1]
    return math.prod(t for t, _ in sizes), sum(d for _, d in sizes) or 1  # a product, a function, 2^x; a symbol


def _bounded(e):
    terms, digits = _size(e)
    return terms <= _MAX_TERMS and digits <= _MAX_DIGITS


def _check_power(base, exponent):
    """Raise _Refused unless sympy can compute base^exponent quickly: a rational exponent with a denominator of at
    most 12, at most 24 on anything but a number, and at most 600 digits of the number it works on, roots included."""
    if not (exponent.is_Rational and exponent.q <= 12):
        raise _Refused("exponent")
    if (base.free_symbols or not base.is_Rational) and abs(exponent) > _MAX_SYMBOLIC_POWER:
        raise _Refused("power")
    if max(abs(exponent), 1) * _size(base)[1] > _MAX_DIGITS:
        raise _Refused("power")


class _Parser:
    """Recursive descent over the tokens of a normalised answer: sum := product (+|- product)*, product := unary
    ((*|/|implicit) unary)*, unary := (-|+) unary | power, power := atom (^ atom)?, atom := number | letter | \\pi |
    \\frac{..}{..} | \\binom{..}{..} | \\sqrt[n]{..} | \\ln power | \\log_b power | \\lfloor..\\rfloor | (..) | {..} |
    [..]. A letter or a Greek letter is a variable, but i, the imaginary unit; \\log without a base is base 10."""

    def __init__(self, tokens, sympy):
        self.t, self.i, self.depth, self.sp = tokens, 0, 0, sympy

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want=None):
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise _Refused(want)
        self.i += 1
        return tok

    def sum(self):
        out = self.product()
        while self.peek() in ("+", "-"):
            out = out + self.product() if self.take() == "+" else out - self.product()
        return out

    def product(self):
        out = self.unary()
        while True:
            tok = self.peek()
            if tok in _MULTIPLY:
                self.take()
                out = out * self.unary()
            elif tok in ("/", "\\div"):
                self.take()
                out = out / self.unary()
            elif tok is not None and tok not in _ENDS:
                out = out * self.unary()  # implicit: 2x, 2\\sqrt{3}, (x+1)(x-1)
            else:
                return out

    def unary(self):
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        tok = self.peek()
        if tok is not None and tok.isdigit() and len(tok) > 1:  # x^23 is x^2 times 3
            self.t[self.i:self.i + 1] = [tok[0], tok[1:]]
        exponent = self.atom()
        return self._pow(base, exponent)

    def _pow(self, base, exponent):
        if exponent.free_symbols and not base.free_symbols and base.is_Rational:
            # 2^x; expand splits the exponent's sum and computes the power of the number it leaves: 2^{x+3} = 8 2^x
            if not _bounded(exponent):
                raise _Refused("exponent")
            _check_power(base, self.sp.expand(exponent).as_coeff_Add()[0])
        else:
            _check_power(base, exponent)
        return self.sp.Pow(base, exponent)

    def group(self, opening, closing=None):
        closing = closing or {"(": ")", "[": "]", "{": "}"}[opening]
        self.take(opening)
        self.depth += 1
        if self.depth > 10:
            raise _Refused("depth")
        inner = self.sum()
        self.depth -= 1
        self.take(closing)
        return inner

    def atom(self):
        sp, tok = self.sp, self.peek()
        if tok is None:
            raise _Refused("end")
        if tok in ("(", "[", "{"):
            return self.group(tok)
        if tok in ("\\lfloor", "\\lceil"):
            floor = tok == "\\lfloor"
            return (sp.floor if floor else sp.ceiling)(self.group(tok, "\\rfloor" if floor else "\\rceil"))
        self.take()
        if tok[0].isdigit() or tok[0] == ".":
            mantissa, _, exponent = tok.partition("e")
            if len(mantissa) > 50 or len(mantissa) + int(exponent or 0) > _MAX_DIGITS:
                raise _Refused("number")
            return sp.Rational(mantissa) * 10 ** int(exponent or 0)
        if tok == "\\pi":
            return sp.pi
        if tok in ("\\frac", "\\binom"):
            top, bottom = self.group("{"), self.group("{")
            if tok == "\\frac":
                return top / bottom
            if top.is_Integer and bottom.is_Integer and 0 <= top <= 1000 or top.free_symbols or bottom.free_symbols:
                return sp.binomial(top, bottom)
            raise _Refused("binomial")
        if tok == "\\sqrt":
            n = self.group("[") if self.peek() == "[" else sp.Integer(2)
            if not (n.is_Integer and 2 <= n <= 12):
                raise _Refused("root")
            return self._pow(self.group("{"), sp.Rational(1, int(n)))
        if tok == "\\ln":
            return sp.log(self.power())
        if tok == "\\log":
            base = sp.Integer(10)
            if self.peek() == "_":
                self.take()
                base = self.atom()
            return sp.log(self.power(), base)
        if tok[1:] in _GREEK:
            return sp.Symbol(tok[1:])
        if tok.isalpha() and len(tok) == 1:
            return sp.I if tok == "i" else sp.Symbol(tok)
        raise _Refused(tok)
