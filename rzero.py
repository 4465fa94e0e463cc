"""R-Zero: a Challenger and a Solver co-evolve from one base LM with no data (arXiv 2508.05004).

    bash run.sh                               # the embedded tiny world, K = 3 iterations, on a CPU
    bash run.sh --model Qwen/Qwen3-4B-Base    # a real model with the paper's settings, on one GPU
    bash run.sh --nproc 8 --model Qwen/Qwen3-8B-Base --out runs/8b   # 8 GPUs: torchrun + FSDP2 (dist.py)

The map of the method, in the order of the paper:
- Challenger reward (Sec. 3.2; PAPER.md Sec. 2.4-2.6): `uncertainty_reward`, `bleu_matrix` and
  `average_linkage_clusters` -> `repetition_penalty`, `challenger_rewards` (with the format check, and with
  `challenger_answer` where --answer-check asks).
- Solver data set (Sec. 3.3; PAPER.md Sec. 3): `filter_for_solver` (the band LOW <= p_hat <= HIGH).
- Prompts (PAPER.md Sec. 2.1, 2.4): `PAPER_PROMPTS`, rendered by evaluation.render (chat template or plain
  fallback).
- One iteration (Sec. 3, Alg. 1; PAPER.md Sec. 1): `train_challenger` (GRPO, rewards from the current Solver's
  votes), `build_dataset` (N candidates, m votes each, the band), `train_solver` (GRPO toward the pseudo-labels),
  `evaluate_stage` (held-out, never trained on). `run` chains them for K iterations, each role warm-starting
  from its own previous checkpoint, and resumes after the last finished stage (each stage's record, `stage`).
Voting is vote.py, sampling sampler.py, GRPO grpo.py, processes and sharding dist.py, the benchmarks and their
grading evaluation.py, the settings and the command line config.py, the run folder's files runfolder.py, the tiny
world toy.py.

Knowing departures (PAPER.md Sec. 9 lists them all, with the flag of each other choice): the Challenger's own
\\boxed{} answer is ignored, as in the paper (the official code parses it wrongly, PAPER.md Sec. 2.3), unless
--answer-check asks for it; the Solver reward is the paper's binary match (no 0.1 format term); m = 10 for both
the reward and the labels (the official labelling uses 9); the band is the paper's 0.25 <= p_hat <= 0.75; an answer
without a \\boxed{} never wins a vote (the official code counts it as the answer "None"). The Challenger's
mini-batch is the official 16 prompts, which the authors stand by (#23), not the paper's 128.
config.OFFICIAL_FLAGS gives the official choices.
"""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import config
import dist
import evaluation
import grpo
import report
import sampler
import vote
from evaluation import encode, render, stop_ids
from runfolder import (RESUME, RZeroError, file_record, io_error, read_json, read_jsonl, record_mismatch,
                       release_lock, sha256_of, summarize, take_lock, write_json, write_jsonl)

# ----------------------------------------------------------------------------- Challenger reward (paper Sec. 3.2)


def uncertainty_reward(p_hat, official=False, target=0.5):
    """Paper Sec. 3.2: r_unc = 1 - 2|p_hat - 1/2|, in [0, 1]. official=True: min(p_hat, 1 - p_hat), in [0, 0.5].
    target (not in the paper; RESULTS.md Sec. 8) moves the tent's peak to p_hat = target, still 0 at 0 and 1, so the
    Challenger aims where the Solver is more often right; at 1/2 it is the paper's reward to the last bit."""
    if official:
        return min(p_hat, 1.0 - p_hat)
    return 1.0 - abs(p_hat - target) / (target if p_hat <= target else 1.0 - target)


def _ngram_overlaps(hyps, refs, n):
    """(H, R) clipped n-gram matches: sum over n-grams g of min(count_i(g), count_j(g)), hypothesis i, reference j.

    min(a, b) = #{k >= 1 : a >= k and b >= k}, so with one 0/1 column per (n-gram, k) the whole table is X_h @ X_r.T.
    Columns that no pair of distinct sentences shares add nothing and are left out. refs=None compares hyps with
    themselves (the diagonal is then not meaningful).
    """
    def keys(tokens):
        counts = Counter(tuple(tokens[j:j + n]) for j in range(len(tokens) - n + 1))
        return [(g, k) for g, c in counts.items() for k in range(1, c + 1)]
    keys_h = [keys(t) for t in hyps]
    keys_r = keys_h if refs is None else [keys(t) for t in refs]
    if refs is None:
        df = Counter(key for ks in keys_h for key in ks)
        shared = [key for key, f in df.items() if f >= 2]
    else:
        in_refs = {key for ks in keys_r for key in ks}
        shared = [key for key in dict.fromkeys(key for ks in keys_h for key in ks) if key in in_refs]
    column = {key: i for i, key in enumerate(shared)}
    out = torch.zeros(len(keys_h), len(keys_r), dtype=torch.float64)

    def cells(key_lists):  # the (row, column) of each 1 of the 0/1 matrix, and its row count
        rc = [(i, column[key]) for i, ks in enumerate(key_lists) for key in ks if key in column]
        return torch.tensor(rc, dtype=torch.long).reshape(-1, 2).T, len(key_lists)

    def block(cells, start, width):
        (r, c), rows = cells
        X = torch.zeros(rows, width)  # (rows, width) float32: exact for counts < 2^24
        sel = (c >= start) & (c < start + width)
        X[r[sel], c[sel] - start] = 1.0
        return X
    cells_h = cells(keys_h)
    cells_r = cells_h if refs is None else cells(keys_r)
    for start in range(0, len(column), 8192):  # column blocks bound the memory of the 0/1 matrices
        width = min(8192, len(column) - start)
        Xh = block(cells_h, start, width)
        out += (Xh @ (Xh if refs is None else block(cells_r, start, width)).T).double()
    return out.numpy()


def bleu_matrix(questions, references=None, max_n=4, epsilon=0.1):
    """(H, R) float64, [i, j] = nltk's sentence_bleu([r_j.split()], q_i.split(), smoothing method1): every question
    against every reference, or, with references=None, (B, B) among the questions themselves with the diagonal left
    at 0 (never used).

    nltk's definition: modified n-gram precisions p_n = clipped matches / max(1, hypothesis n-grams), n = 1..4,
    uniform weights; zero matches of order n become epsilon / denominator (method1); BLEU = 0 outright when no
    unigram matches; brevity penalty exp(1 - r/c) when the hypothesis (length c) is not longer than the
    reference (length r), and 0 for an empty hypothesis.
    """
    hyps = [q.split() for q in questions]
    refs = None if references is None else [q.split() for q in references]
    c = np.array([len(t) for t in hyps], dtype=np.float64)[:, None]
    r = (c.T if refs is None else np.array([len(t) for t in refs], dtype=np.float64)[None, :])
    log_p, unigram_matches = np.zeros((c.shape[0], r.shape[1])), None
    for n in range(1, max_n + 1):
        matches = _ngram_overlaps(hyps, refs, n)
        denominator = np.maximum(c - n + 1, 1.0)  # the hypothesis' n-gram count, at least 1
        log_p += np.log(np.where(matches > 0, matches, epsilon) / denominator) / max_n
        if n == 1:
            unigram_matches = matches
    bp = np.where(c > r, 1.0, np.exp(1.0 - r / np.maximum(c, 1.0)))
    bleu = np.where((unigram_matches > 0) & (c > 0), bp * np.exp(log_p), 0.0)
    if refs is None:
        np.fill_diagonal(bleu, 0.0)
    return bleu


