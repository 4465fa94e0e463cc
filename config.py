"""The settings of an R-Zero run: one dataclass per role, the command line, and the checks every setting passes
before any work starts. Each default is the paper's where it gives one, else the official code's; `--help` says
whose, and PAPER.md Sec. 9 names the flag of the other value where they differ. OFFICIAL_FLAGS is the official run.
"""
import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass, field, fields

import torch

import evaluation
import toy
import vote


class SettingsError(ValueError):
    """Settings that cannot run: one line per problem, before anything is built, loaded or written."""


def _f(default, doc):
    return field(default=default, metadata={"help": doc})


@dataclass
class ChallengerConfig:
    steps: int = _f(5, "GRPO steps per iteration (paper; the official run keeps step 5 of 6)")
    prompts: int = _f(512, "prompts per step, all the same prompt (official rollout_batch_size)")
    group_size: int = _f(4, "questions sampled per prompt: the GRPO group (official rollout.n)")
    mini_batch: int = _f(16, "prompts per optimizer update (official, kept by its authors in #23; paper 128)")
    micro_batch: int = _f(8, "sequences per forward/backward pass (speed and memory only)")
    lr: float = _f(1e-6, "AdamW learning rate, constant (official)")
    kl_coef: float = _f(0.01, "k3 KL weight to the iteration's initial Challenger; 0: no reference model (official)")
    temperature: float = _f(1.0, "sampling temperature of the questions (official)")
    top_p: float = _f(0.99, "nucleus of the questions (official)")
    max_new_tokens: int = _f(4096, "longest Challenger output (official)")
    tau: float = _f(0.5, "BLEU-distance threshold of the repetition clustering (paper tau_BLEU)")
    lam: float = _f(1.0, "weight lambda of the repetition penalty; 0: none (paper)")
    official_reward: bool = _f(False, "the official reward: min(p,1-p) - r_rep, -1 for bad format or an empty box")
    target: float = _f(0.5, "the p_hat where the uncertainty reward peaks (paper 1/2; neither's otherwise)")
    answer_check: bool = _f(False, "bad format unless its own \\boxed{} answer is the Solver's majority (neither's)")


@dataclass
class SolverConfig:
    steps: int = _f(15, "GRPO steps per iteration (paper; the official run keeps step 15 of 20)")
    prompts: int = _f(512, "questions per step (official)")
    group_size: int = _f(5, "answers sampled per question: the GRPO group (official rollout.n)")
    mini_batch: int = _f(128, "questions per optimizer update: 4 updates a step (official; the paper's by #23)")
    micro_batch: int = _f(8, "sequences per forward/backward pass (speed and memory only)")
    lr: float = _f(1e-6, "AdamW learning rate, constant (official)")
    kl_coef: float = _f(0.01, "k3 KL weight to the iteration's initial Solver; 0: no reference model (official)")
    temperature: float = _f(1.0, "sampling temperature of the rollouts (official)")
    top_p: float = _f(0.99, "nucleus of the rollouts (official)")
    max_new_tokens: int = _f(4096, "longest Solver answer (official)")
    loss_agg: str = _f("token-mean", "token-mean (exact mini-batch mean; neither's) or seq-mean-token-mean (official)")


