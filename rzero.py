"""R-Zero: a Challenger and a Solver co-evolve from one base LM with no data (arXiv 2508.05004).

    bash run.sh                               # the embedded tiny world, K = 3 iterations, on a CPU
    bash run.sh --model Qwen/Qwen3-4B-Base    # a real model with the paper's settings, on one GPU
    bash run.sh --nproc 8 --model Qwen/Qwen3-8B-Base --out runs/8b   # 8 GPUs: torchrun + FSDP2 (dist.py)

This file is the method, in the paper's order: Algorithm 1 (`r_zero`), the Challenger's reward (Sec. 3.2:
`uncertainty_reward`, `repetition_penalty`, `challenger_rewards`), the Solver's data set (Sec. 3.3:
`filter_for_solver`), the prompts, then the four stages of an iteration (`train_challenger`, `build_dataset`,
`train_solver`, `evaluate`). Beside it: vote.py (the vote), bleu.py, grpo.py, sampler.py, dist.py (processes,
sharding), evaluation.py, config.py, runfolder.py (files, resume, the lock), models.py (loading, saving, seeds),
command.py (one-line errors), report.py (metrics, tables), toy.py (the tiny world).

Departures on purpose (PAPER.md Sec. 9 lists them all, with the flag of each other choice): the Challenger's own
\\boxed{} answer is ignored, as in the paper, unless --challenger-answer-check; the Solver reward is the paper's
binary match (no 0.1 format term); m = 10 for the reward and the labels (the official labelling uses 9); an answer
without a \\boxed{} never wins a vote (the official code counts it as the answer "None"). The Challenger's
mini-batch is the official 16 prompts, which the authors stand by (#23), not the paper's 128. config.OFFICIAL_FLAGS
gives the official choices.
"""
import hashlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

import bleu
import command
import config
import dist
import evaluation
import grpo
import report
import runfolder
import sampler
import vote
from evaluation import encode, render, stop_ids
from models import compute_dtype, generator, limits, load_model, sample_dtype, save_model, stage_seed
from runfolder import (DATASET, DATASET_STATS, EVAL, SAMPLES, RZeroError, metrics_file, read_jsonl, sha256_of,
                       write_json, write_jsonl)

# ----------------------------------------------------------------------------- Algorithm 1 (paper Sec. 3)


def r_zero(run):
    """Paper Alg. 1: K iterations, each training the Challenger against the current Solver, building the Solver's
    data set from the new Challenger's questions and the current Solver's votes, then training the Solver on it.
    Each role warm-starts from its own previous checkpoint. `run.stage` skips a stage that its record says is done
    (runfolder.Run), so the same command resumes after the last finished stage."""
    cfg, world = run.cfg, run.world
    evals = evaluation_inputs(cfg, world)  # an evaluation is redone when its benchmarks or decoding change
    if world.test:
        run.stage(0, "eval", evaluate, world.base, inputs=evals)
    challenger = solver = world.base
    for it in range(1, cfg.iterations + 1):
        if questions_from(cfg) == "challenger":  # else the Base Challenger baseline or a measurement's control
            challenger = run.stage(it, "challenger", train_challenger, challenger, solver)
        run.stage(it, "dataset", build_dataset, challenger, solver, inputs=dataset_inputs(cfg))
        solver = run.stage(it, "solver", train_solver, solver)
        if world.test:
            run.stage(it, "eval", evaluate, solver, inputs=evals)

# ----------------------------------------------------------------------------- Challenger reward (paper Sec. 3.2)


def uncertainty_reward(p_hat, official=False, target=0.5):
    """Paper Sec. 3.2: r_unc = 1 - 2|p_hat - 1/2|, in [0, 1]. official=True: min(p_hat, 1 - p_hat), in [0, 0.5].
    target (not in the paper; RESULTS.md Sec. 8) moves the tent's peak to p_hat = target, still 0 at 0 and 1, so the
    Challenger aims where the Solver is more often right; at 1/2 it is the paper's reward to the last bit."""
    if official:
        return min(p_hat, 1.0 - p_hat)
    return 1.0 - abs(p_hat - target) / (target if p_hat <= target else 1.0 - target)


def repetition_penalty(questions, tau=0.5, lam=1.0):
    """Paper Sec. 3.2: r_rep(x_i) = lambda |C_k| / B, C_k the cluster of x_i when the batch is clustered by BLEU
    distance (average linkage, cut at tau; bleu.py). Returns (r_rep, cluster ids)."""
    clusters = bleu.average_linkage_clusters(bleu.bleu_distance_matrix(questions), tau)
    return lam * np.bincount(clusters)[clusters] / len(questions), clusters


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


