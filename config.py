"""The settings of an R-Zero run: one dataclass per role, the tiny world's preset, the command line, and the checks
every setting passes before any work starts.

The defaults are the paper's where it gives one, else the official code's, and `--help` says which for each
(PAPER.md Sec. 2.2, 3 and 4); where the two differ, PAPER.md Sec. 9 names the flag that gives the other value.
`python rzero.py --help` (or `bash run.sh --help`) lists every flag; OFFICIAL_FLAGS is the official run's.
`HOW_IT_RUNS` splits the settings into those that only decide how a run goes and those that decide what it computes:
a run folder resumes under a command that agrees with it on the second kind (rzero.run).
"""
import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass, field, fields

import torch

import evaluation
import vote


class SettingsError(ValueError):
    """Settings that cannot run: one line per problem, before anything is built, loaded or written."""


def _f(default, doc):
    return field(default=default, metadata={"help": doc})


@dataclass
class ChallengerConfig:
    steps: int = _f(5, "GRPO steps per iteration (paper App. A; the official run keeps global_step_5 of 6)")
    prompts: int = _f(512, "prompts per step, all the same prompt (official code: rollout_batch_size)")
    group_size: int = _f(4, "questions sampled per prompt: the GRPO group (official code: rollout.n)")
    mini_batch: int = _f(16, "prompts per optimizer update (official code, which its authors keep in their issue "
                             "#23: 32 updates a step; the paper says 128)")
    micro_batch: int = _f(8, "sequences per forward/backward pass (speed and memory only)")
    lr: float = _f(1e-6, "AdamW learning rate, constant (official code)")
    kl_coef: float = _f(0.01, "k3 KL weight to the iteration's initial Challenger, 0: no reference model (official "
                              "code)")
    temperature: float = _f(1.0, "sampling temperature of the questions (official code)")
    top_p: float = _f(0.99, "nucleus sampling of the questions (official code)")
    max_new_tokens: int = _f(4096, "longest Challenger output (official code)")
    tau: float = _f(0.5, "BLEU-distance threshold of the repetition clustering (paper tau_BLEU)")
    lam: float = _f(1.0, "weight lambda of the repetition penalty, 0: no penalty (paper)")
    official_reward: bool = _f(False, "the official code's reward instead of the paper's: min(p,1-p) - r_rep, -1 "
                                      "for a missing question or an empty \\boxed{}, no clamp")
    target: float = _f(0.5, "the p_hat at which the uncertainty reward peaks (paper 1/2; a higher one aims the "
                            "Challenger where the vote is more often right, RESULTS.md Sec. 8)")
    copy_check: float = _f(0.5, "a question of which at least this share of word 3-grams is in the Challenger's "
                                "prompt (its placeholder or instructions, copied) is bad format; 0: off, the paper's "
                                "check, which takes any text in the block (RESULTS.md Sec. 9.6)")
    memory: int = _f(0, "the repetition penalty also sees up to this many questions of the earlier Challenger steps "
                        "and iterations, a memory bank after R-Diverse's (arXiv 2602.13103): r_mem = lambda x the "
                        "share of the bank within BLEU distance tau; 0: off, the paper's batch-only penalty")
    max_classes: int = _f(0, "a question whose m answers fall into more than this many distinct answers earns what a "
                             "bad format earns (the label gate of --max-classes, in the reward); 0: off, the paper")
    data_filters: bool = _f(False, "a question that the data set's filters drop (a text-valued majority such as "
                                   "\\text{Yes}, a question naming a box) earns what a bad format earns: the "
                                   "Challenger is not paid for questions the data set throws away (RESULTS.md Sec. "
                                   "9.6); off: the paper")
    text_votes: bool = _f(False, "a question to which any of the m answers contains \"text\" (\\text{Yes}, "
                                 "\\text{True}, a unit) earns what a bad format earns: the data set's text filter, "
                                 "which reads only the majority, asked of every answer, because a yes/no question's "
                                 "answers split by form, not by difficulty (RESULTS.md Sec. 9.6); off: the paper")
    format_penalty: float = _f(0.0, "a bad format (no question, or a copy of the prompt) earns minus this, where the "
                                    "paper gives 0: below the 0 that the gates above pay, so format keeps a "
                                    "gradient when they pay most questions nothing (RESULTS.md Sec. 9.6); 0: the paper")


