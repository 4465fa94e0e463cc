"""See a run: its metrics streamed to TensorBoard or Weights & Biases while it goes, what its Challenger writes
(`diversity`, `collapse_warning`), its summary tables (`summarize`: summary.json and summary.md) and figures of
finished runs.

    bash run.sh --report-to tensorboard             # then: tensorboard --logdir runs/
    WANDB_MODE=offline bash run.sh --report-to wandb
    bash run.sh report.py plot runs/a runs/b --out runs.png

What goes out (rank 0 only), each value as the run writes it: every per-step metric of both roles, as
`challenger/reward`, `solver/kl`, ..., over a step that keeps rising across iterations ((iteration - 1) x the role's
steps + step), so each role is one curve and an iteration is a stretch of it; the tags do not carry the iteration
because a co-evolution is read along that curve, its jumps at iteration boundaries included. Each stage's summary
goes out at step = iteration (0: the base model): `dataset/...` (`dataset_stats.json`: size, in band, labels right
where known, seconds) and `eval/...` (each benchmark's greedy and mean@k / maj@k, MATH AVG, Overall AVG, seconds).

Resuming: `report.json` in the run folder holds the last step sent of each group and the W&B run id, and only later
steps go out, so a resumed run continues the same curves without duplicates: TensorBoard appends to the same log
folder (`OUT/tensorboard`), W&B resumes the same run (resume="allow"). A run that is given --report-to only when it
is resumed sends its finished stages from their files first. tensorboard, wandb and matplotlib are imported only
when asked for; none of them is needed to run R-Zero.
"""
import argparse
import json
import os
import sys
import uuid

from tqdm import tqdm

import bleu
import dist
import evaluation
from runfolder import (CONFIG, DATASET_STATS, EVAL, REPORT, SUMMARY, RZeroError, iteration_folder, metrics_file,
                       read_json, read_jsonl, write_file, write_json)


class Tracker:
    """Where a run's metrics go: nowhere, TensorBoard or W&B. `send` skips what report.json says was sent."""

    def __init__(self, backend, out, settings=None, steps=None):
        self.backend = backend if dist.is_main() else "none"
        self.steps = steps or {}  # GRPO steps per iteration of each role: {"challenger": 5, "solver": 15}
        self.path, self.writer, self.run = os.path.join(out, REPORT), None, None
        self.ledger = read_json(self.path) if self.backend != "none" and os.path.exists(self.path) else {"sent": {}}
        if self.backend == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(out, "tensorboard"))
        elif self.backend == "wandb":
            import wandb
            self.ledger.setdefault("wandb_id", uuid.uuid4().hex[:12])
            write_json(self.path, self.ledger)  # the id first: a run killed now resumes the same W&B run
            try:
                self.run = wandb.init(project="rzero", id=self.ledger["wandb_id"], resume="allow", dir=out,
                                      name=os.path.basename(os.path.abspath(out)), config=settings)
            except Exception as e:  # no login and not offline, a bad WANDB_MODE, ...
                raise RZeroError(f"--report-to wandb: {str(e).strip().splitlines()[0]} (WANDB_MODE=offline needs "
                                 "no account)") from None

    def send(self, group, step, values):
        """The numbers of `values` (a dict; nested dicts one level deep) as `group/name` at `step`."""
        if self.backend == "none" or step <= self.ledger["sent"].get(group, -1):
            return
        scalars = {}
        for name, v in values.items():
            for key, x in (v.items() if isinstance(v, dict) else [("", v)]):
                if isinstance(x, (int, float)) and not isinstance(x, bool) and name != "step":
                    scalars[f"{group}/{name}/{key}" if key else f"{group}/{name}"] = float(x)
        if self.writer is not None:
            for tag, x in scalars.items():
                self.writer.add_scalar(tag, x, step)
            self.writer.flush()
        else:
            if group not in self.ledger["sent"]:
                self.run.define_metric(f"{group}/*", step_metric=f"{group}/step")
            self.run.log({**scalars, f"{group}/step": step})
        self.ledger["sent"][group] = step
        write_json(self.path, self.ledger)

    def log_step(self, role, it, row):
        """One GRPO step's metrics, at the role's step counted across iterations."""
        self.send(role, (it - 1) * self.steps[role] + row["step"], row)

    def stage(self, name, it, folder):
        """A finished stage's metrics from the files it wrote, those not yet sent (a stage found done on resume sends
        them now): a role's per-step rows, a data set's stats, an evaluation's scores (each benchmark's, the
        averages and the seconds, at step = iteration)."""
        if self.backend == "none":
            return
        if name in self.steps:  # a Solver carried over wrote no metrics
            for row in read_jsonl(os.path.join(folder, metrics_file(name))):
                self.log_step(name, it, row)
        elif name == "dataset":
            self.send("dataset", it, read_json(os.path.join(folder, DATASET_STATS)))
        elif name == "eval":
            ev = read_json(os.path.join(folder, EVAL))
            self.send("eval", it, {**{name: t["all"] for name, t in ev["benchmarks"].items()}, **ev["averages"],
                                   "seconds": ev["seconds"]})

    def close(self):
        if self.writer is not None:
            self.writer.close()
        if self.run is not None:
            self.run.finish()