def challenger_answer(text):
    """The Challenger's own answer: the last \\boxed{} after its last </question> (the paper's prompt asks for one;
    the paper never reads it). None when there is none."""
    end = text.rfind("</question>")
    return vote.extract_boxed(text[end:]) if end >= 0 else None


def challenger_rewards(outputs, solver_answers, tau=0.5, lam=1.0, official=False, answer_check=False, target=0.5):
    """Rewards of a batch of Challenger outputs (raw text), given the Solver's m answers to each one's question
    (solver_answers[i], None where the output has no question).

    Paper: r = 0 for bad format (no <question> block), else max(0, r_unc - r_rep). official=True is
    caller_penalty.py at HEAD: (min(p, 1-p) if the format is good else -1) - r_rep, no clamp, its question read as
    its findall reads it, where an empty last \\boxed{ is bad format too (a missing one passes: mathruler reads it
    as the string "None"). As there, a bad-format output joins the clustering as the empty question (B counts it).
    answer_check=True (not in the paper; RESULTS.md Sec. 8) makes a question bad format unless the Challenger's own
    answer is the Solver's majority.
    """
    questions = [vote.extract_question(o, official) for o in outputs]
    votes = [vote.majority_vote(a if q is not None else []) for q, a in zip(questions, solver_answers)]
    answers = [challenger_answer(o) for o in outputs]
    agrees = [q is not None and vote.equivalent(a, v.label) for q, a, v in zip(questions, answers, votes)]
    good = [q is not None and (ok or not answer_check) and not (official and vote.extract_boxed(o, official) == "")
            for o, q, ok in zip(outputs, questions, agrees)]
    r_rep, clusters = repetition_penalty([q if g else "" for q, g in zip(questions, good)], tau, lam)  # |C_k| / B
    results = []
    for q, v, answer, ok, g, rep, cluster in zip(questions, votes, answers, agrees, good, r_rep, clusters):
        r_unc = uncertainty_reward(v.p_hat, official, target)  # paper Sec. 3.2: 1 - 2|p_hat - 1/2|
        if official:
            reward = (r_unc if g else -1.0) - rep  # caller_penalty.py
        else:
            reward = max(0.0, r_unc - rep) if g else 0.0  # paper Sec. 3.2: max(0, r_unc - r_rep)
        results.append(ChallengerReward(float(reward), q is not None, q, v.p_hat, v.label, r_unc, float(rep),
                                        int(cluster), answer, ok))
    return results

# ----------------------------------------------------------------------------- Solver data set (paper Sec. 3.3)


@dataclass
class SolverExample:
    index: int  # the candidate's position among the N
    question: str
    label: str  # the majority answer of the Solver that labelled it
    p_hat: float


def dataset_drop(q, v):
    """The official rule (upload.py, question_evaluate/evaluate.py) that drops question q with vote v from the data
    set, or None: no majority answer (empty or "None"), "证明" ("proof") in the question, "box" in the question,
    "text" in the answer (the last two in any case), checked in that order."""
    if v.label is None or v.label.strip() in ("", "None"):
        return "no_answer"
    if "证明" in q:
        return "proof_in_question"
    if "box" in q.lower():
        return "box_in_question"
    if "text" in v.label.lower():
        return "text_in_answer"
    return None


def filter_for_solver(questions, votes, band=(0.25, 0.75), max_classes=0):
    """Keep (question, pseudo-label, p_hat) where LOW <= p_hat <= HIGH (paper Sec. 3.3: |p_hat - 1/2| <= 0.25),
    after the official code's filters (dataset_drop). max_classes > 0 (in neither; RESULTS.md Sec. 8) also drops a
    question whose answers scatter into more distinct answers than that (ill-posed questions and wrong majorities
    scatter more). Returns the kept examples and a Counter of what each rule dropped (a row counts once)."""
    kept, dropped = [], Counter()
    for i, (q, v) in enumerate(zip(questions, votes)):
        rule = "no_question" if q is None else dataset_drop(q, v)
        if rule is None and not vote.in_band(v.p_hat, band):
            rule = "outside_band"
        if rule is None and max_classes and len(v.sizes) > max_classes:
            rule = "scattered"
        if rule:
            dropped[rule] += 1
        else:
            kept.append(SolverExample(i, q, v.label, v.p_hat))
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