@dataclass
class LoopConfig:
    model: str = _f("", "base model: a local folder or hub id (empty: the embedded tiny world)")
    out: str = _f("runs/rzero", "output folder; rerunning the same command resumes there")
    iterations: int = _f(3, "co-evolution iterations K (paper 3; official 5; a larger K extends a finished run)")
    m: int = _f(10, "Solver answers per question, for the reward's vote and the labels' (paper)")
    label_m: int = _f(0, "Solver answers per candidate for its label; 0: --m (paper 10, official 9)")
    vote_temperature: float = _f(1.0, "temperature of the voting answers (official)")
    vote_top_k: int = _f(40, "top-k of the voting answers (official)")
    official_votes: bool = _f(False, "vote as the official code: no \\boxed{} is the answer \"None\", which can win")
    candidates: int = _f(8000, "questions the trained Challenger writes per iteration (paper N)")
    gen_temperature: float = _f(1.0, "temperature of the N candidates (official)")
    gen_top_p: float = _f(0.95, "nucleus of the N candidates (official)")
    band: tuple = _f((0.25, 0.75), "keep the candidates with LOW <= p_hat <= HIGH (paper; official 0.3 0.8)")
    max_classes: int = _f(0, "drop a candidate whose answers scatter into more classes than this; 0: off (neither's)")
    skip_zero_advantage: bool = _f(False, "drop rollouts with advantage 0 before GRPO's mini-batches (neither's)")
    eval_file: list = _f((), "a benchmark JSONL (math or multiple-choice rows) or a folder of them; repeatable")
    eval_k: int = _f(0, "samples per question for mean@k and maj@k besides greedy; 0: greedy only (official)")
    eval_max_new_tokens: int = _f(4096, "new tokens of a math answer in evaluation (official)")
    eval_choice_max_new_tokens: int = _f(8192, "new tokens of a multiple-choice answer in evaluation (official)")
    oracle_labels: bool = _f(False, "measurement only: train the Solver on exact answers, not the vote")
    question_file: str = _f("", "measurement only: iteration i's candidates are rows (i-1)N+1..iN of this JSONL")
    oracle_questions: bool = _f(False, "measurement only: candidates from the tiny world's generator, exact labels")
    base_challenger: bool = _f(False, "the paper's Base Challenger baseline: questions from the untrained base")
    device: str = _f("cuda" if torch.cuda.is_available() else "cpu", "torch device (cuda: each rank's own GPU)")
    dtype: str = _f("float32", "dtype of the trained weights and AdamW's states (official float32)")
    sample_dtype: str = _f("auto", "dtype of every sampling call: auto is bfloat16 on a GPU or a CPU with native bf16")
    max_rows: int = _f(512, "most sequences sampled at once per process")
    kv_cache_gb: float = _f(0.0, "the sampler's KV cache budget per process in GB; 0: 80%% of a GPU's free memory")
    compile: bool = _f(False, "capture the sampler's decode step with torch.compile (not yet measured on a GPU)")
    grad_checkpointing: bool = _f(False, "recompute layer activations in backward (official: on; memory, not results)")
    cpu_autocast: bool = _f(None, "GRPO in bfloat16 autocast on a CPU; auto: where the CPU has native bf16")
    report_to: str = _f("none", "stream metrics to none, tensorboard (OUT/tensorboard) or wandb (report.py)")
    force_lock: bool = _f(False, "take over the folder's lock from a run on another host known to be gone")
    seed: int = _f(0, "seed of every stage's randomness")


# The official run as far as it is offered (PAPER.md Sec. 9); every other default is already the official code's.
OFFICIAL_FLAGS = ("--iterations", "5", "--label-m", "9", "--band", "0.3", "0.8", "--challenger-official-reward",
                  "--official-votes", "--solver-loss-agg", "seq-mean-token-mean", "--grad-checkpointing")
ROLES = (("", LoopConfig, "loop"), ("challenger-", ChallengerConfig, "challenger"), ("solver-", SolverConfig, "solver"))


def flag(prefix, name):
    """The command-line flag of a setting: flag("solver-", "group_size") == "--solver-group-size"."""
    return "--" + prefix + name.replace("_", "-")


def native_bf16(capabilities):
    """True where the CPU computes bfloat16 in hardware (AMX or AVX512-BF16): there bfloat16 samples and trains faster
    than float32, elsewhere slower, 3x and over 10x on an AVX2 CPU (RESULTS.md Sec. 9.5). Arm's bf16 is unmeasured."""
    return bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))


def _shown(value, kind):
    """A default as --help shows it: on/off, LOW HIGH, or the value's repr."""
    if kind is bool:
        return "on" if value else "off"
    return " ".join(map(str, value)) if kind is tuple else repr(value)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bash run.sh",
        description="R-Zero (arXiv 2508.05004); with no --model, the tiny world and its preset (toy.PRESET), whose "
                    "values each option names after its own default. Each default says whose it is: the paper's, the "
                    "official code's, or neither's.")
    for prefix, cls, role in ROLES:
        group = parser.add_argument_group(cls.__name__)
        for f in fields(cls):
            name, doc, tiny = flag(prefix, f.name), f.metadata["help"], toy.PRESET[role].get(f.name)
            default = "auto" if f.default is None else _shown(f.default, f.type)
            if tiny is not None:
                default += f"; tiny world {_shown(tiny, f.type)}"
            if f.type is bool:
                group.add_argument(name, action=argparse.BooleanOptionalAction, help=f"{doc} (default {default})")
            elif f.type is list:
                group.add_argument(name, action="append", metavar="PATH", help=doc)
            elif f.type is tuple:
                group.add_argument(name, nargs=2, type=float, metavar=("LOW", "HIGH"),
                                   help=f"{doc} (default {default})")
            else:
                group.add_argument(name, type=f.type, metavar=f.type.__name__.upper(),
                                   help=f"{doc} (default {default})")
    return parser


