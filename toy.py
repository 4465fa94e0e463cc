"""The embedded tiny world: integer arithmetic, a character tokenizer and a ~1M-parameter Qwen3 base model.

These machines cannot download weights, so `bash run.sh` runs R-Zero here. Every question has an exact answer
(`answer`), which R-Zero never sees: it only measures it (`test_set` through evaluation.py, `calibration`).

The base model ships in toy-base/ (4 MB of safetensors, its tokenizer, and pretrain.json: the recipe, a hash of
the weights, the quality measured and the machine it was built on). The loop uses it as it is (`base`), so every
machine starts from the same model. `pretrain` made it from a synthetic corpus shaped like what a real base model
has seen:
- problem-setter documents: the Challenger's prompt, then `<question>EXPR</question>` and, on the next line, the
  bare answer `\\boxed{v}`, as the paper's Challenger prompt asks (what --answer-check reads);
- solutions: the Solver's prompt with a question, then either a worked solution (one operation reduced per
  line, leftmost first, then `\\boxed{v}`) or a bare `\\boxed{v}`. Both habits are correct; the bare one
  comes late in pretraining (`pretrain`).
Why two habits (RESULTS.md Sec. 3): a model that only ever works its answers makes correlated errors, so its
majority vote confirms them; a small model cannot compute a bare answer to a long question, so its bare guesses
scatter while its worked chains agree. The vote is then right where R-Zero uses it, and GRPO toward the vote can
teach the model to work its answers, a habit it already has.

The recipe (RESULTS.md Sec. 2 has what we measured): questions of 1-4 operations over operands 0-9, written
without spaces; 10% problem-setter documents; solutions all worked for the first 70% of the steps, half bare
after; documents packed 16 rows x 256 tokens per step, each attending only to itself; AdamW at 3e-3 with warm-up
and cosine decay, 1100 steps, float32. Consequence of writing questions without spaces: each question is one
whitespace word, and nltk's BLEU of two identical one-word sentences is 0.18 (method1 smoothing), so the paper's
repetition penalty never clusters two questions here and r_rep is 1/B for every question. Spaced questions made
the vote much less reliable (RESULTS.md Sec. 2).

    bash run.sh toy.py build [FOLDER]        # rebuild the base from the recipe (default cache/toy-base) and compare
                                             # it with the shipped one; FOLDER toy-base replaces the shipped one
    bash run.sh toy.py eval [MODEL]          # held-out greedy / mean@10 / maj@10 per level, calibration, parse rate
    bash run.sh toy.py benchmarks evals/toy  # the test set as benchmark files: one per level, and a multiple-choice one
"""
import argparse
import hashlib
import inspect
import json
import math
import os
import platform
import random
import re
import time

import torch

import evaluation
import sampler
import vote

LEVELS = (1, 2, 3, 4)  # number of operations in a question
MAX_OPERAND, MAX_ABS = 9, 99  # operands 0..9, every intermediate value within +-99
PREC = {"+": 1, "-": 1, "*": 2}
# Short prompts: in this world every prompt token costs CPU time and teaches nothing.
CHALLENGER = ("Write a question.", "Go.")  # (system, user)
SOLVER_SYSTEM = "Solve."