def train_challenger(run, it, init, solver_dir):
    """Paper Sec. 3.2: GRPO on the Challenger, rewarded for questions the current Solver is unsure of."""
    cfg, ch, world = run.cfg, run.ch, run.world
    model, tok, ref, gcfg, opt = policy(cfg, init, ch)
    solver, _ = load_model(solver_dir, cfg, sample_dtype(cfg))
    gen, rows, samples = generator(cfg, it, "challenger"), [], []
    for step in sampler.progress_bar(range(ch.steps), desc=f"iter {it}: Challenger GRPO", unit="step",
                                     enabled=dist.is_main()):
        t0 = time.time()
        prompt, outs = ask_challenger(model, tok, world, ch.prompts * ch.group_size, ch.temperature, ch.top_p,
                                      ch.max_new_tokens, gen, cfg)
        texts = [tok.decode(o.tokens, skip_special_tokens=True) for o in outs]
        questions = [vote.extract_question(t, ch.official_reward) for t in texts]
        answers = vote_answers(solver, tok, run, questions, gen, cfg.m)
        if cfg.official_votes:
            answers = [vote.official_answers(a, labels=False) if a is not None else None for a in answers]
        rewards = challenger_rewards(texts, answers, ch.tau, ch.lam, ch.official_reward, ch.answer_check, ch.target)
        adv = grpo.group_advantages(torch.tensor([r.reward for r in rewards]).view(ch.prompts, ch.group_size))
        batch = grpo.make_rollouts([prompt] * len(outs), [o.tokens for o in outs], adv.flatten(), tok.pad_token_id,
                                   cfg.device)
        stats = grpo.grpo_step(model, opt, batch, gcfg, ref)
        model.eval()
        rows.append({"step": step, **question_stats(world, rewards, cfg.band), **stats,
                     "seconds": round(time.time() - t0, 2)})
        report.collapse_warning(f"iter {it} step {step}", rows[-1])
        run.log_step("challenger", it, rows[-1])
        # every response, trimmed: a run whose format rate is low shows what the model wrote instead
        samples += [{"step": step, "question": r.question, "answer": r.answer, "p_hat": r.p_hat, "label": r.label,
                     "reward": r.reward, "r_rep": r.r_rep, "response": text[:1000]} for r, text in zip(rewards, texts)]
    write_jsonl(run.output(it, SAMPLES), samples)
    write_jsonl(run.output(it, metrics_file("challenger")), rows)
    save_model(model, tok, run.output(it, "challenger"))
    first, last = rows[0], rows[-1]
    return (f"reward {first['reward']:.3f} -> {last['reward']:.3f}, in band {first.get('in_band', 0):.0%} -> "
            f"{last.get('in_band', 0):.0%}, format ok {last['format_ok']:.0%}")


def build_dataset(run, it, challenger_dir, solver_dir):
    """Paper Sec. 3.3: N candidate questions, m Solver answers each, keep the band, label by the majority. A
    control's candidates come with exact answers (`candidates`): under --oracle-questions, or a --question-file with
    --oracle-labels, each is kept and labelled by its answer, with no vote."""
    cfg, world, t0 = run.cfg, run.world, time.time()
    gen = generator(cfg, it, "dataset")
    rows, stats = candidates(run, it, challenger_dir, gen)  # [{question, answer where known, ...}]
    questions = [r["question"] for r in rows]
    if cfg.oracle_questions or (cfg.question_file and cfg.oracle_labels):  # a control's exact labels, no vote
        kept, summary = [dict(r, label=r["answer"]) for r in rows], f"{len(rows)} questions, exact labels"
    else:
        solver, tok = load_model(solver_dir, cfg, sample_dtype(cfg))
        _, votes = label_votes(solver, tok, run, questions, gen, desc=f"iter {it}: labelling")
        examples, dropped = filter_for_solver(questions, votes, cfg.band, cfg.max_classes)
        kept = [dict(rows[ex.index], label=ex.label, p_hat=ex.p_hat) for ex in examples]
        valid = [(r, v) for r, v in zip(rows, votes) if r["question"] is not None]
        stats.update(valid=len(valid), dropped=dict(+(Counter(stats["dropped"]) + dropped)),
                     in_band=float(np.mean([vote.in_band(v.p_hat, cfg.band) for _, v in valid] or [0.0])))
        if questions_from(cfg) != "control":  # the Challenger's questions, each with its own answer
            stats["answer_agrees"] = float(np.mean([vote.equivalent(r["challenger_answer"], v.label)
                                                    for r, v in valid] or [0.0]))
            stats.update(report.diversity(world, tok, [r["question"] for r, _ in valid]))
        summary = f"{len(valid)}/{len(rows)} valid, {stats['in_band']:.0%} in band"
    for r in kept:  # measurement only: the exact answer is never read by training unless --oracle-labels
        if "answer" in r:
            r["label_correct"] = vote.equivalent(r["label"], r["answer"])
    stats["kept"] = len(kept)
    if kept and "answer" in kept[0]:
        stats["label_accuracy"] = float(np.mean([r["label_correct"] for r in kept]))
    if world.level:
        stats["difficulty"] = float(np.mean([world.level(q) or 0 for q in questions if q] or [0]))
    stats["seconds"] = round(time.time() - t0, 1)
    report.collapse_warning(f"iter {it} data set", stats)
    write_jsonl(run.output(it, DATASET), kept)
    write_json(run.output(it, DATASET_STATS), stats)
    acc = f", labels right {stats['label_accuracy']:.0%}" if "label_accuracy" in stats else ""
    return f"{summary}, kept {len(kept)}{acc}"