def mean_pairwise_bleu(questions):
    """The mean BLEU over ordered pairs of distinct questions (0 for fewer than two): 1 when all are one string."""
    n = len(questions)
    return float(bleu_matrix(questions).sum() / (n * (n - 1))) if n > 1 else 0.0


def bleu_distance_matrix(questions):
    """Symmetric (B, B) d_ij = 1 - BLEU, diagonal 0. As the official code (caller_penalty.py), the value for a pair
    i < j is computed with q_i as hypothesis and q_j as reference, then mirrored into [j, i]."""
    d = np.triu(1.0 - bleu_matrix(questions), k=1)
    return d + d.T


def average_linkage_clusters(dist, threshold=0.5):
    """Cluster ids (B,) from average-linkage agglomerative clustering of a precomputed distance matrix, cut at
    `threshold`: two clusters end up together only through merges at linkage distance < threshold (strict), the
    clusters of sklearn's AgglomerativeClustering(distance_threshold=threshold, metric="precomputed",
    linkage="average"). Nearest-neighbour chain with Lance-Williams updates: O(B^2) time, not O(B^3).

    Average linkage never merges below an earlier merge (it is reducible), so the merges under the threshold are
    the same whatever order the chain finds them in, and the cut is a union of those merges.
    """
    B = len(dist)
    D = np.array(dist, dtype=np.float64)
    np.fill_diagonal(D, np.inf)
    size, alive = np.ones(B), np.ones(B, dtype=bool)
    parent = list(range(B))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    chain, active = [], B
    while active > 1:
        if not chain:
            chain.append(int(np.flatnonzero(alive)[0]))
        a = chain[-1]
        b = int(np.argmin(D[a]))
        if len(chain) > 1 and D[a, chain[-2]] <= D[a, b]:
            b = chain[-2]  # prefer the chain's previous element on ties, so the chain always ends
        if len(chain) > 1 and b == chain[-2]:
            chain = chain[:-2]
            height = D[a, b]
            merged = (size[a] * D[a] + size[b] * D[b]) / (size[a] + size[b])  # Lance-Williams, average linkage
            D[b], D[:, b] = merged, merged
            D[b, b] = np.inf
            D[a], D[:, a] = np.inf, np.inf
            size[b] += size[a]
            alive[a] = False
            active -= 1
            if height < threshold:
                parent[find(a)] = find(b)
        else:
            chain.append(b)
    roots = [find(i) for i in range(B)]
    ids = {root: k for k, root in enumerate(dict.fromkeys(roots))}
    return np.array([ids[root] for root in roots])


def repetition_penalty(questions, threshold=0.5, lam=1.0):
    """Paper Sec. 3.2: r_rep(x_i) = lambda |C_k| / B, C_k the BLEU cluster of x_i. Returns (r_rep, cluster ids)."""
    clusters = average_linkage_clusters(bleu_distance_matrix(questions), threshold)
    sizes = np.bincount(clusters)
    return lam * sizes[clusters] / len(questions), clusters


def memory_penalty(questions, bank, threshold=0.5, lam=1.0):
    """Not in the paper (--challenger-memory; after R-Diverse's Memory-Augmented Penalty, arXiv 2602.13103):
    r_mem(x_i) = lambda x the share of the bank's past questions b with 1 - BLEU(x_i, b) < threshold, x_i the
    hypothesis. The batch penalty only sees a drift toward one question once the batch has collapsed, when every
    reward of a group is 0 and no gradient leads back; the bank makes a question cost reward while it repeats the past
    and its group still has a spread."""
    if not bank:
        return np.zeros(len(questions))
    close = 1.0 - bleu_matrix(questions, bank) < threshold  # (B, M)
    return lam * close.mean(1)


def _words(text):
    return re.findall(r"\w+|[^\w\s]", text.lower())


