"""What a real model does with R-Zero's prompts and how far its votes can be trusted, measured with the loop's own
functions (RESULTS.md Sec. 9). Each subcommand takes rzero's flags after its own (`--m`, `--band`, ...).

    bash run.sh probe.py challenger MODEL --samples 64 [rzero flags]    # the paper's Challenger prompt: format kept?
    bash run.sh probe.py votes MODEL data/gsm8k/gsm8k-train.jsonl [rzero flags]   # pseudo-labels against exact answers
    bash run.sh probe.py votes MODEL --rows votes.jsonl                  # the table again, from an earlier --out

`challenger` samples the Challenger prompt of PAPER.md Sec. 2.1 as the Challenger's GRPO does (its temperature,
top-p and token limit) and counts the responses that hold a `<question>` block (the format the reward checks), and
those with a `\\boxed{}` answer after it; a few responses are printed. `votes` answers questions whose exact answers
are known m times each as the Solver labels candidates in the loop (`rzero.label_votes`, `vote.majority_vote`),
and tabulates for each filter (`rzero.filter_for_solver`: the paper's band, the tiny preset's defence) how many
questions are kept and how many of the kept majorities are right, by p_hat: the exact counterpart of the paper's
GPT-4o estimate (79% right in iteration 1). Every response goes to --out as JSONL.
"""
import argparse
import json
import sys
import time
import types

import config
import dist
import models
import rzero
import vote
from evaluation import encode, read_benchmark, render, stop_ids

FILTERS = {"the paper's band, 0.25-0.75": dict(band=(0.25, 0.75)),
           "the tiny preset's defence, 0.5-0.9, at most 4 answers": dict(band=(0.5, 0.9), max_classes=4)}


def challenger(cfg, ch, world, samples):
    model, tok = models.load_model(cfg.model, cfg, models.sample_dtype(cfg))
    prompt = encode(tok, render(tok, world.prompts.challenger_system, world.prompts.challenger_user))
    t0 = time.time()
    outs = dist.sample(model, [prompt], n=samples, max_new_tokens=ch.max_new_tokens, temperature=ch.temperature,
                       top_p=ch.top_p, stop_ids=stop_ids(model, tok), generator=models.generator(cfg, "probe"),
                       desc="Challenger prompt", **models.limits(cfg))[0]
    seconds = time.time() - t0
    rows = [{"response": tok.decode(o.tokens, skip_special_tokens=True), "tokens": len(o.tokens), "finish": o.finish}
            for o in outs]
    for r in rows:
        r["question"], r["answer"] = vote.extract_question(r["response"]), rzero.challenger_answer(r["response"])
    ok = [r for r in rows if r["question"] is not None]
    print(f"{len(ok)}/{len(rows)} responses hold a <question> block ({len(ok) / len(rows):.0%}), "
          f"{sum(r['answer'] is not None for r in ok)} of them with a \\boxed{{}} answer after it; "
          f"{sum(r['finish'] == 'length' for r in rows)} cut at {ch.max_new_tokens} tokens; mean length "
          f"{sum(r['tokens'] for r in rows) / len(rows):.0f} tokens; {seconds:.0f} s")
    for r in ok[:3] + [r for r in rows if r["question"] is None][:3]:
        print("---", "question:" if r["question"] else "no question:", r["response"][:300].replace("\n", " / "))
    return rows


def votes(cfg, sv, world, path):
    """The Solver's votes on questions with exact answers, one row each (answers, label, p_hat, right or not)."""
    bench = read_benchmark(path)
    if bench.kind != "math":
        raise SystemExit(f"probe.py: {path} is not a math benchmark")
    questions, truths = [r["question"] for r in bench.rows], [r["answer"] for r in bench.rows]
    model, tok = models.load_model(cfg.model, cfg, models.sample_dtype(cfg))
    t0 = time.time()
    run, m = types.SimpleNamespace(cfg=cfg, sv=sv, world=world), cfg.label_m or cfg.m  # what label_votes reads
    answers, vs = rzero.label_votes(model, tok, run, questions, models.generator(cfg, "probe"),
                                    desc=f"{bench.name}: {m} answers each")
    print(f"{len(questions)} questions x {m} answers in {time.time() - t0:.0f} s")
    return [{"question": q, "answer": t, "votes": a, "label": v.label, "p_hat": v.p_hat, "classes": len(v.sizes),
             "label_correct": vote.equivalent(v.label, t)} for q, t, a, v in zip(questions, truths, answers, vs)]


def vote_table(rows, m):
    """A markdown table of the votes by p_hat = k/m: questions, majority right, and what each filter keeps."""
    boxed = sum(a is not None for r in rows for a in r["votes"]) / sum(len(r["votes"]) for r in rows)
    vs, kept = [vote.majority_vote(r["votes"]) for r in rows], {}
    for name, f in FILTERS.items():
        ex, dropped = rzero.filter_for_solver([r["question"] for r in rows], vs, **f)
        kept[name] = {e.question for e in ex}
        print(f"{name}: dropped {dict(dropped)}")
    right = lambda rs: sum(r["label_correct"] for r in rs)  # noqa: E731
    lines = [f"{boxed:.0%} of the answers hold a \\boxed{{}}; no majority answer for "
             f"{sum(v.label is None for v in vs)} of {len(rows)} questions", "",
             "| p_hat | questions | majority right | " + " | ".join(f"kept: {n} | right" for n in FILTERS) + " |",
             "|---|---|---|" + "---|---|" * len(FILTERS)]
    for k in [*range(m + 1), None]:
        at = rows if k is None else [r for r in rows if round(r["p_hat"] * m) == k]
        if at:
            cells = [f"{len(at)}", f"{right(at)} ({right(at) / len(at):.0%})"]
            for name in FILTERS:
                ks = [r for r in at if r["question"] in kept[name]]
                cells += [f"{len(ks)} ({len(ks) / len(at):.0%})", f"{right(ks)} ({right(ks) / len(ks):.0%})" if ks
                          else "–"]
            lines.append(f"| {'all' if k is None else f'{k}/{m}'} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("challenger", "votes"))
    parser.add_argument("model", help="a model folder")
    parser.add_argument("questions", nargs="?", help="votes: a math benchmark file with exact answers")
    parser.add_argument("--samples", type=int, default=64, help="challenger: responses to sample")
    parser.add_argument("--out", help="write every response here (JSONL)")
    parser.add_argument("--rows", help="votes: tabulate the rows an earlier --out wrote instead of sampling")
    args, rest = parser.parse_known_args(argv)
    if args.what == "votes" and not (args.questions or args.rows):
        parser.error("votes needs a benchmark file of questions with exact answers (or --rows)")
    try:
        cfg, ch, sv = config.configs_from_args(["--model", args.model, *rest])
    except config.SettingsError as e:
        sys.exit("\n".join(f"probe.py: {line}" for line in str(e).splitlines()))
    if args.rows:
        with open(args.rows) as f:
            rows = [json.loads(line) for line in f]
        return vote_table(rows, cfg.label_m or cfg.m)
    world = rzero.make_world(cfg)
    rows = (challenger(cfg, ch, world, args.samples) if args.what == "challenger"
            else votes(cfg, sv, world, args.questions))
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    if args.what == "votes":
        vote_table(rows, cfg.label_m or cfg.m)


if __name__ == "__main__":
    main()