def candidates(run, it, challenger_dir, gen):
    """The N candidates of iteration `it` and their first stats. The paper's: the Challenger's questions, each
    with its own answer. The controls of RESULTS.md: rows (it-1)N+1..iN of a --question-file, or N fresh questions of
    the tiny world's generator (--oracle-questions), never one of the test's, each with its exact answer."""
    cfg, world, N = run.cfg, run.world, run.cfg.candidates
    held_out = {r["question"] for b in world.test for r in b.rows}
    if cfg.question_file:
        rows = evaluation.read_benchmark(cfg.question_file).rows
        if len(rows) < it * N:
            raise RZeroError(f"--question-file {cfg.question_file} has {len(rows)} rows: iteration {it} needs rows "
                             f"{(it - 1) * N + 1}-{it * N} (--candidates {N})")
        rows = [{"question": r["question"], "answer": r["answer"]} for r in rows[(it - 1) * N:it * N]
                if r["question"] not in held_out]
        return rows, {"candidates": N, "dropped": {"in_test": N - len(rows)}}
    if cfg.oracle_questions:
        rng, rows = random.Random(stage_seed(cfg, it, "dataset")), []
        while len(rows) < N:
            q = world.question(rng)
            if q not in held_out:
                rows.append({"question": q, "answer": world.oracle(q)})
        return rows, {"candidates": N, "dropped": {}}
    model, tok = load_model(challenger_dir, cfg, sample_dtype(cfg))
    _, outs = ask_challenger(model, tok, world, N, cfg.gen_temperature, cfg.gen_top_p, run.ch.max_new_tokens, gen,
                             cfg, desc=f"iter {it}: candidate questions")
    texts = [tok.decode(o.tokens, skip_special_tokens=True) for o in outs]
    rows = [{"question": vote.extract_question(t), "challenger_answer": challenger_answer(t)} for t in texts]
    if world.oracle:
        for r in rows:
            r["answer"] = world.oracle(r["question"]) if r["question"] else None
    return rows, {"candidates": N, "dropped": {}}