def prompt_overlap(question, prompt, n=3):
    """The share of the question's word n-grams (lower case, punctuation apart; one gram of all its words when it has
    fewer than n) that the prompt's text holds: 1 for a copy of the prompt's placeholder or instructions. GSM8K's
    questions score at most 0.025 against the paper's prompt (RESULTS.md Sec. 9.6)."""
    words = _words(question)
    n = min(n, len(words))
    if not n:
        return 0.0
    reference, grams = _words(prompt), [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    held = {tuple(reference[i:i + n]) for i in range(len(reference) - n + 1)}
    return sum(g in held for g in grams) / len(grams)


@dataclass
class ChallengerReward:
    reward: float
    format_ok: bool  # a <question> block was found
    question: str | None
    p_hat: float
    label: str | None  # the Solver's majority answer: the question's pseudo-label
    r_unc: float
    r_rep: float
    cluster: int
    answer: str | None  # the Challenger's own \\boxed{} answer after its question
    agrees: bool  # that answer is equivalent to the Solver's majority
    copies_prompt: bool = False  # the question repeats the prompt (--challenger-copy-check): bad format
    scattered: bool = False  # its m answers fall into more than --challenger-max-classes classes
    filtered: bool = False  # the data set's filters would drop it, or an answer is text (--challenger-data-filters,
    # --challenger-text-votes): bad format
    r_mem: float = 0.0  # the memory bank's repetition penalty (--challenger-memory)


def challenger_answer(text):
    """The Challenger's own answer: the last \\boxed{} after its last </question> (the paper's prompt asks for one;
    the paper never reads it). None when there is none."""
    end = text.rfind("</question>") if isinstance(text, str) else -1
    return vote.extract_boxed(text[end:]) if end >= 0 else None


def challenger_question(text, prompt="", copy_check=0.0):
    """The question of a Challenger output and whether it copies the prompt: (None, False) without a <question>
    block, (None, True) for a block of which at least `copy_check` of the 3-grams are the prompt's (0: off)."""
    q = vote.extract_question(text)
    copy = q is not None and copy_check > 0 and prompt_overlap(q, prompt) >= copy_check
    return (None if copy else q), copy


def challenger_rewards(outputs, solver_answers, tau=0.5, lam=1.0, official=False, answer_check=False, target=0.5,
                       prompt="", copy_check=0.0, max_classes=0, bank=(), data_filters=False,
                       text_votes=False, format_penalty=0.0):
    """Rewards of a batch of Challenger outputs (raw text), given the Solver's m answers to each one's question.

    solver_answers[i] is the list of m extracted answers (None where the Solver gave none); it is ignored where
    the output has no question. Paper (default): r = 0 for bad format, else max(0, r_unc - r_rep).
    Five checks not in the paper (RESULTS.md Sec. 9.6), each off at 0, empty or False: a question that copies
    `prompt` (challenger_question) has no question, so bad format; a question whose m answers fall into more than
    max_classes classes earns what a bad format earns; r_mem against the `bank` of past questions is taken off with
    r_rep (memory_penalty); with data_filters, a question that the data set's filters drop (dataset_drop: a
    text-valued majority such as \\text{Yes}, a question naming a box) earns what a bad format earns, and with
    text_votes so does one to which any of the m answers contains "text". format_penalty > 0 (the paper's reward
    only): a bad format (no question, or a copy) earns -format_penalty instead, below the 0 of a gated question.
    official=True reproduces caller_penalty.py at HEAD: (min(p, 1-p) if the format is good else -1) - r_rep, no clamp,
    where the format is bad also when the output's last \\boxed{} is empty (a missing box passes: mathruler reads it
    as the string "None"). As in the official code, the batch clustering includes bad-format outputs as empty
    questions (B counts them).
    answer_check=True (not in the paper; RESULTS.md Sec. 8) scores a question whose Challenger answer is missing or
    differs from the Solver's majority as bad format: the Challenger is paid only for questions it can answer.
    """
    questions, copies = zip(*(challenger_question(o, prompt, copy_check) for o in outputs)) if outputs else ((), ())
    r_rep, clusters = repetition_penalty([q or "" for q in questions], tau, lam)
    r_mem = memory_penalty([q or "" for q in questions], bank, tau, lam)
    results = []
    for text, q, copy, answers, rep, mem, cluster in zip(outputs, questions, copies, solver_answers, r_rep, r_mem,
                                                         clusters):
        v = vote.majority_vote(answers) if q is not None else vote.Vote(None, 0.0, [], [])
        r_unc = uncertainty_reward(v.p_hat, official, target)
        answer = challenger_answer(text)
        agrees = q is not None and vote.equivalent(answer, v.label)  # a missing answer or label equals nothing
        scattered = q is not None and max_classes > 0 and len(v.sizes) > max_classes
        # text_votes asks the "text" filter of every answer, not only of the majority: a yes/no question's answers
        # split by form (8, \text{Yes}, \text{True}), and that split is what r_unc would pay for (RESULTS.md 9.6)
        filtered = q is not None and ((data_filters and dataset_drop(q, v) is not None)
                                      or (text_votes and any(map(text_valued, answers))))
        good = (q is not None and (agrees or not answer_check) and not scattered and not filtered
                and not (official and vote.extract_boxed(text) == ""))
        mem = float(mem) if q is not None else 0.0
        if official:
            reward = (r_unc if good else -1.0) - rep - mem
        else:
            # format_penalty > 0 keeps a gradient toward the format when the gates pay most questions 0
            reward = max(0.0, r_unc - rep - mem) if good else (0.0 if q is not None else -format_penalty)
        results.append(ChallengerReward(float(reward), q is not None, q, v.p_hat, v.label, r_unc, float(rep),
                                        int(cluster), answer, agrees, copy, scattered, filtered, mem))
    return results

# ----------------------------------------------------------------------------- Solver data set (paper Sec. 3.3)


@dataclass
class SolverExample:
    question: str
    label: str  # the majority answer of the Solver that labelled it
    p_hat: float
    challenger_answer: str | None = None  # the Challenger's own answer, where given


def text_valued(answer):
    """The official "text" rule, in any case: \\text{Yes}, or a unit in \\text{} (None is not text)."""
    return "text" in (answer or "").lower()


def dataset_drop(q, v, drop_no_answer=True, drop_proof=True, drop_box=True, drop_text=True):
    """The official upload.py and question_evaluate/evaluate.py's rule that drops question q with vote v from the
    data set, or None: no majority answer (empty or "None"), "证明" ("proof") in the question, "box" in the question,
    "text" in the answer (the last two in any case); each switchable here, checked in that order."""
    if drop_no_answer and (v.label is None or v.label.strip() in ("", "None")):
        return "no_answer"
    if drop_proof and "证明" in q:
        return "proof_in_question"
    if drop_box and "box" in q.lower():
        return "box_in_question"
    if drop_text and text_valued(v.label):
        return "text_in_answer"
    return None


def filter_for_solver(questions, votes, band=(0.25, 0.75), max_classes=0, challenger_answers=None,
                      answer_filter=False, drop_no_answer=True, drop_proof=True, drop_box=True, drop_text=True):
    """Keep (question, pseudo-label, p_hat) where LOW <= p_hat <= HIGH (paper Sec. 3.3: |p_hat - 1/2| <= 0.25).
    Two gates not in the paper (RESULTS.md Sec. 8): max_classes > 0 drops a question whose answers scatter into
    more distinct answers than that (ill-posed questions and wrong majorities scatter more); answer_filter drops a
    question whose majority is not the Challenger's own answer to it (challenger_answers, kept with each row).

    The official code's filters come first (dataset_drop, each switchable). Returns the kept rows and a Counter of
    how many each rule dropped (rules are applied in that order; a row counts once).
    """
    kept, dropped = [], Counter()
    for q, v, a in zip(questions, votes, challenger_answers or [None] * len(questions)):
        rule = "no_question" if q is None else dataset_drop(q, v, drop_no_answer, drop_proof, drop_box, drop_text)
        if rule:
            dropped[rule] += 1
        elif not vote.in_band(v.p_hat, band):
            dropped["outside_band"] += 1
        elif max_classes and len(v.sizes) > max_classes:
            dropped["scattered"] += 1
        elif answer_filter and not vote.equivalent(a, v.label):  # a missing answer equals nothing
            dropped["challenger_disagrees"] += 1
        else:
            kept.append(SolverExample(q, v.label, v.p_hat, a))
    return kept, dropped


# ----------------------------------------------------------------------------- prompts (PAPER.md Sec. 2.1, 2.4)


@dataclass
class Prompts:
    challenger_system: str
    challenger_user: str
    solver_system: str


PAPER_PROMPTS = Prompts(
    challenger_system=(
        "You are an expert competition-math problem setter.\n"
        "FIRST, in your private scratch-pad, think step-by-step to design a brand-new, non-trivial problem. "
        "The problem could come from any field of mathematics, including but not limited to algebra, geometry, "
        "number theory, combinatorics, prealgebra, probability, statistics, and calculus. Aim for a difficulty "
        "such that fewer than 30 % of advanced high-school students could solve it. Avoid re-using textbook "
        "clichés or famous contest problems.\n"
        "THEN, without revealing any of your private thoughts, output **exactly** the following two blocks:\n\n"
        "<question>\n{The full problem statement on one or more lines}\n</question>\n\n"
        "\\boxed{final_answer}\n\n"
        "Do NOT output anything else—no explanations, no extra markup."),
    challenger_user="Generate one new, challenging reasoning question now. Remember to format the output exactly "
                    "as instructed.",
    solver_system=evaluation.MATH_SYSTEM,  # the paper's evaluation asks with the Solver's system message
)


def limits(cfg):
    """The sampler's settings of precision, memory and speed, as dist.sample's keyword arguments."""
    return dict(dtype=sample_dtype(cfg), max_rows=cfg.max_rows, kv_cache_gb=cfg.kv_cache_gb,
                compile=cfg.compile)


# ----------------------------------------------------------------------------- files: atomic, resumable


def compute_dtype(cfg):
    return torch.bfloat16 if cfg.device.startswith("cuda") else getattr(torch, cfg.dtype)


def sample_dtype(cfg):
    return getattr(torch, cfg.sample_dtype)


def load_model(path, cfg, dtype=None):
    """A role's model on this rank: FSDP2-sharded inside a process group (dist.py), else whole on cfg.device.
    A trained model keeps cfg.dtype (the master weights, the default); a frozen one needs no master copy: the KL
    reference is held in the compute dtype, a model that only samples (a Solver that votes or answers, the
    Challenger that writes the candidates) in the sampling dtype."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # its loading bars would bury the stage lines
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or getattr(torch, cfg.dtype))
    except (OSError, ValueError, SafetensorError) as e:
        raise RZeroError(f"cannot load a model from {path!r}: {str(e).strip().splitlines()[0]}") from None
    model = dist.shard(model, compute_dtype(cfg)) if dist.active() else model.to(cfg.device)
    return model.eval(), tokenizer


def save_model(model, tokenizer, path):
    """A safetensors model folder that AutoModelForCausalLM.from_pretrained loads, written by rank 0 under a
    temporary name and renamed into place, so a killed run never leaves half a checkpoint. A sharded model is
    gathered first (every rank takes part) and saved whole, in its master dtype."""
    from safetensors import SafetensorError
    state = dist.full_state_dict(model) if dist.sharded(model) else None
    if not dist.is_main():
        return
    tmp = f"{path}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, state_dict=state)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, SafetensorError)):
            raise io_error(path, e) from None
        raise


def stage_seed(cfg, *names):
    """Each stage seeds its own randomness from the run seed and its name, so a resumed run redoes a stage
    exactly as an uninterrupted run would."""
    return zlib.crc32(repr((cfg.seed,) + names).encode())


def rank_generator(device, seed):
    """A generator of its own for each rank (the same seed would give every rank the same samples); rank 0 keeps
    `seed`, so one process draws exactly what it always did."""
    r = dist.rank()
    return torch.Generator(device).manual_seed(seed if r == 0 else zlib.crc32(repr((seed, r)).encode()))


def generator(cfg, *names):
    return rank_generator(cfg.device, stage_seed(cfg, *names))

# ----------------------------------------------------------------------------- the world: base model, prompts, test


@dataclass
class World:
    base: str  # base model folder or hub id
    prompts: Prompts
    test: list  # evaluation.Benchmark, for measurement only
    oracle: object = None  # question -> exact answer string or None (tiny world only; measurement and --oracle-labels)
    level: object = None  # question -> difficulty level or None (tiny world only)
    shape: object = None  # question -> its structure with the numbers blanked (tiny world only)
    question: object = None  # random.Random -> a fresh question from the world's own generator (tiny world only)
    base_id: str = ""  # what names the base in config.json besides --model: the tiny base's weights hash


def make_world(cfg):
    test = evaluation.read_benchmarks(cfg.eval_file) if cfg.eval_file else []
    if cfg.model:
        return World(cfg.model, PAPER_PROMPTS, test)
    import toy
    try:
        base = toy.base()
    except ValueError as e:
        raise RZeroError(str(e)) from None
    return World(base, Prompts(*toy.CHALLENGER, toy.SOLVER_SYSTEM), test or [toy.test_set()], toy.safe_answer,
                 toy.safe_level, toy.shape, lambda rng: toy.make_question(rng, rng.choice(toy.LEVELS)),
                 f"tiny world, weights sha256 {toy.weights_sha256(base)}")

# ----------------------------------------------------------------------------- the stages of one iteration


def vote_answers(solver, tokenizer, world, cfg, sv, questions, gen, m, desc=None):
    """The Solver's m answers to every question (None where there is no question); a progress bar if desc."""
    valid = [q for q in questions if q is not None]
    answers = iter(evaluation.solve(solver, tokenizer, world.prompts.solver_system, valid, m,
                                    cfg.vote_temperature, sv.max_new_tokens, top_k=cfg.vote_top_k, generator=gen,
                                    desc=desc, progress=desc is not None, **limits(cfg)))
    return [next(answers) if q is not None else None for q in questions]


def label_m(cfg):
    """How many answers vote on a candidate's pseudo-label: --label-m, or --m where it is 0."""
    return cfg.label_m or cfg.m


def official_votes(answers, labels):
    """m extracted answers as the official code votes on them (--official-votes): a missing or unclosed \\boxed{} is
    the string "None" (mathruler's extract_boxed_content), an answer like any other that can win the vote; the
    labelling script (question_evaluate/evaluate.py) also leaves empty answers out, so out of p_hat's denominator,
    where the reward server (vllm_service_init/start_vllm_server.py) keeps them."""
    answers = ["None" if a is None else a for a in answers]
    return [a for a in answers if a] if labels else answers


def label_votes(solver, tokenizer, world, cfg, sv, questions, gen, desc=None):
    """Paper Sec. 3.3: the Solver's answers to each candidate (label_m of them) and their votes, whose majority is
    the pseudo-label. Returns (answers, votes); a missing question has answers None and an empty vote."""
    answers = vote_answers(solver, tokenizer, world, cfg, sv, questions, gen, label_m(cfg), desc)
    if cfg.official_votes:
        answers = [official_votes(a, labels=True) if a is not None else None for a in answers]
    return answers, [vote.majority_vote(a) if a is not None else vote.Vote(None, 0.0, [], []) for a in answers]


def make_rollouts(prompts, responses, advantages, pad_id, device):
    """grpo.Rollouts from token-id lists: prompt + response per row, right-padded."""
    T = max(len(p) + len(r) for p, r in zip(prompts, responses))
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    attn, resp = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, :len(p) + len(r)] = torch.tensor(p + r)
        attn[i, :len(p) + len(r)] = 1
        resp[i, len(p):len(p) + len(r)] = 1
    return grpo.Rollouts(ids.to(device), attn.to(device), resp.to(device), advantages.float().to(device))


