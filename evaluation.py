"""Evaluation as the paper reports it (paper Sec. 4.1, Tables 1-2; PAPER.md Sec. 6), and the chat
prompts that every stage shares.

    bash run.sh evaluation.py convert gsm8k ~/downloads/gsm8k-test.jsonl evals/gsm8k.jsonl
    bash run.sh --model /path/to/Qwen3-4B-Base --eval-file evals/      # each .jsonl in the folder is a benchmark
    bash run.sh evaluation.py report runs/4b/iter1/solver evals/       # one model, the same table, no training

A benchmark is a JSONL file named after it, of one kind of row:
- math: {"question", "answer"}, and "level" where accuracy per level is wanted (the tiny world's test set);
- multiple choice: {"question", "options": [...], "answer": "C"}.
Math is asked with the Solver's system message (PAPER.md Sec. 6.1); multiple choice with the official user message,
the options listed "(A): ...", and no system message (6.2). Decoding is greedy with at most 4096 new tokens for math
and 8192 for multiple choice; mean@k and maj@k are added when k > 0. The paper's aggregates: MATH AVG, the
unweighted mean of the math benchmarks, and where multiple-choice benchmarks are given, Overall AVG, the mean of
MATH AVG and each of them (the paper also averages in BBEH, which is free-form with its own fuzzy matcher and is
not covered here).

Departures from the official code, on purpose:
- A multiple-choice answer is the option letter that leads the last \\boxed{} (vote.extract_choice); a response
  without one is wrong. The official code scans A, B, ..., J in that order and takes the first that occurs
  anywhere in the last box (else in the last "Final Answer:" or "The answer is:" line), so a box "(D) Because"
  scores B, and failing that a random letter, which credits about a tenth of the misses by chance.
- Math is graded on the last \\boxed{} (the official code reads the first) by vote.equivalent alone: no
  math_verify, no GPT-4o second opinion (the official numbers send every miss to GPT-4o, with its arguments
  swapped, PAPER.md Sec. 6.1).
- AMC and AIME are not repeated 32 times: under greedy decoding the copies only reproduce the one score.
"""
import argparse
import csv
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass

import dist
import vote

MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."  # PAPER.md Sec. 6.1 and 4
# PAPER.md Sec. 6.2: MMLU-Pro's instruction (official evaluation/eval_mmlupro.py), and SuperGPQA's, which says
# "letter" where MMLU-Pro's says "option letter" (eval_supergpqa.py); a benchmark is told apart by its file's name
CHOICE_INSTRUCTION = ("Please reason step by step, and put your final answer option within \\boxed{}. Only put the "
                      "option letter in the box, e.g. \\boxed{A}. There is only one correct answer.")
CHOICE_INSTRUCTIONS = {"supergpqa": CHOICE_INSTRUCTION.replace("the option letter", "the letter")}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def render(tokenizer, system, user):
    """The prompt text: the tokenizer's chat template, or the official plain fallback when it has none. No system
    message when system is None."""
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": user}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def encode(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)  # a chat template already wrote any special tokens


def stop_ids(model, tokenizer):
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    return sorted(ids | {tokenizer.eos_token_id} - {None})


def respond(model, tokenizer, system, questions, n, temperature, max_new_tokens, **kw):
    """n response texts to each question, asked with `system` (None: no system message)."""
    ids = [encode(tokenizer, render(tokenizer, system, q)) for q in questions]
    groups = dist.sample(model, ids, n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                         stop_ids=stop_ids(model, tokenizer), **kw) if ids else []
    return [[tokenizer.decode(s.tokens, skip_special_tokens=True) for s in g] for g in groups]


def solve(model, tokenizer, system, questions, n, temperature, max_new_tokens, **kw):
    """The Solver's n extracted \\boxed{} answers (None where absent) for each question."""
    return [[vote.extract_boxed(t) for t in g]
            for g in respond(model, tokenizer, system, questions, n, temperature, max_new_tokens, **kw)]

# ----------------------------------------------------------------------------- benchmark files


@dataclass
class Benchmark:
    name: str  # the file's name without .jsonl
    kind: str  # "math" or "choice"
    rows: list  # dicts: question, answer, and options (choice) or an optional level (math)


def choice_question(row, benchmark=""):
    """The official multiple-choice user message (PAPER.md Sec. 6.2), with the benchmark's own instruction."""
    options = "".join(f"({LETTERS[i]}): {o}\n" for i, o in enumerate(row["options"]))
    instruction = CHOICE_INSTRUCTIONS.get("".join(c for c in benchmark.lower() if c.isalnum()), CHOICE_INSTRUCTION)
    return f"{row['question']}\nOptions are:\n{options}\n\n{instruction}"