# The tiny world's preset: what a 2-core CPU runs in minutes (README's table). Besides sizes, learning rates 30-50x
# the paper's (a 1M-parameter model needs larger steps), one Solver update per step, 96 Challenger tokens, float32
# sampling and --skip-zero-advantage for speed, and the defence of the pseudo-labels that won there (RESULTS.md
# Sec. 8: iteration-3 labels right 27% -> 61%, held-out greedy no lower): the band 0.5-0.9, at most 4 distinct
# answers, the Challenger aiming at p_hat = 0.7. `--band 0.25 0.75 --max-classes 0 --challenger-target 0.5` runs the
# paper's loop here. Real models keep the paper's defaults.
PRESET = {
    "challenger": dict(prompts=16, group_size=4, mini_batch=4, micro_batch=16, lr=5e-5, max_new_tokens=96,
                       target=0.7),
    "solver": dict(steps=30, prompts=32, group_size=8, mini_batch=32, micro_batch=64, lr=3e-5, max_new_tokens=128),
    "loop": dict(candidates=1000, max_rows=1024, sample_dtype="float32", cpu_autocast=False,
                 skip_zero_advantage=True, eval_k=10, eval_max_new_tokens=128, eval_choice_max_new_tokens=128,
                 band=(0.5, 0.9), max_classes=4),
}
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
SPECIALS = ["<pad>", "<eos>", "<unk>"]
RECIPE = 4  # bumped whenever the corpus or pretraining changes (3: float32 on every CPU; 4: setter answers)
BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy-base")  # the shipped base model

# ----------------------------------------------------------------------------- expressions


def _rand_tree(rng, ops):
    """A random expression tree with `ops` operations: an int leaf, or (op, left, right)."""
    if ops == 0:
        return rng.randint(0, MAX_OPERAND)
    left = rng.randint(0, ops - 1)
    return (rng.choice("+-*"), _rand_tree(rng, left), _rand_tree(rng, ops - 1 - left))


def _value(t):
    if isinstance(t, int):
        return t
    a, b = _value(t[1]), _value(t[2])
    return a + b if t[0] == "+" else a - b if t[0] == "-" else a * b


def _fits(t):
    """Every intermediate value (and the result) within +-MAX_ABS."""
    return isinstance(t, int) or (_fits(t[1]) and _fits(t[2]) and abs(_value(t)) <= MAX_ABS)


def render(t, top=True):
    """Expression text with the fewest parentheses that still parse back to the same tree (left-associative)."""
    if isinstance(t, int):
        return str(t) if t >= 0 or top else f"({t})"
    op, a, b = t
    left, right = render(a, False), render(b, False)
    if not isinstance(a, int) and PREC[a[0]] < PREC[op]:
        left = f"({left})"
    if not isinstance(b, int) and PREC[b[0]] <= PREC[op]:
        right = f"({right})"
    return left + op + right


def _reduce_leftmost(t):
    """One step of working: the leftmost operation whose operands are both numbers is replaced by its value."""
    if isinstance(t[1], int) and isinstance(t[2], int):
        return _value(t)
    if not isinstance(t[1], int):
        return (t[0], _reduce_leftmost(t[1]), t[2])
    return (t[0], t[1], _reduce_leftmost(t[2]))


def worked_steps(t):
    steps = []
    while not isinstance(t, int):
        t = _reduce_leftmost(t)
        steps.append(render(t))
    return steps


def make_question(rng, level):
    """A question of `level` operations. Written without spaces: spaced questions (so that the whitespace BLEU of
    the repetition penalty would compare symbols, not whole questions) made a clearly worse base model."""
    while True:
        t = _rand_tree(rng, level)
        if _fits(t):
            return render(t)


def parse(text):
    """Tree of an arithmetic question (digits, + - *, parentheses, unary minus); ValueError if it is not one.

    A recursive-descent parser with a length cap, never eval: this is the exact checker of the tiny world.
    """
    s = "".join(str(text).split())
    if not s or len(s) > 200:
        raise ValueError(f"not an arithmetic question: {text!r}")
    if re.search(r"\d\s+\d", str(text)):
        raise ValueError(f"unexpected space between two numbers in {text!r}")
    pos = 0

    def peek():
        return s[pos] if pos < len(s) else ""

    def expr():
        nonlocal pos
        t = term()
        while peek() in ("+", "-"):
            op = s[pos]
            pos += 1
            t = (op, t, term())
        return t

    def term():
        nonlocal pos
        t = atom()
        while peek() == "*":
            pos += 1
            t = ("*", t, atom())
        return t

    def atom():
        nonlocal pos
        if peek() == "-":
            pos += 1
            a = atom()
            return -a if isinstance(a, int) else ("-", 0, a)
        if peek() == "(":
            pos += 1
            t = expr()
            if peek() != ")":
                raise ValueError(f"unbalanced parentheses in {text!r}")
            pos += 1
            return t
        start = pos
        while peek().isdigit():
            pos += 1
        if start == pos or pos - start > 6:
            raise ValueError(f"expected a number at position {start} of {text!r}")
        return int(s[start:pos])

    tree = expr()
    if pos != len(s):
        raise ValueError(f"unexpected {s[pos]!r} at position {pos} of {text!r}")
    return tree