def diversity(world, tokenizer, questions, sample=512):
    """Distinct token 2-grams per question, mean pairwise BLEU (whitespace words, on up to `sample` questions) and,
    in the tiny world, distinct expression shapes: a Challenger that collapses onto one kind of question shows
    here (follow-up work, arXiv 2604.03472, found that collapse is what stalls the loop)."""
    qs = [q for q in questions if q]
    if not qs:
        return {"distinct_2grams_per_q": 0.0, "mean_pairwise_bleu": 0.0}
    bigrams = {tuple(ids[i:i + 2]) for ids in (encode(tokenizer, q) for q in qs) for i in range(len(ids) - 1)}
    out = {"distinct_2grams_per_q": len(bigrams) / len(qs), "mean_pairwise_bleu": mean_pairwise_bleu(qs[:sample])}
    if world.shape:
        out["distinct_shapes"] = len({world.shape(q) for q in qs})
    return out


def question_stats(world, rewards, band):
    valid = [r for r in rewards if r.format_ok]
    out = {"reward": float(np.mean([r.reward for r in rewards])), "format_ok": len(valid) / len(rewards),
           "r_rep": float(np.mean([r.r_rep for r in rewards])),
           "copies_prompt": float(np.mean([r.copies_prompt for r in rewards])),
           "scattered": float(np.mean([r.scattered for r in rewards])),
           "filtered": float(np.mean([r.filtered for r in rewards])),
           "r_mem": float(np.mean([r.r_mem for r in rewards]))}
    if len(valid) > 1:
        out["mean_pairwise_bleu"] = mean_pairwise_bleu([r.question for r in valid])
    if valid:
        out["p_hat"] = float(np.mean([r.p_hat for r in valid]))
        out["answer_agrees"] = float(np.mean([r.agrees for r in valid]))  # as in the data set's stats
        out["in_band"] = float(np.mean([vote.in_band(r.p_hat, band) for r in valid]))
        if world.level:
            levels = [world.level(r.question) for r in valid]
            out["difficulty"] = float(np.mean([lv for lv in levels if lv is not None] or [0]))
    return out