# ----------------------------------------------------------------------------- what the Challenger writes


def diversity(world, tokenizer, questions, sample=512):
    """Distinct token 2-grams per question, mean pairwise BLEU (whitespace words, on up to `sample` questions) and,
    in the tiny world, distinct expression shapes: a Challenger that collapses onto one kind of question shows
    here (follow-up work, arXiv 2604.03472, found that collapse is what stalls the loop)."""
    qs = [q for q in questions if q]
    if not qs:
        return {"distinct_2grams_per_q": 0.0, "mean_pairwise_bleu": 0.0}
    encoded = [evaluation.encode(tokenizer, q) for q in qs]
    bigrams = {tuple(ids[i:i + 2]) for ids in encoded for i in range(len(ids) - 1)}
    out = {"distinct_2grams_per_q": len(bigrams) / len(qs), "mean_pairwise_bleu": bleu.mean_pairwise_bleu(qs[:sample])}
    if world.shape:
        out["distinct_shapes"] = len({world.shape(q) for q in qs})
    return out


def collapse_warning(where, stats):
    """One line on stderr when a batch's questions are near copies of each other (mean pairwise BLEU above 0.5, the
    clustering's threshold): the collapse of RESULTS.md Sec. 9.4, which the batch penalty cannot undo once every
    question is the same (a group of equal rewards has no gradient)."""
    if stats.get("mean_pairwise_bleu", 0.0) > 0.5 and dist.is_main():
        tqdm.write(f"rzero: warning: {where}: the Challenger's questions are near copies of each other (mean pairwise "
                   f"BLEU {stats['mean_pairwise_bleu']:.2f}; RESULTS.md Sec. 9.4)", file=sys.stderr)


# ----------------------------------------------------------------------------- the summary tables of a run


def read_run(folder, iterations=None):
    """Every file of a run folder that the summary and the figures read, in one walk: the settings that decide its
    results and, per iteration (0: the base; up to `iterations` if given), its eval.json, dataset_stats.json and both
    roles' per-step metrics, None or [] where a file is not there (yet)."""
    if not os.path.isfile(os.path.join(folder, CONFIG)):
        raise ValueError(f"{folder} is not a run folder (it has no {CONFIG})")
    found = sorted(int(d[4:]) for d in os.listdir(folder) if d.startswith("iter") and d[4:].isdigit())
    run = {"settings": read_json(os.path.join(folder, CONFIG)).get("defining", {}), "iterations": {}}
    for it in [0] + [i for i in found if iterations is None or i <= iterations]:
        path = lambda name: os.path.join(iteration_folder(folder, it), name)  # noqa: E731
        run["iterations"][it] = {
            "eval": read_json(path(EVAL)) if os.path.exists(path(EVAL)) else None,
            "dataset": read_json(path(DATASET_STATS)) if os.path.exists(path(DATASET_STATS)) else None,
            **{role: read_jsonl(path(metrics_file(role))) for role in ("challenger", "solver")}}
    return run