def _row_kind(row, where):
    """'math' or 'choice' for a valid row, else a ValueError that names the file and the line."""
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip() \
            or not isinstance(row.get("answer"), (str, int, float)) or not str(row["answer"]).strip():
        raise ValueError(f"{where}: a row is {{\"question\", \"answer\"}} (math) or {{\"question\", \"options\", "
                         "\"answer\"}} (multiple choice), with a question and an answer that are not empty")
    if "options" not in row:
        return "math"
    options = row["options"]
    if not isinstance(options, list) or not options:
        raise ValueError(f"{where}: \"options\" must be a non-empty list")
    if len(options) > len(LETTERS) or not all(isinstance(o, (str, int, float)) for o in options):
        raise ValueError(f"{where}: \"options\" must be at most {len(LETTERS)} strings")
    if not isinstance(row["answer"], str) or row["answer"] not in LETTERS[:len(options)]:
        raise ValueError(f"{where}: answer {row['answer']!r} is not among the options' letters "
                         f"{LETTERS[0]}-{LETTERS[len(options) - 1]}")
    return "choice"


def read_benchmark(path):
    """A Benchmark from a JSONL file; any problem is a ValueError naming the file and the line."""
    name = os.path.splitext(os.path.basename(path))[0]
    kinds, rows = {}, []
    try:
        with open(path) as f:
            lines = list(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON ({e.msg})") from None
        kind = _row_kind(row, where)
        kinds.setdefault(kind, n)
        if len(kinds) > 1:
            other = next(k for k in kinds if k != kind)
            raise ValueError(f"{where}: a {'multiple-choice' if kind == 'choice' else 'math'} row in a file whose "
                             f"line {kinds[other]} is {'multiple-choice' if other == 'choice' else 'math'}: "
                             "one kind of row per file")
        rows.append({"question": row["question"], "answer": str(row["answer"]),
                     **({"options": [str(o) for o in row["options"]]} if kind == "choice" else {}),
                     **({"level": str(row["level"])} if row.get("level") is not None else {})})
    if not rows:
        raise ValueError(f"{path}: no rows")
    return Benchmark(name, next(iter(kinds)), rows)


def read_benchmarks(paths):
    """Benchmarks from files and folders (every .jsonl inside, in name order); names must not repeat."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".jsonl"))
            if not found:
                raise ValueError(f"{p}: a folder with no .jsonl files")
            files += found
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise ValueError(f"{p}: no such file or folder")
    benchmarks = [read_benchmark(f) for f in files]
    names = Counter(b.name for b in benchmarks)
    if any(c > 1 for c in names.values()):
        raise ValueError(f"two benchmarks are named {next(n for n, c in names.items() if c > 1)!r}: a benchmark is "
                         "named after its file")
    return benchmarks

# ----------------------------------------------------------------------------- measuring


def evaluate(model, tokenizer, benchmarks, solver_system, k=0, max_new_math=4096, max_new_choice=8192,
             generator=None, responses=None, **sampling):
    """{benchmark: {"kind", "all": {greedy, answered, [mean@k, maj@k], n}, "levels": {level: {...}}}}, in %.
    Greedy is the paper's figure; answered is the share of greedy responses with an answer the grader can read (a
    \\boxed{}, holding an option letter for multiple choice); with k > 0, k samples at temperature 1.0 (from
    `generator`) give mean@k and maj@k. Each greedy response is appended to the list `responses`, where given."""
    table = {}
    for b in benchmarks:
        choice = b.kind == "choice"
        questions = [choice_question(r, b.name) if choice else r["question"] for r in b.rows]
        system, max_new = (None, max_new_choice) if choice else (solver_system, max_new_math)
        answer = (lambda t, r: vote.extract_choice(t, len(r["options"]))) if choice else (
            lambda t, r: vote.extract_boxed(t))
        right = (lambda a, r: a == r["answer"]) if choice else (lambda a, r: vote.equivalent(a, r["answer"]))
        greedy = respond(model, tokenizer, system, questions, 1, 0.0, max_new, desc=f"{b.name} greedy", **sampling)
        sampled = respond(model, tokenizer, system, questions, k, 1.0, max_new, generator=generator,
                          desc=f"{b.name} @{k}", **sampling) if k else [[]] * len(questions)
        rows = {}
        for r, g, s in zip(b.rows, greedy, sampled):
            a = answer(g[0], r)
            if responses is not None:
                responses.append({"benchmark": b.name, **r, "response": g[0], "extracted": a, "right": right(a, r)})
            for key in ("all", r["level"]) if "level" in r else ("all",):
                c = rows.setdefault(key, Counter())
                c["greedy"] += right(a, r)
                c["answered"] += a is not None
                if k:
                    answers = [answer(t, r) for t in s]
                    c[f"mean@{k}"] += sum(right(a, r) for a in answers) / k
                    c[f"maj@{k}"] += right(vote.majority_vote(answers).label, r)
                c["n"] += 1
        scores = {key: {m: (100 * v / c["n"] if m != "n" else v) for m, v in c.items()} for key, c in rows.items()}
        table[b.name] = {"kind": b.kind, "all": scores.pop("all"), "levels": dict(sorted(scores.items()))}
    return table


def standard_error(percent, n):
    """The standard error of an accuracy of `percent` % over n questions, in points: 100 sqrt(p (1 - p) / n)."""
    p = percent / 100
    return 100 * math.sqrt(p * (1 - p) / n) if n else 0.0


def paired_change(before, after):
    """The change in accuracy from `before` to `after`, two lists of 0/1 marks of the same questions, in points, and
    its paired standard error: 100 sd(d) / sqrt(n), d = after - before per question (sd with n - 1). The questions
    both get right or both get wrong add nothing to it, so it is smaller than two independent errors combined."""
    d = [a - b for a, b in zip(after, before, strict=True)]
    n = len(d)
    mean = sum(d) / n if n else 0.0
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else 0.0
    return 100 * mean, 100 * sd / math.sqrt(n) if n else 0.0


def averages(table):
    """The paper's aggregates of greedy accuracy: MATH AVG, and Overall AVG where multiple choice was measured."""
    math = [t["all"]["greedy"] for t in table.values() if t["kind"] == "math"]
    general = [t["all"]["greedy"] for t in table.values() if t["kind"] == "choice"]
    out = {"MATH AVG": sum(math) / len(math)} if math else {}
    if general:
        out["Overall AVG"] = sum(general + ([out["MATH AVG"]] if math else [])) / (len(general) + bool(math))
    return out