@dataclass
class SolverConfig:
    steps: int = _f(15, "GRPO steps per iteration (paper App. A; the official run keeps global_step_15 of 20)")
    prompts: int = _f(512, "questions per step (official code)")
    group_size: int = _f(5, "answers sampled per question: the GRPO group (official code: rollout.n)")
    mini_batch: int = _f(128, "questions per optimizer update: 4 updates a step (paper, as #23 confirms, and official "
                              "code)")
    micro_batch: int = _f(8, "sequences per forward/backward pass (speed and memory only)")
    lr: float = _f(1e-6, "AdamW learning rate, constant (official code)")
    kl_coef: float = _f(0.01, "k3 KL weight to the iteration's initial Solver, 0: no reference model (official code)")
    temperature: float = _f(1.0, "sampling temperature of the rollouts (official code)")
    top_p: float = _f(0.99, "nucleus sampling of the rollouts (official code)")
    max_new_tokens: int = _f(4096, "longest Solver answer (official code)")
    loss_agg: str = _f("token-mean", "token-mean (the exact mean over a mini-batch's tokens) or seq-mean-token-mean "
                                     "(the official Solver's, whose micro-batches hold one sequence)")


@dataclass
class LoopConfig:
    model: str = _f("", "base model: a local folder or hub id (empty: the embedded tiny world)")
    out: str = _f("runs/rzero", "output folder; rerunning the same command resumes there")
    iterations: int = _f(3, "co-evolution iterations K (paper 3; a finished run is extended by a larger K)")
    m: int = _f(10, "Solver answers per question for the vote of the Challenger's reward and, unless --label-m, of "
                    "the labels (paper; the official reward server also takes 10)")
    label_m: int = _f(0, "Solver answers per candidate for its pseudo-label, 0: --m (paper 10; the official "
                         "labelling script takes 9)")
    vote_temperature: float = _f(1.0, "temperature of the m voting answers (official code)")
    vote_top_k: int = _f(40, "top-k of the voting answers (official code)")
    official_votes: bool = _f(False, "vote as the official code: a missing \\boxed{} is the answer \"None\", a "
                                     "class that can win; the labels' p_hat leaves empty answers out of its "
                                     "denominator (the rewards' keeps them)")
    candidates: int = _f(8000, "questions the trained Challenger writes per iteration (paper N)")
    gen_temperature: float = _f(1.0, "temperature of the N candidate questions (official code)")
    gen_top_p: float = _f(0.95, "nucleus of the N candidate questions (official code)")
    band: tuple = _f((0.25, 0.75), "keep the questions with LOW <= p_hat <= HIGH (paper; official code 0.3 0.8 with "
                                   "--label-m 9; 0 1 keeps everything)")
    max_classes: int = _f(0, "validity gate: drop a candidate whose m answers fall into more than this many distinct "
                             "answers (0: off; in neither, RESULTS.md Sec. 8)")
    answer_check: str = _f("off", "the Challenger's own \\boxed{} answer against the Solver's majority (in neither, "
                                  "RESULTS.md Sec. 8): filter drops a candidate where they differ, reward pays the "
                                  "Challenger nothing for such a question, both does the two")
    skip_zero_advantage: bool = _f(False, "drop the rollouts whose advantage is 0 before GRPO's mini-batches form: "
                                          "faster, but fewer updates a step, and their KL and tokens leave the loss "
                                          "(the official code keeps them)")
    eval_file: list = field(default_factory=list, metadata={"help": (
        "a benchmark: a JSONL of math or multiple-choice rows, or a folder of them; may be given several times "
        "(tiny world: its own test set)")})
    eval_k: int = _f(0, "samples per question for mean@k and maj@k besides greedy (0: greedy only, as the paper)")
    eval_max_new_tokens: int = _f(4096, "new tokens of an evaluation answer, math (official code)")
    eval_choice_max_new_tokens: int = _f(8192, "new tokens of an evaluation answer, multiple choice (official code)")
    oracle_labels: bool = _f(False, "measurement only: train the Solver on exact answers, not the vote")
    question_file: str = _f("", "measurement only: a JSONL of {question, answer} rows replaces the Challenger and its "
                                "candidates; iteration i takes rows (i-1)N+1..iN (N = --candidates), labelled by the "
                                "Solver's vote and the band, or exactly with --oracle-labels")
    oracle_questions: bool = _f(False, "measurement only: the Solver trains on N fresh questions from the tiny "
                                       "world's own generator with exact answers (no Challenger, no vote)")
    base_challenger: bool = _f(False, "the paper's baseline: no Challenger training, questions from the base")
    device: str = _f("cuda" if torch.cuda.is_available() else "cpu", "torch device (cuda: each rank's own GPU)")
    dtype: str = _f("float32", "dtype of the trained weights and AdamW's states, float32 (as the official trainer) "
                               "or bfloat16; GPUs compute in bfloat16 either way (bfloat16 here is pure-bf16 "
                               "training: most updates at lr 1e-6 fall below its resolution)")
    sample_dtype: str = _f("bfloat16", "dtype of the copy every sampling call runs on (questions, votes, rollouts, "
                                       "evaluation), bfloat16 or float32; training keeps --dtype. On a 2-core CPU, "
                                       "Qwen2.5-0.5B samples 3x faster in bfloat16 (RESULTS.md Sec. 9)")
    max_rows: int = _f(512, "most sequences sampled at once per process")
    kv_cache_gb: float = _f(0.0, "the sampler's KV cache budget per process, in GB (10^9 bytes); 0: 80%% of the GPU's "
                                 "free memory when a sampling call starts, no bound on CPU")
    compile: bool = _f(False, "capture the sampler's decode step with torch.compile (CUDA graphs on GPUs; not yet "
                               "measured on one); a capture that fails says so in one line and samples eagerly")
    grad_checkpointing: bool = _f(False, "recompute layer activations in backward (the model's own switch)")
    cpu_autocast: bool = _f(True, "on a CPU, GRPO's forward and backward in bfloat16 autocast, float32 master weights "
                                  "and AdamW states kept, as GPUs always do: 1.9x faster on Qwen2.5-0.5B, gradients "
                                  "at cosine 0.999 to float32's (RESULTS.md Sec. 9.6); the tiny world's preset turns "
                                  "it off")
    report_to: str = _f("none", "stream every metric as it is written: none, tensorboard (to OUT/tensorboard) or "
                                "wandb (WANDB_MODE=offline needs no account); report.py")
    force_lock: bool = _f(False, "take over the run folder's lock although its holder runs on another host (only "
                                 "when that run is known to be gone)")
    seed: int = _f(0, "seed of every stage's randomness")