def summarize(cfg):
    """The final tables, from the files the stages wrote: summary.json and summary.md in the output folder."""
    k, rows, tables, base = cfg.eval_k, [], {}, {}
    for it, files in read_run(cfg.out, cfg.iterations)["iterations"].items():
        ev, ds, chm, sm = files["eval"] or {}, files["dataset"] or {}, files["challenger"], files["solver"]
        row = {"iteration": "base" if it == 0 else it}
        base = ev.get("right", {}) if it == 0 else base
        if it and ev.get("right"):  # [points, paired standard error] against the base, the same questions
            row["change_vs_base"] = {name: list(evaluation.paired_change(base[name], marks))
                                     for name, marks in ev["right"].items() if len(base.get(name, ())) == len(marks)}
        if ev:
            bench = ev["benchmarks"]
            tables[iteration_name(row["iteration"])] = bench
            row.update({m: {name: t["all"][m] for name, t in bench.items()}
                        for m in ("greedy", *((f"mean@{k}", f"maj@{k}") if k else ()))})
            row["averages"] = ev["averages"]
            row["levels_greedy"] = {name: {lv: r["greedy"] for lv, r in t["levels"].items()}
                                    for name, t in bench.items()}
        if it:
            row.update({"label_accuracy": ds.get("label_accuracy"), "in_band_before": chm[0].get("in_band")
                        if chm else None, "in_band_after": ds.get("in_band"), "dataset": ds.get("kept"),
                        **{key: ds.get(key) for key in ("difficulty", "distinct_2grams_per_q", "mean_pairwise_bleu",
                                                        "distinct_shapes")},
                        "seconds": {"challenger": round(sum(r["seconds"] for r in chm), 1),
                                    "dataset": ds.get("seconds"), "solver": round(sum(r["seconds"] for r in sm), 1),
                                    "eval": ev.get("seconds")}})
        rows.append(row)
    write_json(os.path.join(cfg.out, SUMMARY + ".json"), rows)
    md = markdown_tables(rows, tables, k)
    write_file(os.path.join(cfg.out, SUMMARY + ".md"), md)
    return md


def iteration_name(iteration):
    return "base" if iteration == "base" else f"iter {iteration}"