def format_table(tables):
    """Markdown: one row per model (e.g. per iteration), one column per benchmark, then the aggregates."""
    names = list(dict.fromkeys(n for t in tables.values() for n in t))
    aggregates = list(dict.fromkeys(a for t in tables.values() for a in averages(t)))
    lines = ["| | " + " | ".join(names + aggregates) + " |", "|" + "---|" * (len(names) + len(aggregates) + 1)]
    for who, t in tables.items():
        avg = averages(t)
        cells = [f"{t[n]['all']['greedy']:.1f}" if n in t else "–" for n in names]
        cells += [f"{avg[a]:.1f}" if a in avg else "–" for a in aggregates]
        lines.append(f"| {who} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

# ----------------------------------------------------------------------------- converting the public files

# source: (question field, answer field or function, options field). Field names as in the files the official
# code loads (PAPER.md Sec. 6.1-6.2); where a source is published in two forms, both are accepted.
SOURCES = {
    "gsm8k": ("question", lambda r: r["answer"].split("#### ")[-1].strip(), None),
    "math500": (("problem", "Question"), ("answer", "Answer"), None),
    "amc": (("question", "problem"), "answer", None),
    "aime": (("problem", "question"), "answer", None),
    "minerva": ("problem", "answer", None),
    "olympiadbench": ("question", lambda r: r["final_answer"][0], None),
    "mmlu-pro": ("question", "answer", "options"),
    "supergpqa": ("question", "answer_letter", "options"),
}


def _field(row, spec):
    if callable(spec):
        return spec(row)
    for name in (spec,) if isinstance(spec, str) else spec:
        if name in row:
            return row[name]
    raise KeyError(spec if isinstance(spec, str) else " or ".join(spec))


def _answer(row, spec, options):
    """A math row's answer field, or else the last \\boxed{} of its worked `solution` (common copies of MATH and
    Minerva carry only the solution)."""
    try:
        return _field(row, spec)
    except KeyError:
        solution = row.get("solution")
        boxed = vote.extract_boxed(solution) if not options and isinstance(solution, str) else None
        if boxed is None:
            raise KeyError(f"{spec if isinstance(spec, str) else ' or '.join(spec)}, and no solution with a "
                           "\\boxed{} answer") from None
        return boxed


def _source_rows(path):
    """Rows of a downloaded file: JSONL, JSON (a list of rows), CSV, or Parquet where pyarrow is installed."""
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet
        except ImportError:
            raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow; rzero itself does not), "
                             "or download the file's JSON form") from None
        return pyarrow.parquet.read_table(path).to_pylist()
    with open(path, newline="") as f:
        if path.endswith(".csv"):
            return list(csv.DictReader(f))
        if path.endswith(".json"):
            data = json.load(f)
            data = data if isinstance(data, list) else next(
                (data[k] for k in ("data", "rows", "test", "train") if isinstance(data.get(k), list)), None)
            if data is None:
                raise ValueError(f"{path}: a JSON file of rows is a list, or holds one under \"data\", \"rows\", "
                                 "\"test\" or \"train\"")
            return data
        return [json.loads(line) for line in f if line.strip()]


