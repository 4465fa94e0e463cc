"""Answers and pseudo-labels: extraction, equivalence and the majority vote of R-Zero.

Both R-Zero rewards go through this file (paper Sec. 3; PAPER.md Sec. 2.3-2.4, 3.2, 4):
- the Challenger's uncertainty reward needs p_hat, the share of the Solver's m answers that agree with the
  majority answer, which is also the pseudo-label of the question;
- the Solver's reward is 1 when its \\boxed{} answer is `equivalent` to that pseudo-label.
Evaluation grades with the same `equivalent`, and reads multiple-choice answers with `extract_choice`.

Equivalence (`equivalent`) compares keys (`answer_key`): each answer is normalised (`normalize`: `\\sqrt3` =
`\\sqrt{3}`, `\\$` signs, `\\text{}` around a choice or after a value (a unit), `\\dfrac`, degrees, percent signs,
thousands separators, an `x = ` prefix, a trailing period), then read as a plain number (exact rationals: 0.5 = 1/2
= 2/4, mixed numbers, powers of ten), an expression, a tuple or interval, a set, a list or a matrix, else text.
Two answers are equivalent when their keys are equal, so the relation is symmetric and transitive, no tolerance is
involved, and the majority vote's classes are the keys themselves, whatever the order of the answers.

Expressions are compared by value with sympy, which every torch installation already carries, so nothing new is
installed: parsed by a small parser of our own (`_Parser`: arithmetic, powers, roots, \\frac, \\pi, i and
single-letter variables, no eval and no LaTeX package), then expanded; the key is sympy's canonical form of the
result, so 2\\sqrt3 = \\sqrt{12}, x^2+2x+1 = (x+1)^2 and 1+2i = 2i+1. sympy can run for hours on some inputs (the
official grader hangs there, PAPER.md Sec. 7), so every input is bounded before sympy sees it (`_expression`: size,
nesting, powers, roots, the number of terms once expanded); what falls outside the bounds is compared as text. Every
other function runs in time linear in its input, with no regex that can backtrack.

The official code grades with mathruler (PRM800K's grader: string normalisation, then sympy's simplify, with no
time bound of its own: the official reward server and labelling script wrap each call in a 10-second timeout, the
Solver's training reward, math.py, in none). Departures from it, each on purpose:
- A vote needs a symmetric relation: PRM800K refuses unreduced fractions (2/4 against 1/2) and asks which side is the
  reference; here both sides are read alike.
- An expression that reduces to a number is not that plain number: 3+4 is not 7, \\sqrt{4} not 2, as PRM800K
  refuses a non-integer form of an integer answer (a Solver that boxes its question's expression earns nothing).
- Sets (\\{..\\}) and bare lists ("2, 3", "2 \\text{ and } 3") compare in any order; tuples and intervals in order.
- No simplify: expressions are expanded, not reduced, so (x^2-1)/(x-1) is not x+1; nested radicals are not denested.
- The official vote also merges any two answers that both contain "no " (a hack for yes/no questions); we don't.
- The official extraction (mathruler's extract_boxed_content) returns the string "None" for a response without a
  box, which then votes like an answer; here such an answer is None and never wins (rzero's --official-votes gives
  the official reading).
- `extract_boxed` also reads `\\fbox{}` and a bare `\\boxed 5`, as MATH's last_boxed_only_string does.

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
_CONNECTIVE = re.compile(r"\\(?:text|mbox)\{\s*(?:and|or)\s*\}|\s+(?:and|or)\s+")
_SCIENTIFIC = re.compile(r"(?:([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:\\times|\\cdot|\*))?10\^(?:\{([+-]?\d{1,4})\}|(\d))")
_MATRIX = re.compile(r"\\begin\{([pbv]?matrix)\}(.*)\\end\{\1\}")


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
    s = str(answer).strip().replace("\\\\", "\0")  # a row break \\ must survive the drop of "\ " below
    for token in _DROP:
        s = s.replace(token, "")
    s = _CONNECTIVE.sub(",", s)  # 2 \text{ and } 3 is the list 2, 3 (not 2 with a unit)
    s = _strip_text(s).replace("\0", "\\\\")
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


def _number(s):
    """The exact value of a plain number: an integer, a decimal, a fraction (a/b, \\frac{a}{b}), a mixed number
    (3\\frac{3}{4}) or a power of ten (10^6, 1.5\\times10^{3}); None for anything else."""
    m = _SCIENTIFIC.fullmatch(s)
    if m:
        exponent = int(m.group(2) or m.group(3))
        return Fraction(m.group(1) or 1) * Fraction(10) ** exponent if abs(exponent) <= 400 else None
    return _fraction_value(s)


def answer_key(answer):
    """The class of an answer: two answers are `equivalent` exactly when their keys are equal, so the relation is
    symmetric and transitive, and the vote's classes do not depend on the order of the answers. None for a missing or
    empty answer, which equals nothing. A key is one of
    - ("number", exact value): a plain number (`_number`);
    - ("expression", sympy's form of it, expanded): arithmetic on numbers, single-letter variables, i, \\pi, \\frac,
      \\sqrt and powers, within bounds on size (`_expression`). Never a plain number's key: 3+4 is not 7 (PRM800K's
      rule, an integer answer must be an integer; it also keeps a Solver from boxing its question's expression);
    - ("tuple", "(", elements, "]"), ordered, the brackets kept (points, intervals); ("set", elements) for \\{..\\};
      ("list", elements) for a bare list or items joined by "and"/"or", in any order; ("matrix", rows);
    - ("text", the normalised string) for anything else: words, letters, what cannot be parsed within the bounds."""
    s = normalize(answer)
    return _key(s, 0) if s else None


@functools.lru_cache(maxsize=1 << 16)
def _key(s, depth):
    if len(s) > 2000 or depth > 8:  # past any real answer: compared as text, in linear time
        return ("text", s)
    m = _MATRIX.fullmatch(s)
    if m:
        return ("matrix", tuple(tuple(_key(normalize(c), depth + 1) for c in row.split("&"))
                                for row in m.group(2).split("\\\\")))
    if s.startswith("\\{") and s.endswith("\\}") and len(s) > 4:
        return ("set", tuple(sorted({_key(normalize(e), depth + 1) for e in _split_top_level(s[2:-2])}, key=repr)))
    t = _as_tuple(s)
    if t:
        return ("tuple", t[0], tuple(_key(normalize(e), depth + 1) for e in t[1]), t[2])
    parts = _split_top_level(s)
    if len(parts) > 1:
        return ("list", tuple(sorted((_key(normalize(e), depth + 1) for e in parts), key=repr)))
    value = _number(s)
    if value is not None:
        return ("number", value)
    form = _expression(s)
    return ("expression", form) if form is not None else ("text", s)


def equivalent(a, b):
    """True when two answers mean the same: their `answer_key`s are equal. Missing or empty answers equal nothing."""
    ka = answer_key(a)
    return ka is not None and ka == answer_key(b)

# ----------------------------------------------------------------------------- expressions, by value and bounded

# the known commands first: normalize removed the spaces, so 2\pi r reads \pir
_TOKEN = re.compile(r"\d+(?:\.\d*)?|\.\d+|\\(?:frac|sqrt|pi|times|cdot|div)|\\[a-z]+|[a-z]|[-+*/^()\[\]{}]")
_COMMANDS = {"\\frac", "\\sqrt", "\\pi", "\\times", "\\cdot", "\\div"}
_MULTIPLY = {"\\times", "\\cdot", "*"}
_MAX_TERMS, _MAX_SYMBOLIC_POWER, _MAX_DIGITS = 300, 24, 600


class _Refused(Exception):
    """The answer is not an expression this parser reads, or reading it could take long: it is compared as text."""


def _expression(s):
    """sympy's srepr of the expanded expression that s writes, or None (then s is compared as text). The bounds that
    keep every call short, whatever the input: at most 200 characters and 10 levels of brackets; no word of three
    letters or more (yes, odd, sin), no other LaTeX command than \\frac, \\sqrt, \\pi, \\times, \\cdot, \\div;
    powers of a variable at most 24, of a number at most 600 digits, roots of order at most 12; at most 300 terms
    once expanded (counted before expanding). sympy comes with torch; without it every expression is text."""
    if not s or len(s) > 200 or s.isalpha() or s[0] in "([" and _closing(s, 0) == len(s) - 1:
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
        if _terms(expr) > _MAX_TERMS:
            return None
        return sympy.srepr(sympy.expand(expr))
    except Exception:  # _Refused, and the many kinds sympy raises: an answer it cannot read is text
        return None


def _closing(s, i):
    """Index of the bracket closing the one at s[i], or -1."""
    depth = 0
    for j in range(i, len(s)):
        depth += s[j] in "([{"
        depth -= s[j] in ")]}"
        if depth == 0:
            return j
    return -1


def _terms(e):
    """An upper bound on the terms of e once expanded: sums add, products multiply, (a + b + ...)^n of k terms gives
    at most C(k + n - 1, n)."""
    if e.is_Add:
        return sum(_terms(a) for a in e.args)
    if e.is_Mul:
        return math.prod(_terms(a) for a in e.args)
    if e.is_Pow and e.exp.is_Integer and e.exp > 0 and _terms(e.base) > 1:
        return math.comb(_terms(e.base) + int(e.exp) - 1, int(e.exp))
    return 1


class _Parser:
    """Recursive descent over the tokens of a normalised answer: sum := product (+|- product)*, product := unary
    ((*|/|implicit) unary)*, unary := (-|+) unary | power, power := atom (^ atom)?, atom := number | letter | \\pi |
    \\frac{..}{..} | \\sqrt[n]{..} | (..) | {..} | [..]. A letter is a variable, but i, the imaginary unit."""

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
            elif tok is not None and tok not in ("+", "-", ")", "]", "}", "^"):
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
        if tok is not None and tok[0].isdigit() and len(tok) > 1 and "." not in tok:  # x^23 is x^2 times 3
            self.t[self.i:self.i + 1] = [tok[0], tok[1:]]
        exponent = self.atom()
        return self._pow(base, exponent)

    def _pow(self, base, exponent):
        sp = self.sp
        if exponent.free_symbols and not base.free_symbols and base.is_Rational:
            return sp.Pow(base, exponent)  # 2^x: nothing to expand
        if not (exponent.is_Rational and exponent.q <= 12):
            raise _Refused("exponent")
        if base.free_symbols:
            if abs(exponent) > _MAX_SYMBOLIC_POWER:
                raise _Refused("power")
        elif base.is_Rational:
            digits = max(len(str(abs(base.p))), len(str(base.q)))
            if abs(exponent.p) * digits > _MAX_DIGITS * exponent.q:
                raise _Refused("power")
        elif abs(exponent) > _MAX_SYMBOLIC_POWER:
            raise _Refused("power")
        return sp.Pow(base, exponent)

    def group(self, opening):
        closing = {"(": ")", "[": "]", "{": "}"}[opening]
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
        self.take()
        if tok[0].isdigit() or tok[0] == ".":
            if len(tok) > 50:
                raise _Refused("number")
            return sp.Rational(tok)
        if tok == "\\pi":
            return sp.pi
        if tok == "\\frac":
            return self.group("{") / self.group("{")
        if tok == "\\sqrt":
            n = self.group("[") if self.peek() == "[" else sp.Integer(2)
            if not (n.is_Integer and 2 <= n <= 12):
                raise _Refused("root")
            return self._pow(self.group("{"), sp.Rational(1, int(n)))
        if tok.isalpha() and len(tok) == 1:
            return sp.I if tok == "i" else sp.Symbol(tok)
        raise _Refused(tok)


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