# The tiny world's preset: what a 2-core CPU runs in minutes. The paper's values stay the defaults for real models.
# Besides sizes: learning rates 30-50x the paper's (a 1M-parameter model needs larger steps; 5e-5 is what let the
# Challenger move its questions into the band within 5 steps), and one Solver update per step, as in the probes of
# RESULTS.md Sec. 3 (the paper takes 4); 96 Challenger tokens hold a long question and its answer. README.md's
# results table was measured with this preset.
# Not the paper's either, and the one change of method: the defence against falling pseudo-labels that won here
# (RESULTS.md Sec. 8: iteration-3 labels right 27% -> 61%, held-out greedy no lower), the band 0.5-0.9, at most 4
# distinct answers and a Challenger aiming at p_hat = 0.7. Real models keep the paper's loop: nothing was measured
# on one. `--band 0.25 0.75 --max-classes 0 --challenger-target 0.5` runs the paper's loop here. For speed, and so
# that its figures stay those measured: the tiny base samples in float32 (bfloat16 is barely faster for 1M
# parameters, RESULTS.md Sec. 9) and GRPO skips the rollouts whose advantage is 0.
TOY_PRESET = {
    "challenger": dict(prompts=16, group_size=4, mini_batch=4, micro_batch=16, lr=5e-5, max_new_tokens=96,
                       target=0.7),
    "solver": dict(steps=30, prompts=32, group_size=8, mini_batch=32, micro_batch=64, lr=3e-5, max_new_tokens=128),
    "loop": dict(candidates=1000, max_rows=1024, sample_dtype="float32", cpu_autocast=False,
                 skip_zero_advantage=True, eval_k=10, eval_max_new_tokens=128, eval_choice_max_new_tokens=128,
                 band=(0.5, 0.9), max_classes=4),
}

# Settings that decide how or where a run goes, not what it computes: a run folder may be resumed, moved or extended
# under other values of these. The row limits, the device and the process count batch the sampled rows otherwise,
# and the device and the sampling dtype round them otherwise, so a stage run under other values draws other
# samples: the same experiment, not the same bits. Evaluation settings are recorded with each evaluation instead
# (a change evaluates the checkpoints again). Every other setting decides the results and must match to resume.
HOW_IT_RUNS = {"out", "iterations", "device", "sample_dtype", "max_rows", "kv_cache_gb", "compile",
               "grad_checkpointing", "cpu_autocast", "report_to", "force_lock"}
EVALUATION = {"eval_file", "eval_k", "eval_max_new_tokens", "eval_choice_max_new_tokens"}
# The official run (PAPER.md Sec. 9) as far as it is offered: every default not named here is already the official
# code's, or the paper's where the official code agrees with it.
OFFICIAL_FLAGS = ("--label-m", "9", "--band", "0.3", "0.8", "--challenger-official-reward", "--official-votes",
                  "--solver-loss-agg", "seq-mean-token-mean")