def convert(source, src, dst):
    """Write `src`, a file downloaded from `source`'s public dataset, as this project's JSONL rows. Returns rows."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    q_spec, a_spec, o_spec = SOURCES[source]
    try:
        rows = _source_rows(src)
    except (json.JSONDecodeError, csv.Error, OSError) as e:
        raise ValueError(f"{src}: cannot be read ({e})") from None
    out = []
    for i, row in enumerate(rows, 1):
        try:
            item = {"question": str(_field(row, q_spec)).strip(), "answer": _answer(row, a_spec, o_spec)}
            if o_spec:
                item["options"] = [str(o) for o in _field(row, o_spec)]
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise ValueError(f"{src}: row {i} is not a {source} row (missing {e})") from None
        answer = item["answer"]
        item["answer"] = str(int(answer)) if isinstance(answer, float) and answer.is_integer() else str(answer).strip()
        _row_kind(item, f"{src}: row {i}")
        out.append(item)
    if not out:
        raise ValueError(f"{src}: no rows")
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    with open(f"{dst}.tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in out)
    os.replace(f"{dst}.tmp", dst)
    return len(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="a downloaded benchmark file -> this project's JSONL")
    c.add_argument("source", choices=list(SOURCES))
    c.add_argument("src", help="the downloaded file (.jsonl, .json, .csv, or .parquet with pyarrow)")
    c.add_argument("dst", help="the JSONL to write, named after the benchmark (e.g. evals/gsm8k.jsonl)")
    r = sub.add_parser("report", help="one model's table on benchmark files or folders (greedy, as the paper)")
    r.add_argument("model", help="a model folder or hub id")
    r.add_argument("benchmarks", nargs="+", help="JSONL files or folders of them")
    r.add_argument("--k", type=int, default=0, help="also mean@k and maj@k from k samples at temperature 1.0")
    r.add_argument("--max-new-tokens", type=int, default=4096, help="math")
    r.add_argument("--choice-max-new-tokens", type=int, default=8192, help="multiple choice")
    r.add_argument("--system", default=MATH_SYSTEM, help="the math system message (the Solver's)")
    r.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="the weights' dtype while "
                   "sampling (default bfloat16, as rzero's --sample-dtype)")
    r.add_argument("--compile", action="store_true", help="capture the decode step with torch.compile (CUDA graphs)")
    r.add_argument("--responses", metavar="FILE", help="write every greedy response here (JSONL)")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            print(f"{args.dst}: {convert(args.source, args.src, args.dst)} rows")
            return
        benchmarks = read_benchmarks(args.benchmarks)
    except (ValueError, OSError) as e:
        sys.exit(f"evaluation.py: {e}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype))
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except (OSError, ValueError) as e:
        sys.exit(f"evaluation.py: cannot load a model from {args.model!r}: {str(e).strip().splitlines()[0]}")
    responses = []
    table = evaluate(model.to(device).eval(), tokenizer, benchmarks, args.system, args.k, args.max_new_tokens,
                     args.choice_max_new_tokens, generator=torch.Generator(device).manual_seed(0),
                     responses=responses, compile=args.compile, kv_cache_gb=0)
    if args.responses:
        with open(args.responses, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in responses)
    print(format_table({args.model: table}), end="")
    for name, t in table.items():
        a = t["all"]
        print(f"{name}: greedy {a['greedy']:.1f}% ± {standard_error(a['greedy'], a['n']):.1f} (standard error, "
              f"{a['n']} questions), an answer in {a['answered']:.0f}% of the responses")


if __name__ == "__main__":
    main()