def train_solver(run, it, init):
    """Paper Sec. 3.3: GRPO on the Solver, reward 1 when its \\boxed{} answer matches the pseudo-label."""
    cfg, sv, world = run.cfg, run.sv, run.world
    data = read_jsonl(run.path(it, DATASET))
    if not data:  # documented rule: an empty band leaves the Solver as it was for this iteration
        model, tok = load_model(init, cfg)
        save_model(model, tok, run.output(it, "solver"))
        return "the band filter kept no question: the Solver is carried over unchanged"
    model, tok, ref, gcfg, opt = policy(cfg, init, sv, sv.loss_agg)
    rng, gen, order, rows = random.Random(stage_seed(cfg, it, "solver")), generator(cfg, it, "solver"), [], []
    for step in sampler.progress_bar(range(sv.steps), desc=f"iter {it}: Solver GRPO", unit="step",
                                     enabled=dist.is_main()):
        t0 = time.time()
        # sv.prompts rows, an epoch reshuffled when it runs out; no row is dropped and a small data set is one
        # smaller batch (the official loader drops a last partial batch and needs at least one full one)
        batch_rows = []
        while len(batch_rows) < min(sv.prompts, len(data)):
            order = order or rng.sample(range(len(data)), len(data))
            batch_rows.append(data[order.pop()])
        prompts = [encode(tok, render(tok, world.prompts.solver_system, r["question"])) for r in batch_rows]
        groups = dist.sample(model, prompts, n=sv.group_size, max_new_tokens=sv.max_new_tokens,
                             temperature=sv.temperature, top_p=sv.top_p, stop_ids=stop_ids(model, tok),
                             generator=gen, progress=False, **limits(cfg))
        preds = [[vote.extract_boxed(tok.decode(s.tokens, skip_special_tokens=True)) for s in g] for g in groups]
        labels = [r["answer"] if cfg.oracle_labels else r["label"] for r in batch_rows]
        rewards = torch.tensor([[float(vote.equivalent(p, lab)) for p in ps] for ps, lab in zip(preds, labels)])
        adv = grpo.group_advantages(rewards)  # (prompts, group_size)
        batch = grpo.make_rollouts([p for p in prompts for _ in range(sv.group_size)],
                                   [s.tokens for g in groups for s in g], adv.flatten(), tok.pad_token_id, cfg.device)
        stats = grpo.grpo_step(model, opt, batch, gcfg, ref)
        model.eval()
        row = {"step": step, "reward": rewards.mean().item(), **stats, "seconds": round(time.time() - t0, 2)}
        if all("answer" in r for r in batch_rows):  # the tiny world's rows and a --question-file's
            row["label_accuracy"] = float(np.mean([r["label_correct"] for r in batch_rows]))
            row["true_reward"] = float(np.mean([vote.equivalent(p, r["answer"])
                                                for ps, r in zip(preds, batch_rows) for p in ps]))
        rows.append(row)
        run.log_step("solver", it, row)
    write_jsonl(run.output(it, metrics_file("solver")), rows)
    save_model(model, tok, run.output(it, "solver"))
    return f"reward {rows[0]['reward']:.3f} -> {rows[-1]['reward']:.3f} over {len(rows)} steps"


def evaluate(run, it, model_dir):
    """Every benchmark with the paper's prompts and greedy decoding (evaluation.py), plus mean@k and maj@k when
    k > 0, graded by vote.equivalent on the last \\boxed{}: no math_verify and no GPT-4o recheck (PAPER.md Sec. 6)."""
    cfg, world, t0 = run.cfg, run.world, time.time()
    model, tok = load_model(model_dir, cfg, sample_dtype(cfg))
    responses = []
    table = evaluation.evaluate(model, tok, world.test, world.prompts.solver_system, cfg.eval_k,
                                cfg.eval_max_new_tokens, cfg.eval_choice_max_new_tokens, generator(cfg, "eval"),
                                responses=responses, **limits(cfg))
    averages = evaluation.averages(table)
    right = {b.name: [int(r["right"]) for r in responses if r["benchmark"] == b.name] for b in world.test}
    write_json(run.output(it, EVAL), {"benchmarks": table, "averages": averages, "right": right,  # paired SEs
                                      "seconds": round(time.time() - t0, 1)})
    figures = [f"{name} {t['all']['greedy']:.1f}%" for name, t in table.items()]
    if len(table) > 1:
        figures += [f"{name} {v:.1f}%" for name, v in averages.items()]
    return "greedy " + ", ".join(figures)

# ----------------------------------------------------------------------------- helpers of the stages


def questions_from(cfg):
    """Where the data set's candidates come from: the trained Challenger (the paper), the untrained base (the
    paper's Base Challenger baseline), or a measurement's control (`candidates`)."""
    if cfg.question_file or cfg.oracle_questions:
        return "control"
    return "base" if cfg.base_challenger else "challenger"


def dataset_inputs(cfg):
    """What a data set depends on beyond config.json: a --question-file's contents."""
    return {"question_file": sha256_of(cfg.question_file)} if cfg.question_file else None


def evaluation_inputs(cfg, world):
    """What an evaluation depends on besides the model: the benchmarks' rows and the decoding settings."""
    digest = lambda rows: hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]  # noqa: E731
    return {"benchmarks": {b.name: digest(b.rows) for b in world.test}, "k": cfg.eval_k,
            "max_new_tokens": cfg.eval_max_new_tokens, "choice_max_new_tokens": cfg.eval_choice_max_new_tokens}