# The settings classes with the prefix of their flags and their key in TOY_PRESET.
ROLES = (("", LoopConfig, "loop"), ("challenger-", ChallengerConfig, "challenger"), ("solver-", SolverConfig, "solver"))


def flag(prefix, name):
    """The command-line flag of a setting: flag("solver-", "group_size") == "--solver-group-size"."""
    return "--" + prefix + name.replace("_", "-")


def defining(cfg, ch, sv):
    """{flag: value} of every setting that decides what the run computes (JSON values, as config.json holds them)."""
    return {flag(prefix, f.name): list(v) if isinstance(v := getattr(c, f.name), tuple) else v
            for (prefix, _, _), c in zip(ROLES, (cfg, ch, sv)) for f in fields(c)
            if c is not cfg or f.name not in HOW_IT_RUNS | EVALUATION}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bash run.sh",
        description="R-Zero: a Challenger and a Solver co-evolve from one base model with no data. With no --model "
                    "it runs the embedded tiny world, whose preset overrides some sizes and adds a defence of the "
                    "pseudo-labels (TOY_PRESET in config.py). The defaults shown are the paper's where it gives one, "
                    "else the official code's; each setting says which.")
    for prefix, cls, _ in ROLES:
        group = parser.add_argument_group(cls.__name__)
        for f in fields(cls):
            name = flag(prefix, f.name)
            if f.type is bool:
                group.add_argument(name, action=argparse.BooleanOptionalAction, default=None,
                                   help=f"{f.metadata['help']} (default {'on' if f.default else 'off'})")
            elif f.type is list:
                group.add_argument(name, action="append", default=None, metavar="PATH", help=f.metadata["help"])
            elif f.type is tuple:
                group.add_argument(name, nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                                   help=f"{f.metadata['help']} (default {' '.join(map(str, f.default))})")
            else:
                group.add_argument(name, type=f.type, default=None, metavar=f.type.__name__.upper(),
                                   help=f"{f.metadata['help']} (default {f.default!r})")
    return parser


def configs_from_args(argv=None, warn=lambda line: print(line, file=sys.stderr)):
    """Defaults (the paper's), then the tiny world's preset when no model is given, then the command line.
    Returns (LoopConfig, ChallengerConfig, SolverConfig); SettingsError lists every problem."""
    args = vars(build_parser().parse_args(argv))
    out = []
    for prefix, cls, preset in ROLES:
        values = {} if args["model"] else dict(TOY_PRESET[preset])
        for f in fields(cls):
            given = args[flag(prefix, f.name)[2:].replace("-", "_")]  # argparse's dest
            if given is not None:
                values[f.name] = tuple(given) if f.type is tuple else given
        out.append(cls(**values))
    problems, warnings = check_settings(*out)
    if problems:
        raise SettingsError("\n".join(problems))
    for w in warnings:
        warn(f"rzero: warning: {w}")
    return out


_COUNT = (lambda v: v >= 1, "at least 1")
_NONNEGATIVE = (lambda v: v >= 0, "at least 0")
_UNIT = (lambda v: 0 < v <= 1, "in (0, 1]")
# The allowed values of every setting, by field name (a name means the same thing in every role). Booleans and
# the seed take any value; --model, --out and --eval-file are files, checked in check_settings.
RULES = {
    **dict.fromkeys(("iterations", "candidates", "max_rows", "steps", "prompts", "mini_batch", "micro_batch",
                     "max_new_tokens", "eval_max_new_tokens", "eval_choice_max_new_tokens"), _COUNT),
    "m": (lambda v: v >= 2, "at least 2"),
    "label_m": (lambda v: v == 0 or v >= 2, "0 (the same as --m) or at least 2"),
    "group_size": (lambda v: v >= 2, "at least 2 (a group of one has no baseline: GRPO learns nothing)"),
    **dict.fromkeys(("vote_temperature", "gen_temperature", "vote_top_k", "kl_coef", "lam", "kv_cache_gb",
                     "eval_k", "max_classes", "memory", "format_penalty"), _NONNEGATIVE),
    "temperature": (lambda v: v > 0, "above 0 (GRPO divides the logits by it)"),
    **dict.fromkeys(("top_p", "gen_top_p", "tau"), _UNIT),
    "copy_check": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "band": (lambda v: 0 <= v[0] <= v[1] <= 1, "two numbers LOW <= HIGH within [0, 1]"),
    "target": (lambda v: 0 < v < 1, "in (0, 1)"),
    "lr": (lambda v: v > 0, "above 0"),
    "loss_agg": (lambda v: v in ("token-mean", "seq-mean-token-mean"), "token-mean or seq-mean-token-mean"),
    "answer_check": (lambda v: v in ("off", "filter", "reward", "both"), "off, filter, reward or both"),
    "report_to": (lambda v: v in ("none", "tensorboard", "wandb"), "none, tensorboard or wandb"),
    **dict.fromkeys(("dtype", "sample_dtype"), (lambda v: v in ("float32", "bfloat16"), "float32 or bfloat16")),
    "device": (lambda v: v == "cpu" or v.split(":")[0] == "cuda", "cpu or cuda"),
}