def past_questions(cfg, it):
    """The valid questions of the Challenger's earlier iterations in this run folder, oldest first: the start of
    --challenger-memory's bank."""
    bank = []
    for j in range(1, it):
        path = os.path.join(cfg.out, f"iter{j}", "challenger_samples.jsonl")
        bank += [r["question"] for r in read_jsonl(path) if r["question"]]
    return bank


def collapse_warning(where, stats):
    """One line on stderr when a batch's questions are near copies of each other (mean pairwise BLEU above 0.5, the
    clustering's threshold) or at least half of them copy the prompt: the collapse of RESULTS.md Sec. 9.4, which the
    batch penalty cannot undo. The data set stage checks too, since a collapse can come with a Challenger's last
    update (Sec. 9.6)."""
    bleu, copies = stats.get("mean_pairwise_bleu", 0.0), stats.get("copies_prompt", 0.0)
    if (bleu > 0.5 or copies >= 0.5) and dist.is_main():
        tqdm.write(f"rzero: warning: {where}: the Challenger's questions are near copies of each other (mean pairwise "
                   f"BLEU {bleu:.2f}) or of its prompt ({copies:.0%}); see --challenger-memory and "
                   f"--challenger-copy-check", file=sys.stderr)


def train_challenger(cfg, ch, sv, world, it, init, solver_dir, out_dir, tracker):
    """Paper Sec. 3.2: GRPO on the Challenger, rewarded for questions the current Solver is unsure of."""
    model, tok = load_model(init, cfg)
    solver, _ = load_model(solver_dir, cfg, sample_dtype(cfg))
    ref = load_model(init, cfg, compute_dtype(cfg))[0] if ch.kl_coef > 0 else None
    gcfg = grpo.GRPOConfig(lr=ch.lr, kl_coef=ch.kl_coef, temperature=ch.temperature,
                           mini_batch=ch.mini_batch * ch.group_size, micro_batch=ch.micro_batch,
                           skip_zero_advantage=cfg.skip_zero_advantage, grad_checkpointing=cfg.grad_checkpointing,
                           cpu_autocast=cfg.cpu_autocast)
    opt = grpo.make_optimizer(model, gcfg)
    prompt = encode(tok, render(tok, world.prompts.challenger_system, world.prompts.challenger_user))
    prompt_text = world.prompts.challenger_system + "\n" + world.prompts.challenger_user
    gen, rows, samples = generator(cfg, it, "challenger"), [], []
    bank = past_questions(cfg, it) if ch.memory else []
    for step in sampler.progress_bar(range(ch.steps), desc=f"iter {it}: Challenger GRPO", unit="step",
                                     enabled=dist.is_main()):
        t0 = time.time()
        outs = dist.sample(model, [prompt], n=ch.prompts * ch.group_size, max_new_tokens=ch.max_new_tokens,
                           temperature=ch.temperature, top_p=ch.top_p, stop_ids=stop_ids(model, tok), generator=gen,
                           progress=False, **limits(cfg))[0]
        texts = [tok.decode(o.tokens, skip_special_tokens=True) for o in outs]
        questions = [challenger_question(t, prompt_text, ch.copy_check)[0] for t in texts]
        answers = vote_answers(solver, tok, world, cfg, sv, questions, gen, cfg.m)
        if cfg.official_votes:
            answers = [official_votes(a, labels=False) if a is not None else None for a in answers]
        rewards = challenger_rewards(texts, answers, ch.tau, ch.lam, ch.official_reward,
                                     cfg.answer_check in ("reward", "both"), ch.target, prompt_text, ch.copy_check,
                                     ch.max_classes, bank[-ch.memory:] if ch.memory else (), ch.data_filters,
                                     ch.text_votes, ch.format_penalty)
        bank += [q for q in questions if q is not None]
        adv = grpo.group_advantages(torch.tensor([r.reward for r in rewards]).view(ch.prompts, ch.group_size))
        batch = make_rollouts([prompt] * len(outs), [o.tokens for o in outs], adv.flatten(), tok.pad_token_id,
                              cfg.device)
        stats = grpo.grpo_step(model, opt, batch, gcfg, ref)
        model.eval()
        rows.append({"step": step, **question_stats(world, rewards, cfg.band), **stats,
                     "seconds": round(time.time() - t0, 2)})
        collapse_warning(f"iter {it} step {step}", rows[-1])
        tracker.send("challenger", (it - 1) * ch.steps + step, rows[-1])
        # every response, trimmed: a run whose format rate is low shows what the model wrote instead
        samples += [{"step": step, "question": r.question, "answer": r.answer, "p_hat": r.p_hat, "label": r.label,
                     "reward": r.reward, "r_rep": r.r_rep, "r_mem": r.r_mem, "copies_prompt": r.copies_prompt,
                     "filtered": r.filtered, "response": text[:1000]} for r, text in zip(rewards, texts)]
    write_jsonl(os.path.join(os.path.dirname(out_dir), "challenger_samples.jsonl"), samples)
    write_jsonl(os.path.join(os.path.dirname(out_dir), "challenger_metrics.jsonl"), rows)
    save_model(model, tok, out_dir)
    first, last = rows[0], rows[-1]
    return (f"reward {first['reward']:.3f} -> {last['reward']:.3f}, in band {first.get('in_band', 0):.0%} -> "
            f"{last.get('in_band', 0):.0%}, format ok {last['format_ok']:.0%}")