def markdown_tables(rows, tables, k):
    def fmt(v, pct=False, spec=".3g"):
        if v is None:
            return "–"
        return f"{100 * v:.0f}%" if pct else format(v, spec) if isinstance(v, float) else str(v)
    lines = []
    if tables:
        lines += ["Greedy accuracy (%), as the paper reports it:", "", evaluation.format_table(tables)]
    names = list(dict.fromkeys(n for r in rows for n in r.get("greedy", {})))
    if any(r.get("change_vs_base") for r in rows):
        lines += ["Change in greedy accuracy against the base (points ± paired standard error):", "",
                  "| | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for r in rows:
            if r.get("change_vs_base"):
                cells = [f"{c[0]:+.1f} ± {c[1]:.1f}" if (c := r["change_vs_base"].get(n)) else "–" for n in names]
                lines.append(f"| {iteration_name(r['iteration'])} | " + " | ".join(cells) + " |")
        lines.append("")
    if k and names:
        lines += [f"mean@{k} / maj@{k} (%):", "", "| | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for r in rows:
            if f"mean@{k}" in r:
                cells = [f"{fmt(r[f'mean@{k}'].get(n), spec='.1f')} / {fmt(r[f'maj@{k}'].get(n), spec='.1f')}"
                         for n in names]
                lines.append(f"| {iteration_name(r['iteration'])} | " + " | ".join(cells) + " |")
        lines.append("")
    head = ["iter", "labels right", "in band before→after", "data set", "difficulty", "2-grams/q", "pairwise BLEU",
            "shapes", "seconds (C / D / S / E)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r.get("seconds", {})
        band = (f"{fmt(r.get('in_band_before'), True)}→{fmt(r.get('in_band_after'), True)}" if "dataset" in r
                else "–")
        cells = [iteration_name(r["iteration"]), fmt(r.get("label_accuracy"), True), band, fmt(r.get("dataset")),
                 fmt(r.get("difficulty")), fmt(r.get("distinct_2grams_per_q")), fmt(r.get("mean_pairwise_bleu")),
                 fmt(r.get("distinct_shapes")),
                 " / ".join(fmt(s.get(x)) for x in ("challenger", "dataset", "solver", "eval")) if s else "–"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    for name in names:
        levels = sorted({lv for r in rows for lv in r.get("levels_greedy", {}).get(name, {})})
        if levels:
            lines += ["", f"Greedy accuracy (%) per level, {name}:", "", "| iter | " + " | ".join(levels) + " |",
                      "|" + "---|" * (len(levels) + 1)]
            lines += ["| " + " | ".join([iteration_name(r["iteration"])] + [
                fmt(r["levels_greedy"][name].get(lv), spec=".0f") for lv in levels]) + " |"
                      for r in rows if name in r.get("levels_greedy", {})]
    return "\n".join(lines) + "\n"

# ----------------------------------------------------------------------------- figures of finished runs


def load_run(folder):
    """Per iteration (0: the base) the greedy accuracy of each benchmark and the share of labels right, and the
    per-step rewards of both roles, from `read_run`."""
    run = read_run(folder)
    out = {"settings": run["settings"], "eval": {}, "labels": {}, "challenger": [], "solver": []}
    for it, files in run["iterations"].items():
        if files["eval"]:
            out["eval"][it] = {n: t["all"]["greedy"] for n, t in files["eval"]["benchmarks"].items()}
        if "label_accuracy" in (files["dataset"] or {}):
            out["labels"][it] = 100 * files["dataset"]["label_accuracy"]
        for role in ("challenger", "solver"):
            out[role] += [(it, r["reward"]) for r in files[role]]
    return out


def _shown(value):
    """A setting as its flag takes it: [0.25, 0.75] -> 0.25 0.75, 1.0 -> 1."""
    if isinstance(value, list):
        return " ".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def groups(runs):
    """Runs that differ only in their seed form one group, named by the settings that set it apart."""
    keyed = {}
    for name, run in runs.items():
        key = json.dumps({k: v for k, v in run["settings"].items() if k != "--seed"}, sort_keys=True)
        keyed.setdefault(key, []).append(name)
    settings = [json.loads(k) for k in keyed]
    labels = []
    for s in settings:
        differ = [k for k in s if any(o.get(k) != s[k] for o in settings)]
        labels.append(" ".join(f"{k} {_shown(s[k])}" for k in differ))
    return [(label or ", ".join(os.path.basename(os.path.normpath(n)) for n in names), names)
            for label, names in zip(labels, keyed.values())]


def series(run):
    """The points of the four panels for one run: its first benchmark's greedy accuracy and its labels right per
    iteration, and each role's reward per step, the steps counted across iterations."""
    bench = next(iter(run["eval"].get(0) or next(iter(run["eval"].values()), {})), None)
    return [sorted((it, e[bench]) for it, e in run["eval"].items() if bench in e), sorted(run["labels"].items()),
            list(enumerate(v for _, v in run["challenger"])), list(enumerate(v for _, v in run["solver"]))]


def plot(folders, out):
    """One PNG: held-out greedy accuracy and labels right per iteration, and both roles' per-step rewards, of every
    run (thin lines) and the mean of each group of seeds (thick), iterations apart by dotted lines."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("drawing needs matplotlib: bash run.sh -m pip install matplotlib (rzero itself does not)") \
            from None
    runs = {f: load_run(f) for f in folders}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [(axes[0, 0], "held-out greedy accuracy (%)", "iteration (0: the base)", None),
              (axes[0, 1], "pseudo-labels right (%)", "iteration", None),
              (axes[1, 0], "Challenger reward (mean of each step)", "Challenger step", "--challenger-steps"),
              (axes[1, 1], "Solver reward (mean of each step)", "Solver step", "--solver-steps")]
    for color, (label, names) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], groups(runs)):
        per_run = [series(runs[n]) for n in names]
        for k, (ax, _, _, steps) in enumerate(panels):
            for points in (s[k] for s in per_run if s[k]):
                ax.plot(*zip(*points), color=color, lw=0.7, alpha=0.35)
            shared = set.intersection(*(set(dict(s[k])) for s in per_run))
            mean = [(x, sum(dict(s[k])[x] for s in per_run) / len(per_run)) for x in sorted(shared)]
            if mean:
                ax.plot(*zip(*mean), color=color, lw=2, marker="o" if steps is None else None, ms=4,
                        label=f"{label} (mean of {len(names)})" if len(names) > 1 else label)
            every = runs[names[0]]["settings"].get(steps)
            for x in range(every or 0, len(per_run[0][k]) if every else 0, every or 1):
                ax.axvline(x - 0.5, color="gray", lw=0.5, ls=":")
    for ax, title, xlabel, _ in panels:
        ax.xaxis.get_major_locator().set_params(integer=True)  # iterations and steps are whole numbers
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not in these runs' files\n(exact answers are known in the tiny world only)",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9, color="gray")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plot", help="figures of finished (or running) runs, from their files")
    p.add_argument("runs", nargs="+", help="run folders (the --out of bash run.sh)")
    p.add_argument("--out", default="runs.png", help="the PNG to write (default runs.png)")
    args = parser.parse_args(argv)
    try:
        print(plot(args.runs, args.out))
    except (ValueError, RZeroError) as e:
        sys.exit(f"report.py: {e}")


if __name__ == "__main__":
    main()