def answer(question):
    """The exact value of a question, as a string (what vote.equivalent compares)."""
    return str(_value(parse(question)))


def _ops(t):
    return 0 if isinstance(t, int) else 1 + _ops(t[1]) + _ops(t[2])


def safe_answer(question):
    """The exact answer, or None for text that is not a question of this world (measurement only)."""
    try:
        return answer(question)
    except ValueError:
        return None


def safe_level(question):
    """Number of operations of a question (its difficulty level), or None."""
    try:
        return _ops(parse(question))
    except ValueError:
        return None


def shape(question):
    """The question's structure with every number blanked: '3+4*(2-1)' -> '#+#*(#-#)'."""
    return re.sub(r"\d+", "#", "".join(str(question).split()))


def test_set(n_per_level=100, seed=1234):
    """The fixed held-out labelled set, never used for training: a math benchmark with a level on each row."""
    rng = random.Random(seed)
    return evaluation.Benchmark("toy", "math", [{"question": q, "answer": answer(q), "level": str(lv)} for lv in LEVELS
                                                for q in (make_question(rng, lv) for _ in range(n_per_level))])

def write_benchmarks(folder, seed=0):
    """The test set as evaluation.py's files: level1.jsonl ... level4.jsonl (math), and choice.jsonl, every
    question with its answer among three wrong values (a format the base model never saw in pretraining)."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    rows = test_set().rows
    files = {f"level{lv}": [r for r in rows if r["level"] == str(lv)] for lv in LEVELS}
    files["choice"] = []
    for r in rows[::4]:
        options = {r["answer"]}
        while len(options) < 4:
            options.add(str(int(r["answer"]) + rng.choice([-10, -2, -1, 1, 2, 10])))
        options = rng.sample(sorted(options), 4)
        files["choice"].append({"question": r["question"], "options": options,
                                "answer": "ABCD"[options.index(r["answer"])]})
    for name, items in files.items():
        with open(os.path.join(folder, f"{name}.jsonl"), "w") as f:
            f.writelines(json.dumps({k: v for k, v in r.items() if k != "level"}) + "\n" for r in items)
    return sorted(files)

# ----------------------------------------------------------------------------- tokenizer, model, corpus


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))  # no merges: one token per character
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model(tokenizer, hidden=128, layers=4, heads=4, kv_heads=2, seed=0):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      head_dim=hidden // heads, max_position_embeddings=512, tie_word_embeddings=True,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return Qwen3ForCausalLM(cfg)


def solution(question, worked):
    """The text after the Solver's prompt: worked (one reduction per line) or bare."""
    lines = [f"={s}" for s in worked_steps(parse(question))[:-1]] if worked else []
    return "".join(f"{line}\n" for line in lines) + f"\\boxed{{{answer(question)}}}"


def corpus_document(rng, tokenizer, worked_share, setter_share=0.1):
    """One pretraining document as (prompt, completion); the loss is on the completion and its EOS only."""
    q = make_question(rng, rng.choice(LEVELS))
    if rng.random() < setter_share:
        return evaluation.render(tokenizer, *CHALLENGER), f"<question>{q}</question>\n{solution(q, False)}"
    return evaluation.render(tokenizer, SOLVER_SYSTEM, q), solution(q, rng.random() < worked_share)