def build_dataset(cfg, ch, sv, world, it, challenger_dir, solver_dir, path):
    """Paper Sec. 3.3: N candidate questions, m Solver answers each, keep the band, label by the majority."""
    t0 = time.time()
    model, tok = load_model(challenger_dir, cfg, sample_dtype(cfg))
    prompt = encode(tok, render(tok, world.prompts.challenger_system, world.prompts.challenger_user))
    gen = generator(cfg, it, "dataset")
    outs = dist.sample(model, [prompt], n=cfg.candidates, max_new_tokens=ch.max_new_tokens,
                       temperature=cfg.gen_temperature, top_p=cfg.gen_top_p, stop_ids=stop_ids(model, tok),
                       generator=gen, desc=f"iter {it}: candidate questions", **limits(cfg))[0]
    texts = [tok.decode(o.tokens, skip_special_tokens=True) for o in outs]
    prompt_text = world.prompts.challenger_system + "\n" + world.prompts.challenger_user
    questions, copies = zip(*(challenger_question(t, prompt_text, ch.copy_check) for t in texts))
    own = [challenger_answer(t) for t in texts]
    del model
    solver, tok = load_model(solver_dir, cfg, sample_dtype(cfg))
    _, votes = label_votes(solver, tok, world, cfg, sv, questions, gen, desc=f"iter {it}: labelling")
    kept, dropped = filter_for_solver(questions, votes, cfg.band, cfg.max_classes, own,
                                      cfg.answer_check in ("filter", "both"))
    if any(copies):  # counted apart from the missing questions: a copy of the prompt is its own failure
        dropped["copies_prompt"], dropped["no_question"] = sum(copies), dropped["no_question"] - sum(copies)
        dropped = +dropped  # a count of 0 leaves
    rows = []
    for ex in kept:
        row = {"question": ex.question, "label": ex.label, "p_hat": ex.p_hat,
               "challenger_answer": ex.challenger_answer}
        if world.oracle:  # measurement only: never read by training unless --oracle-labels
            row["answer"] = world.oracle(ex.question)
            row["label_correct"] = vote.equivalent(ex.label, row["answer"])
        rows.append(row)
    valid = [(q, v, a) for q, v, a in zip(questions, votes, own) if q is not None]
    stats = {"candidates": len(questions), "valid": len(valid), "kept": len(rows), "dropped": dict(dropped),
             "in_band": float(np.mean([vote.in_band(v.p_hat, cfg.band) for _, v, _ in valid])) if valid else 0.0,
             "answer_agrees": float(np.mean([vote.equivalent(a, v.label) for _, v, a in valid])) if valid else 0.0,
             **diversity(world, tok, [q for q, _, _ in valid])}
    if world.oracle and rows:
        stats["label_accuracy"] = float(np.mean([r["label_correct"] for r in rows]))
    if world.level and valid:
        stats["difficulty"] = float(np.mean([world.level(q) or 0 for q, _, _ in valid]))
    stats["seconds"] = round(time.time() - t0, 1)
    collapse_warning(f"iter {it} data set", {**stats, "copies_prompt": sum(copies) / len(copies)})
    write_jsonl(path, rows)
    write_json(path.replace(".jsonl", "_stats.json"), stats)
    acc = f", labels right {stats['label_accuracy']:.0%}" if "label_accuracy" in stats else ""
    return f"{len(valid)}/{len(questions)} valid, {stats['in_band']:.0%} in band, kept {len(rows)}{acc}"


def world_dataset(cfg, world, it, path):
    """--oracle-questions, a control for measurement: N fresh questions of the test's distribution (none of the
    test's own), labelled exactly. What the Solver recipe reaches on such data is the reference for what a
    Challenger and a vote give it."""
    t0 = time.time()
    rng, rows = random.Random(stage_seed(cfg, it, "dataset")), []
    held_out = {r["question"] for b in world.test for r in b.rows}
    while len(rows) < cfg.candidates:
        q = world.question(rng)
        if q not in held_out:
            answer = world.oracle(q)
            rows.append({"question": q, "label": answer, "answer": answer, "label_correct": True})
    stats = {"candidates": len(rows), "kept": len(rows), "label_accuracy": 1.0,
             "difficulty": float(np.mean([world.level(r["question"]) for r in rows])),
             "seconds": round(time.time() - t0, 1)}
    write_jsonl(path, rows)
    write_json(path.replace(".jsonl", "_stats.json"), stats)
    return f"{len(rows)} questions from the world's generator, exact labels"


def file_dataset(cfg, sv, world, it, solver_dir, path):
    """--question-file, a measurement that takes the Challenger out: iteration i's candidates are rows (i-1)N+1..iN
    of a file of questions with answers, labelled by the Solver's vote and kept by the band as build_dataset does,
    or labelled exactly (--oracle-labels). On one model the two give the ladder of RESULTS.md Sec. 9.6: what GRPO
    gains with exact labels, with vote labels, and then with the Challenger's own questions."""
    t0 = time.time()
    rows = evaluation.read_benchmark(cfg.question_file).rows
    if len(rows) < it * cfg.candidates:
        raise RZeroError(f"--question-file {cfg.question_file} has {len(rows)} rows: iteration {it} needs rows "
                         f"{(it - 1) * cfg.candidates + 1}-{it * cfg.candidates} (--candidates {cfg.candidates})")
    held_out = {r["question"] for b in world.test for r in b.rows}
    candidates = [r for r in rows[(it - 1) * cfg.candidates:it * cfg.candidates] if r["question"] not in held_out]
    dropped = Counter(in_test=cfg.candidates - len(candidates))
    if cfg.oracle_labels:
        kept = [{"question": r["question"], "label": r["answer"], "answer": r["answer"], "label_correct": True}
                for r in candidates]
    else:
        solver, tok = load_model(solver_dir, cfg, sample_dtype(cfg))
        _, votes = label_votes(solver, tok, world, cfg, sv, [r["question"] for r in candidates],
                               generator(cfg, it, "dataset"), desc=f"iter {it}: labelling")
        examples, gated = filter_for_solver([r["question"] for r in candidates], votes, cfg.band, cfg.max_classes)
        dropped.update(gated)
        answers = {r["question"]: r["answer"] for r in candidates}
        kept = [{"question": ex.question, "label": ex.label, "p_hat": ex.p_hat, "answer": answers[ex.question],
                 "label_correct": vote.equivalent(ex.label, answers[ex.question])} for ex in examples]
    stats = {"candidates": len(candidates), "kept": len(kept), "dropped": dict(+dropped),
             "label_accuracy": float(np.mean([r["label_correct"] for r in kept])) if kept else 0.0,
             "seconds": round(time.time() - t0, 1)}
    write_jsonl(path, kept)
    write_json(path.replace(".jsonl", "_stats.json"), stats)
    return (f"{len(kept)}/{len(candidates)} questions of {os.path.basename(cfg.question_file)} kept, labels right "
            f"{stats['label_accuracy']:.0%}")