def policy(cfg, init, role, loss_agg="token-mean"):
    """A role's model to train, its tokenizer, its frozen KL reference (None at kl_coef 0), GRPO's settings and
    AdamW: the trained model keeps the master dtype, the reference only needs the compute dtype."""
    model, tok = load_model(init, cfg)
    ref = load_model(init, cfg, compute_dtype(cfg))[0] if role.kl_coef > 0 else None
    gcfg = grpo.GRPOConfig(lr=role.lr, kl_coef=role.kl_coef, temperature=role.temperature, loss_agg=loss_agg,
                           mini_batch=role.mini_batch * role.group_size, micro_batch=role.micro_batch,
                           skip_zero_advantage=cfg.skip_zero_advantage, grad_checkpointing=cfg.grad_checkpointing,
                           cpu_autocast=cfg.cpu_autocast)
    return model, tok, ref, gcfg, grpo.make_optimizer(model, gcfg)


def ask_challenger(model, tok, world, n, temperature, top_p, max_new_tokens, gen, cfg, desc=None):
    """n samples of the Challenger's one prompt: (the prompt's ids, the samples)."""
    prompt = encode(tok, render(tok, world.prompts.challenger_system, world.prompts.challenger_user))
    outs = dist.sample(model, [prompt], n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                       stop_ids=stop_ids(model, tok), generator=gen, desc=desc, progress=desc is not None,
                       **limits(cfg))[0]
    return prompt, outs


def vote_answers(solver, tokenizer, run, questions, gen, m, desc=None):
    """The Solver's m answers to every question (None where there is no question); a progress bar if desc."""
    valid = [q for q in questions if q is not None]
    answers = iter(evaluation.solve(solver, tokenizer, run.world.prompts.solver_system, valid, m,
                                    run.cfg.vote_temperature, run.sv.max_new_tokens, top_k=run.cfg.vote_top_k,
                                    generator=gen, desc=desc, progress=desc is not None, **limits(run.cfg)))
    return [next(answers) if q is not None else None for q in questions]


def label_votes(solver, tokenizer, run, questions, gen, desc=None):
    """Paper Sec. 3.3: the Solver's --label-m (else --m) answers to each candidate and their votes, whose majority is
    the pseudo-label; a missing question has answers None and an empty vote."""
    cfg = run.cfg
    answers = vote_answers(solver, tokenizer, run, questions, gen, cfg.label_m or cfg.m, desc)
    if cfg.official_votes:
        answers = [vote.official_answers(a, labels=True) if a is not None else None for a in answers]
    return answers, [vote.majority_vote(a or []) for a in answers]


def question_stats(world, rewards, band):
    """A Challenger step's metrics: its reward, format, penalty, and, over its valid questions, p_hat, the share in
    the band, the Challenger's answer agreeing with the majority, their mutual BLEU and (tiny world) difficulty."""
    valid = [r for r in rewards if r.format_ok]
    out = {"reward": float(np.mean([r.reward for r in rewards])), "format_ok": len(valid) / len(rewards),
           "r_rep": float(np.mean([r.r_rep for r in rewards]))}
    if len(valid) > 1:
        out["mean_pairwise_bleu"] = bleu.mean_pairwise_bleu([r.question for r in valid])
    if valid:
        out["p_hat"] = float(np.mean([r.p_hat for r in valid]))
        out["answer_agrees"] = float(np.mean([r.agrees for r in valid]))  # as in the data set's stats
        out["in_band"] = float(np.mean([vote.in_band(r.p_hat, band) for r in valid]))
        if world.level:
            levels = [world.level(r.question) for r in valid]
            out["difficulty"] = float(np.mean([lv for lv in levels if lv is not None] or [0]))
    return out


def main(argv=None):
    """The command line: the settings (config.py), then Algorithm 1 in its run folder, then the summary tables.
    Errors and interruptions are one line from rank 0 (command.one_line_errors); every file written so far stays
    whole, so the same command resumes after the last finished stage."""
    with command.one_line_errors():
        cfg, ch, sv = config.configs_from_args(argv, say=lambda w: dist.is_main() and print(w, file=sys.stderr))
        command.join(cfg.device)
        with runfolder.Run(cfg, ch, sv, make_world(cfg), report.Tracker) as run:
            r_zero(run)
            runfolder.log(report.summarize(cfg))


if __name__ == "__main__":
    command.cli(main)