def configs_from_args(argv=None, say=lambda line: print(line, file=sys.stderr), capabilities=None):
    """Defaults, then the tiny world's preset when no model is given, then the command line, then the automatic dtypes
    by the CPU's `capabilities` (said in one line). (LoopConfig, ChallengerConfig, SolverConfig); SettingsError lists
    every problem."""
    args = vars(build_parser().parse_args(argv))
    out = []
    for prefix, cls, preset in ROLES:
        values = {} if args["model"] else dict(toy.PRESET[preset])
        for f in fields(cls):
            given = args[flag(prefix, f.name)[2:].replace("-", "_")]  # argparse's dest
            if given is not None:
                values[f.name] = tuple(given) if f.type is tuple else given
        out.append(cls(**values))
    cfg, cpu = out[0], not out[0].device.startswith("cuda")
    auto = cpu and (cfg.sample_dtype == "auto" or cfg.cpu_autocast is None)
    native = cpu and native_bf16(capabilities or getattr(torch.cpu, "get_capabilities", dict)())  # old torch: none
    if cfg.sample_dtype == "auto":
        cfg.sample_dtype = "bfloat16" if native or not cpu else "float32"
    if cfg.cpu_autocast is None:
        cfg.cpu_autocast = native
    problems, warnings = check_settings(*out)
    if problems:
        raise SettingsError("\n".join(problems))
    if auto:
        say(f"rzero: this CPU {'computes' if native else 'does not compute'} bfloat16 natively: sampling in "
            f"{cfg.sample_dtype}, GRPO {'under bfloat16 autocast' if cfg.cpu_autocast else 'in float32'}")
    for w in warnings:
        say(f"rzero: warning: {w}")
    return out


_COUNT, _NONNEGATIVE = (lambda v: v >= 1, "at least 1"), (lambda v: v >= 0, "at least 0")
_UNIT = (lambda v: 0 < v <= 1, "in (0, 1]")
# The allowed values of each setting by field name (the same in every role); files are checked in check_settings.
RULES = {
    **dict.fromkeys(("iterations", "candidates", "max_rows", "steps", "prompts", "mini_batch", "micro_batch",
                     "max_new_tokens", "eval_max_new_tokens", "eval_choice_max_new_tokens"), _COUNT),
    "m": (lambda v: v >= 2, "at least 2"),
    "label_m": (lambda v: v == 0 or v >= 2, "0 (the same as --m) or at least 2"),
    "group_size": (lambda v: v >= 2, "at least 2 (a group of one has no baseline: GRPO learns nothing)"),
    **dict.fromkeys(("vote_temperature", "gen_temperature", "vote_top_k", "kl_coef", "lam", "kv_cache_gb",
                     "eval_k", "max_classes"), _NONNEGATIVE),
    "temperature": (lambda v: v > 0, "above 0 (GRPO divides the logits by it)"),
    **dict.fromkeys(("top_p", "gen_top_p", "tau"), _UNIT),
    "band": (lambda v: 0 <= v[0] <= v[1] <= 1, "two numbers LOW <= HIGH within [0, 1]"),
    "target": (lambda v: 0 < v < 1, "in (0, 1)"),
    "lr": (lambda v: v > 0, "above 0"),
    "loss_agg": (lambda v: v in ("token-mean", "seq-mean-token-mean"), "token-mean or seq-mean-token-mean"),
    "report_to": (lambda v: v in ("none", "tensorboard", "wandb"), "none, tensorboard or wandb"),
    "dtype": (lambda v: v in ("float32", "bfloat16"), "float32 or bfloat16"),
    "sample_dtype": (lambda v: v in ("auto", "float32", "bfloat16"), "auto, float32 or bfloat16"),
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
    if cfg.dtype == "bfloat16" and (lr := min(ch.lr, sv.lr)) < 1e-4:
        warnings.append(f"--dtype bfloat16 keeps no float32 master weights; at lr {lr:g} most AdamW updates are "
                        "below bfloat16's resolution and are lost")
    return problems, warnings