def train_solver(cfg, sv, world, it, init, data_path, out_dir, tracker):
    """Paper Sec. 3.3: GRPO on the Solver, reward 1 when its \\boxed{} answer matches the pseudo-label."""
    with open(data_path) as f:
        data = [json.loads(line) for line in f]
    model, tok = load_model(init, cfg)
    if not data:  # documented rule: an empty band leaves the Solver as it was for this iteration
        save_model(model, tok, out_dir)
        return "the band filter kept no question: the Solver is carried over unchanged"
    ref = load_model(init, cfg, compute_dtype(cfg))[0] if sv.kl_coef > 0 else None
    gcfg = grpo.GRPOConfig(lr=sv.lr, kl_coef=sv.kl_coef, temperature=sv.temperature, loss_agg=sv.loss_agg,
                           mini_batch=sv.mini_batch * sv.group_size, micro_batch=sv.micro_batch,
                           skip_zero_advantage=cfg.skip_zero_advantage, grad_checkpointing=cfg.grad_checkpointing,
                           cpu_autocast=cfg.cpu_autocast)
    opt = grpo.make_optimizer(model, gcfg)
    rng, gen, order, rows = random.Random(stage_seed(cfg, it, "solver")), generator(cfg, it, "solver"), [], []
    for step in sampler.progress_bar(range(sv.steps), desc=f"iter {it}: Solver GRPO", unit="step",
                                     enabled=dist.is_main()):
        t0 = time.time()
        batch_rows = []
        while len(batch_rows) < min(sv.prompts, len(data)):
            if not order:
                order = rng.sample(range(len(data)), len(data))  # a new epoch, reshuffled
            batch_rows.append(data[order.pop()])
        prompts = [encode(tok, render(tok, world.prompts.solver_system, r["question"])) for r in batch_rows]
        groups = dist.sample(model, prompts, n=sv.group_size, max_new_tokens=sv.max_new_tokens,
                             temperature=sv.temperature, top_p=sv.top_p, stop_ids=stop_ids(model, tok),
                             generator=gen, progress=False, **limits(cfg))
        preds = [[vote.extract_boxed(tok.decode(s.tokens, skip_special_tokens=True)) for s in g] for g in groups]
        labels = [r["answer"] if cfg.oracle_labels else r["label"] for r in batch_rows]
        rewards = torch.tensor([[float(vote.equivalent(p, lab)) for p in ps] for ps, lab in zip(preds, labels)])
        adv = grpo.group_advantages(rewards)
        batch = make_rollouts([p for p in prompts for _ in range(sv.group_size)],
                              [s.tokens for g in groups for s in g], adv.flatten(), tok.pad_token_id, cfg.device)
        stats = grpo.grpo_step(model, opt, batch, gcfg, ref)
        model.eval()
        row = {"step": step, "reward": rewards.mean().item(), **stats, "seconds": round(time.time() - t0, 2)}
        if all("answer" in r for r in batch_rows):  # the tiny world's rows and a --question-file's
            row["label_accuracy"] = float(np.mean([r["label_correct"] for r in batch_rows]))
            row["true_reward"] = float(np.mean([vote.equivalent(p, r["answer"])
                                                for ps, r in zip(preds, batch_rows) for p in ps]))
        rows.append(row)
        tracker.send("solver", (it - 1) * sv.steps + step, row)
    write_jsonl(os.path.join(os.path.dirname(out_dir), "solver_metrics.jsonl"), rows)
    save_model(model, tok, out_dir)
    return f"reward {rows[0]['reward']:.3f} -> {rows[-1]['reward']:.3f} over {len(rows)} steps"


def evaluate_stage(cfg, world, model_dir, path):
    """Every benchmark with the paper's prompts and greedy decoding (evaluation.py), plus mean@k and maj@k when
    k > 0, graded by vote.equivalent on the last \\boxed{}: no math_verify and no GPT-4o recheck (PAPER.md Sec. 6)."""
    t0 = time.time()
    model, tok = load_model(model_dir, cfg, sample_dtype(cfg))
    responses = []
    table = evaluation.evaluate(model, tok, world.test, world.prompts.solver_system, cfg.eval_k,
                                cfg.eval_max_new_tokens, cfg.eval_choice_max_new_tokens, generator(cfg, "eval"),
                                responses=responses, **limits(cfg))
    averages = evaluation.averages(table)
    right = {b.name: [int(r["right"]) for r in responses if r["benchmark"] == b.name] for b in world.test}
    write_json(path, {"benchmarks": table, "averages": averages, "right": right,  # per question, for paired errors
                      "seconds": round(time.time() - t0, 1)})
    figures = [f"{name} {t['all']['greedy']:.1f}%" for name, t in table.items()]
    if len(table) > 1:
        figures += [f"{name} {v:.1f}%" for name, v in averages.items()]
    return "greedy " + ", ".join(figures)

# ----------------------------------------------------------------------------- the loop (paper Sec. 3, Alg. 1)


def log(line):
    if dist.is_main():
        print(line, flush=True)


def stage(cfg, record, label, outputs, fn, *args, inputs=None):
    """Run a stage unless its record says it is done; print a one-line summary either way. The record, written last
    and atomically, names every file of `outputs` with its size and hash, and `inputs`: what the stage's result
    depends on beyond config.json (the evaluation's settings, the --question-file's hash). A stage whose files or
    inputs do not match is said so in one line and redone. Rank 0 decides for all ranks, and all wait until rank 0
    has written the files."""
    done = read_json(record) if dist.is_main() and os.path.exists(record) else None
    old = done.get("inputs") or {} if done else {}
    changed = sorted(k for k in set(old) | set(inputs or {}) if old.get(k) != (inputs or {}).get(k))
    problem = done and (f"its inputs changed ({', '.join(changed)})" if changed else record_mismatch(cfg.out, done))
    if dist.broadcast(bool(done) and not problem):
        log(f"[{label}] done earlier: {done['summary'] if done else ''}")
        return
    if problem:
        log(f"[{label}] {problem}: redoing the stage")
    t0, cuda = time.time(), cfg.device.startswith("cuda")
    peak_memory(cuda, reset=True)
    summary = fn(*args)
    dist.barrier()
    seconds, peak = round(time.time() - t0, 1), peak_memory(cuda)
    if dist.is_main():
        write_json(record, {"summary": summary, "seconds": seconds, "peak_gb": peak, "inputs": inputs,
                            "files": file_record(cfg.out, outputs)})
    log(f"[{label}] {summary} ({seconds:.0f} s" + (f", peak {peak:.1f} GB)" if peak else ")"))


def peak_memory(cuda, reset=False):
    """The most memory this process held since the last reset, in GB (10^9 bytes): the GPU allocator's on a GPU,
    else the resident set (Linux's VmHWM, which /proc/self/clear_refs resets); None where neither can be read."""
    if cuda:
        if reset:
            torch.cuda.reset_peak_memory_stats()
        return round(torch.cuda.max_memory_allocated() / 1e9, 2)
    try:
        if reset:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        with open("/proc/self/status") as f:
            return round(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024 / 1e9, 2)
    except (OSError, StopIteration, ValueError):
        return None