def check_settings(cfg, ch, sv):
    """Every problem with the settings (one line each) and warnings for valid settings that leave a stage
    useless, found before anything is built, loaded or written."""
    problems = []
    for (prefix, _, _), c in zip(ROLES, (cfg, ch, sv)):
        for f in fields(c):
            value = getattr(c, f.name)
            ok, allowed = RULES.get(f.name, (lambda v: True, ""))
            if not ok(value):
                problems.append(f"{flag(prefix, f.name)} must be {allowed} (got {value!r})")
        if c is not cfg and c.mini_batch >= 1 and c.prompts % c.mini_batch:
            problems.append(f"{flag(prefix, 'prompts')} ({c.prompts}) must be a multiple of "
                            f"{flag(prefix, 'mini_batch')} ({c.mini_batch})")
    low, high = cfg.band
    m, name = (cfg.label_m, "--label-m") if cfg.label_m else (cfg.m, "--m")
    if m >= 2 and low <= high and not any(vote.in_band(k / m, cfg.band) for k in range(1, m + 1)):
        problems.append(f"{name} {m} leaves no p_hat = k/{m} inside the band {low:g} <= p_hat <= {high:g}: "
                        f"raise {name} or widen --band")
    if ch.official_reward and ch.target != 0.5:
        problems.append("--challenger-target is a setting of the paper's reward, not of --challenger-official-reward")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        problems.append(f"--device {cfg.device}: this machine has no GPU")
    if cfg.model and not os.path.isdir(cfg.model) and (os.path.exists(cfg.model) or cfg.model[0] in "./~"):
        problems.append(f"--model {cfg.model!r} is not a model folder")
    elif cfg.model and os.path.isdir(cfg.model) and not os.path.isfile(os.path.join(cfg.model, "config.json")):
        problems.append(f"--model {cfg.model!r} holds no config.json: not a transformers model folder")
    if cfg.model and cfg.oracle_questions:
        problems.append("--oracle-questions needs the tiny world's own generator of questions")
    if cfg.model and cfg.oracle_labels and not cfg.question_file:
        problems.append("--oracle-labels needs exact answers: the tiny world's, or a --question-file's")
    if cfg.question_file and (cfg.oracle_questions or cfg.base_challenger):
        problems.append("--question-file replaces the Challenger: it goes with neither --oracle-questions nor "
                        "--base-challenger")
    if cfg.question_file:
        try:
            if evaluation.read_benchmark(cfg.question_file).kind != "math":
                problems.append(f"--question-file {cfg.question_file}: rows of a question and an answer, not options")
        except (OSError, ValueError) as e:
            problems.append(f"--question-file {e}")
    if not cfg.out or (os.path.exists(cfg.out) and not os.path.isdir(cfg.out)):
        problems.append(f"--out {cfg.out!r} must be a folder")
    if cfg.report_to in ("tensorboard", "wandb") and importlib.util.find_spec(cfg.report_to) is None:
        problems.append(f"--report-to {cfg.report_to} needs the {cfg.report_to} package: pip install "
                        f"{cfg.report_to} (rzero itself does not)")
    if cfg.eval_file:
        try:
            evaluation.read_benchmarks(cfg.eval_file)
        except ValueError as e:
            problems.append(f"--eval-file {e}")

    warnings = []
    if (cfg.vote_temperature == 0 or cfg.vote_top_k == 1) and cfg.band[1] < 1 and not cfg.oracle_questions:
        warnings.append("greedy votes (--vote-temperature 0 or --vote-top-k 1) give m equal answers, so p_hat = 1: "
                        "the band keeps no question and every Challenger reward is 0")
    if cfg.gen_temperature == 0 and not cfg.oracle_questions:
        warnings.append("--gen-temperature 0: the N candidates are one question written N times")
    lr = min(ch.lr, sv.lr)
    if cfg.dtype == "bfloat16" and lr < 1e-4:
        warnings.append(f"--dtype bfloat16 keeps no float32 master weights; at lr {lr:g} most AdamW updates are "
                        "below bfloat16's resolution and are lost")
    return problems, warnings