def packed_batch(rng, tokenizer, rows, length, worked_share):
    """Documents packed end to end into (rows, length) with no padding, each document attending only to itself
    and counting its positions from 0 (as at inference). Returns ids, per-document positions, the additive
    block-diagonal causal mask (rows, 1, length, length) and labels (-100 outside completions)."""
    ids = torch.full((rows, length), tokenizer.pad_token_id)
    labels = torch.full((rows, length), -100)
    positions = torch.zeros(rows, length, dtype=torch.long)
    doc = torch.full((rows, length), -1)
    for r in range(rows):
        at, k = 0, 0
        while True:
            p, c = corpus_document(rng, tokenizer, worked_share)
            n = len(tokenizer.encode(p))
            seq = tokenizer.encode(p + c) + [tokenizer.eos_token_id]
            if at + len(seq) > length:
                break
            ids[r, at:at + len(seq)] = torch.tensor(seq)
            labels[r, at + n:at + len(seq)] = torch.tensor(seq[n:])
            positions[r, at:at + len(seq)] = torch.arange(len(seq))
            doc[r, at:at + len(seq)] = k
            at, k = at + len(seq), k + 1
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    visible = (doc[:, :, None] == doc[:, None, :]) & causal & (doc[:, :, None] >= 0)
    mask = torch.zeros(rows, 1, length, length).masked_fill_(~visible[:, None], torch.finfo(torch.float32).min)
    return ids, positions, mask, labels


def pretrain(out_dir, steps=1100, rows=16, length=256, lr=3e-3, warmup=30, bare_from=0.7, seed=1, model_kw=None,
             progress=True):
    """Pretrain the base model from scratch on the synthetic corpus; save model + tokenizer to out_dir.
    Solutions are all worked until `bare_from` of the steps, then half of them are bare: the chains are learned
    first, on their own, and the bare habit is added on top (world E of RESULTS.md Sec. 3, in one run). Mixing from
    the start left the chains weak: in-band majority right 52% instead of 71-89% (RESULTS.md Sec. 2).
    Seed 1, because pretraining seeds 0 / 1 / 2 gave bases whose in-band majority is right 71 / 89 / 85% of the
    time (RESULTS.md Sec. 2). float32 throughout: on a CPU with native bf16, autocast was slower than fp32 (0.41 s
    against 0.24 s a step), and on one without it 13 times slower. Returns the training loss of every step."""
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=seed, **(model_kw or {}))
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    bar = sampler.progress_bar(range(steps), desc="pretraining the tiny base model", unit="step", enabled=progress)
    losses = []
    for step in bar:
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))  # warm-up, cosine
        for g in opt.param_groups:
            g["lr"] = lr * scale
        worked_share = 1.0 if step < bare_from * steps else 0.5
        ids, positions, mask, labels = packed_batch(rng, tokenizer, rows, length, worked_share)
        loss = model(input_ids=ids, position_ids=positions, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # its "Writing model shards" bar ignores whether stderr is a terminal
    model.eval().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return losses


def weights_sha256(folder):
    """sha256 of the model's tensors (name, dtype, shape and bytes, in name order), not of the file's layout."""
    from safetensors.torch import load_file
    h = hashlib.sha256()
    for name, t in sorted(load_file(os.path.join(folder, "model.safetensors")).items()):
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def recipe():
    """What defines the base: the corpus version and pretrain()'s settings (its defaults)."""
    settings = {k: p.default for k, p in inspect.signature(pretrain).parameters.items()
                if k not in ("out_dir", "progress")}
    return {"recipe": RECIPE, **settings}


def build(out_dir):
    """Pretrain the base from the recipe into out_dir, measure it, and write pretrain.json last (the recipe, the
    weights' hash, the quality, the machine), so a folder whose build was cut short is never taken for a base."""
    meta = os.path.join(out_dir, "pretrain.json")
    if os.path.exists(meta):
        os.remove(meta)
    t0 = time.time()
    pretrain(out_dir)
    seconds = round(time.time() - t0, 1)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out_dir).eval(), AutoTokenizer.from_pretrained(out_dir)
    info = {**recipe(), "weights_sha256": weights_sha256(out_dir), "quality": quality(model, tokenizer),
            "built_on": machine(), "seconds": seconds}
    with open(meta, "w") as f:
        json.dump(info, f, indent=1)
    return info