def settings_diff(old, new):
    """Each setting that decides the results and differs between a run folder's config.json and this command."""
    if "defining" not in old:
        return ["its config.json was written by an older rzero: rerun it with that version, or pick another --out"]
    a, b = {**old["defining"], "base model": old["base"]}, {**new["defining"], "base model": new["base"]}
    return [f"{k}: this command {b.get(k)!r}, the run {a.get(k)!r}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)]


def eval_inputs(cfg, world):
    """What an evaluation's result depends on besides the model: the benchmarks' rows and the decoding settings."""
    rows = {b.name: hashlib.sha256(json.dumps(b.rows, sort_keys=True).encode()).hexdigest()[:16] for b in world.test}
    return {"benchmarks": rows, "k": cfg.eval_k, "max_new_tokens": cfg.eval_max_new_tokens,
            "choice_max_new_tokens": cfg.eval_choice_max_new_tokens}


def run(cfg, ch, sv):
    """Paper Alg. 1, resumable: each stage is skipped when its record matches (`stage`). A run folder resumes under
    any command that agrees with its config.json on the settings that decide the results (config.HOW_IT_RUNS lists
    those that may differ: the folder's place, the hardware, more iterations); a new --eval-file re-evaluates. One
    process writes a folder at a time: rank 0 holds its lock (runfolder.take_lock) from before the first write to
    the end."""
    world = make_world(cfg)
    try:
        os.makedirs(cfg.out, exist_ok=True)
    except OSError as e:
        raise io_error(cfg.out, e) from None
    lock, refused = None, None
    if dist.is_main():
        try:
            lock = take_lock(cfg.out, cfg.force_lock, say=lambda line: print(line, file=sys.stderr, flush=True))
        except RZeroError as e:
            refused = str(e)
    refused = dist.broadcast(refused)  # every rank leaves on rank 0's verdict
    if refused:
        raise RZeroError(refused)
    try:
        locked_run(cfg, ch, sv, world)
    finally:
        if lock:
            release_lock(cfg.out, lock)


def locked_run(cfg, ch, sv, world):
    settings = {"defining": config.defining(cfg, ch, sv), "base": world.base_id,
                "how_it_runs": {config.flag("", k): getattr(cfg, k) for k in sorted(config.HOW_IT_RUNS)}}
    config_path = os.path.join(cfg.out, "config.json")
    diff = settings_diff(read_json(config_path), settings) if dist.is_main() and os.path.exists(config_path) else []
    if dist.broadcast(diff):
        raise RZeroError("\n".join([f"{cfg.out} holds a run with other settings that decide its results:", *diff,
                                    "rerun with the run's values to resume it, or pick another --out"]))
    write_json(config_path, settings)
    tracker = report.Tracker(cfg.report_to, cfg.out, settings)
    try:
        iterations(cfg, ch, sv, world, tracker)
    finally:
        tracker.close()
    log(summarize(cfg))


def iterations(cfg, ch, sv, world, tracker):
    """The base's evaluation and K iterations of Alg. 1, each stage's metrics sent to the tracker (report.py): the
    per-step ones as they are made, the summaries once a stage is done (or found done)."""
    ev = eval_inputs(cfg, world)
    if world.test:
        os.makedirs(os.path.join(cfg.out, "base"), exist_ok=True)
        path = os.path.join(cfg.out, "base", "eval.json")
        stage(cfg, path.replace(".json", ".record.json"), "base: eval", [path], evaluate_stage, cfg, world,
              world.base, path, inputs=ev)
        tracker.evaluation(0, path)
    challenger, solver = world.base, world.base
    for it in range(1, cfg.iterations + 1):
        d = os.path.join(cfg.out, f"iter{it}")
        os.makedirs(d, exist_ok=True)
        at = lambda *names: [os.path.join(d, n) for n in names]  # noqa: E731
        if not (cfg.base_challenger or cfg.oracle_questions or cfg.question_file):
            stage(cfg, *at("challenger.record.json"), f"iter {it}: challenger",
                  at("challenger", "challenger_samples.jsonl", "challenger_metrics.jsonl"), train_challenger, cfg,
                  ch, sv, world, it, challenger, solver, *at("challenger"), tracker)
            tracker.steps("challenger", it, ch.steps, *at("challenger_metrics.jsonl"))
            challenger = os.path.join(d, "challenger")
        data = os.path.join(d, "dataset.jsonl")
        outputs = at("dataset.jsonl", "dataset_stats.json")
        if cfg.oracle_questions:
            stage(cfg, *at("dataset.record.json"), f"iter {it}: dataset", outputs, world_dataset, cfg, world, it,
                  data)
        elif cfg.question_file:
            stage(cfg, *at("dataset.record.json"), f"iter {it}: dataset", outputs, file_dataset, cfg, sv, world, it,
                  solver, data, inputs={"question_file": sha256_of(cfg.question_file)})
        else:
            stage(cfg, *at("dataset.record.json"), f"iter {it}: dataset", outputs, build_dataset, cfg, ch, sv,
                  world, it, challenger, solver, data)
        tracker.summary("dataset", it, *at("dataset_stats.json"))
        stage(cfg, *at("solver.record.json"), f"iter {it}: solver", at("solver", "solver_metrics.jsonl"),
              train_solver, cfg, sv, world, it, solver, data, *at("solver"), tracker)
        tracker.steps("solver", it, sv.steps, *at("solver_metrics.jsonl"))
        solver = os.path.join(d, "solver")
        if world.test:
            stage(cfg, *at("eval.record.json"), f"iter {it}: eval", at("eval.json"), evaluate_stage, cfg, world,
                  solver, *at("eval.json"), inputs=ev)
            tracker.evaluation(it, *at("eval.json"))


# ----------------------------------------------------------------------------- command line


def main(argv=None):
    """Errors and interruptions are one line from rank 0; every file written so far stays whole, so the same
    command resumes after the last finished stage."""
    if not dist.is_main():
        sys.stdout = open(os.devnull, "w")  # rank 0 speaks for the run (--help, the summary); stderr stays open
    try:
        configs = config.configs_from_args(argv, warn=lambda w: dist.is_main() and print(w, file=sys.stderr))
        try:
            dist.init(configs[0].device)
        except ValueError as e:
            raise RZeroError(str(e)) from None
        run(*configs)
    except (RZeroError, config.SettingsError, sampler.BudgetError) as e:
        if dist.is_main():
            lines = [f"--kv-cache-gb: {e}"] if isinstance(e, sampler.BudgetError) else str(e).splitlines()
            print("\n".join(f"rzero: {line}" for line in lines), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        if dist.is_main():
            print(f"\nrzero: {e.args[0] if e.args else 'interrupted'}; {RESUME}", file=sys.stderr)
        sys.exit(130)
    except OSError as e:  # a read or write that no stage turned into its own line
        if dist.is_main():
            print(f"rzero: {io_error(e.filename or 'a file', e)}", file=sys.stderr)
        sys.exit(1)
    except RuntimeError as e:
        if not _peer_failed(e):
            raise
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # torchrun's SIGTERM follows; it must not cut this line short
        if dist.is_main():
            detail = str(e).strip().splitlines()[0].split("] ", 1)[-1][:100]  # gloo prefixes its source file
            print(f"rzero: another process of this run stopped ({detail}); {RESUME}", file=sys.stderr)
        sys.exit(1)
    finally:
        dist.close()


def _peer_failed(e):
    """A collective failed because another rank died: NCCL raises DistError, gloo a RuntimeError that names it."""
    return isinstance(e, torch.distributed.DistError) or (dist.active() and "gloo" in str(e))


def _stop(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second SIGTERM must not interrupt the way out
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ  # set by torchrun in every process it starts
    raise KeyboardInterrupt("stopped by SIGTERM" + (" (torchrun sends it to every rank once one has failed; its "
                                                    "report names that rank)" if torchrun else ""))


def cli(argv=None):
    """The command: `main`, then the way out. Under torchrun a process leaves by os._exit with main's status once its
    streams are flushed: every file is written and the process group destroyed by then, and what the interpreter's
    teardown does after that (a gloo thread was seen to abort it, about 1 run in 20) must not turn a finished run
    into a failed one for a scheduler. Alone, the process exits as usual."""
    signal.signal(signal.SIGTERM, _stop)
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