def machine():
    """The CPU (its model name, and whether it has native bf16), torch and the thread count: what a rebuild's float
    sums depend on."""
    cpu = platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        info = open("/proc/cpuinfo").read()
        name = re.search(r"model name\s*:\s*(.+)", info)
        bf16 = ", avx512_bf16" if "avx512_bf16" in info else ", no native bf16"
        cpu = (name.group(1).strip() if name else cpu) + bf16
    return {"cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads()}


def base():
    """The shipped base model's folder, checked against its pretrain.json: the recipe of this code and the hash of
    the weights that were measured. ValueError, saying how to mend it, for anything else."""
    meta = os.path.join(BASE, "pretrain.json")
    mend = "restore it with `git checkout -- toy-base`, or rebuild it with `bash run.sh toy.py build toy-base`"
    if not os.path.exists(meta) or not os.path.exists(os.path.join(BASE, "model.safetensors")):
        raise ValueError(f"the tiny world's base model is missing from {BASE}: {mend}")
    with open(meta) as f:
        info = json.load(f)
    if {k: info.get(k) for k in recipe()} != recipe():
        raise ValueError(f"{BASE} was built with another recipe than this code's: {mend}")
    if weights_sha256(BASE) != info["weights_sha256"]:
        raise ValueError(f"{BASE}/model.safetensors is not the model its pretrain.json describes (damaged?): {mend}")
    return BASE


# ----------------------------------------------------------------------------- measurement


def calibration(model, tokenizer, n_questions=600, levels=(2, 3, 4), m=10, temperature=1.0, seed=7):
    """Accuracy of the majority answer against the truth, by p_hat, on fresh questions: does the vote deserve
    trust where R-Zero uses it (0.25 <= p_hat <= 0.75)? Returns {p_hat: (count, accuracy)} and the in-band rate."""
    rng = random.Random(seed)
    questions = [make_question(rng, levels[i % len(levels)]) for i in range(n_questions)]
    answers = evaluation.solve(model, tokenizer, SOLVER_SYSTEM, questions, m, temperature, 160,
                          generator=torch.Generator().manual_seed(seed), desc="calibration")
    bins, band = {}, [0, 0]
    for q, ans in zip(questions, answers):
        v = vote.majority_vote(ans)
        right = vote.equivalent(v.label, answer(q))
        b = bins.setdefault(round(v.p_hat, 2), [0, 0])
        b[0] += 1
        b[1] += right
        if vote.in_band(v.p_hat):
            band[0] += 1
            band[1] += right
    table = {p: (c, r / c) for p, (c, r) in sorted(bins.items())}
    return table, (band[1] / band[0] if band[0] else float("nan")), band[0]


def challenger_parse_rate(model, tokenizer, n=200, temperature=1.0, seed=3):
    """Share of sampled Challenger outputs that hold a <question> the checker accepts, and the questions."""
    ids = tokenizer.encode(evaluation.render(tokenizer, *CHALLENGER))
    out = sampler.sample(model, [ids], n=n, max_new_tokens=80, temperature=temperature,
                         stop_ids=[tokenizer.eos_token_id], generator=torch.Generator().manual_seed(seed),
                         desc="challenger")[0]
    questions = [vote.extract_question(tokenizer.decode(s.tokens, skip_special_tokens=True)) for s in out]
    return sum(safe_answer(q) is not None for q in questions) / n


def quality(model, tokenizer):
    """The figures pretrain.json records and the tests check: held-out greedy per level (as the loop's base eval
    measures it, 128 new tokens) and the accuracy of the in-band majority vote (`calibration`)."""
    table = evaluation.evaluate(model, tokenizer, [test_set()], SOLVER_SYSTEM, 0, 128)["toy"]
    _, in_band, n_band = calibration(model, tokenizer)
    return {"greedy": {lv: r["greedy"] for lv, r in [("all", table["all"]), *table["levels"].items()]},
            "in_band_majority_right": round(100 * in_band, 1), "in_band_questions": n_band}


def print_report(model, tokenizer, vote_temperature=1.0):
    table = evaluation.evaluate(model, tokenizer, [test_set()], SOLVER_SYSTEM, 10, 128,
                                generator=torch.Generator().manual_seed(0))["toy"]
    print("held-out test set (accuracy %; mean@10 and maj@10 at temperature 1.0):")
    print("level    greedy  mean@10  maj@10    n")
    for lv, r in [("all", table["all"]), *table["levels"].items()]:
        print(f"{lv:6s} {r['greedy']:7.1f} {r['mean@10']:8.1f} {r['maj@10']:7.1f} {r['n']:4d}")
    cal, in_band, n_band = calibration(model, tokenizer, temperature=vote_temperature)
    print(f"calibration, levels 2-4, m=10 at T={vote_temperature}: p_hat -> (questions, majority accuracy)")
    print("  " + "  ".join(f"{p:.1f}: ({c}, {a:.2f})" for p, (c, a) in cal.items()))
    print(f"  in band 0.25 <= p_hat <= 0.75: {n_band} questions, majority right {100 * in_band:.1f}%")
    print(f"Challenger parse rate (T=1.0): {100 * challenger_parse_rate(model, tokenizer):.1f}%")


def compare_with_shipped(folder):
    """One line: whether a rebuilt base equals the shipped one, and by how much it differs if not."""
    from safetensors.torch import load_file
    with open(os.path.join(BASE, "pretrain.json")) as f:
        shipped = json.load(f)
    if weights_sha256(folder) == shipped["weights_sha256"]:
        return f"the rebuild equals the shipped base ({BASE}) bit for bit"
    a, b = load_file(os.path.join(folder, "model.safetensors")), load_file(os.path.join(BASE, "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a) if a.keys() == b.keys() else float("nan")
    return (f"the rebuild differs from the shipped base ({BASE}, built on {shipped['built_on']['cpu']}, torch "
            f"{shipped['built_on']['torch']}): largest weight difference {worst:.3g}. Another CPU kind or torch "
            "version sums in another order; the loop uses the shipped base")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "eval", "benchmarks"])
    parser.add_argument("folder", nargs="?", help="build: where the rebuilt base goes (default cache/toy-base); "
                                                  "eval: the model (default the shipped toy-base); benchmarks: "
                                                  "where the files go")
    parser.add_argument("--vote-temperature", type=float, default=1.0)
    args = parser.parse_args()
    if args.command == "benchmarks":
        if not args.folder:
            raise SystemExit("toy.py: benchmarks needs the folder to write them to")
        print(f"{args.folder}: {', '.join(write_benchmarks(args.folder))}")
        return
    if args.command == "build":
        folder = args.folder or os.path.join("cache", "toy-base")
        info = build(folder)
        print(f"base model in {folder}: {info['seconds']:.0f} s of pretraining; greedy {info['quality']['greedy']}, "
              f"in-band majority right {info['quality']['in_band_majority_right']}%")
        if os.path.abspath(folder) != BASE and os.path.exists(os.path.join(BASE, "pretrain.json")):
            print(compare_with_shipped(folder))
        return
    folder = args.folder or BASE
    if not os.path.isdir(folder):
        raise SystemExit(f"toy.py: no model folder at {folder}")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    print_report(model, AutoTokenizer.from_pretrained(folder), args.vote_temperature)


if __name__ == "__main__":
    main()
