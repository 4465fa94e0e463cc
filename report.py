"""See a run: its metrics streamed to TensorBoard or Weights & Biases while it goes, and figures of finished runs.

    bash run.sh --report-to tensorboard             # then: tensorboard --logdir runs/
    WANDB_MODE=offline bash run.sh --report-to wandb
    python report.py plot runs/a runs/b --out runs.png

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

import dist
from runfolder import RZeroError, read_json, read_jsonl, write_json


class Tracker:
    """Where a run's metrics go: nowhere, TensorBoard or W&B. `send` skips what report.json says was sent."""

    def __init__(self, backend, out, settings=None):
        self.backend = backend if dist.is_main() else "none"
        self.path, self.writer, self.run = os.path.join(out, "report.json"), None, None
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

    def steps(self, role, it, steps_per_iteration, path):
        """A finished stage's per-step metrics (a JSONL), those not yet sent: a stage found done on resume."""
        if self.backend != "none" and os.path.exists(path):  # a Solver carried over wrote none
            for row in read_jsonl(path):
                self.send(role, (it - 1) * steps_per_iteration + row["step"], row)

    def summary(self, group, it, path):
        if self.backend != "none":
            self.send(group, it, read_json(path))

    def evaluation(self, it, path):
        """A stage's eval.json: each benchmark's scores, the averages and the seconds, at step = iteration."""
        if self.backend != "none":
            ev = read_json(path)
            self.send("eval", it, {**{name: t["all"] for name, t in ev["benchmarks"].items()}, **ev["averages"],
                                   "seconds": ev["seconds"]})

    def close(self):
        if self.writer is not None:
            self.writer.close()
        if self.run is not None:
            self.run.finish()

# ----------------------------------------------------------------------------- figures of finished runs


def load_run(folder):
    """Per iteration (0: the base) the greedy accuracy of each benchmark and the share of labels right, and the
    per-step rewards of both roles, from the files a run folder holds."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ValueError(f"{folder} is not a run folder (it has no config.json)")
    run = {"settings": read_json(os.path.join(folder, "config.json")).get("defining", {}), "eval": {}, "labels": {},
           "challenger": [], "solver": []}
    its = sorted(int(d[4:]) for d in os.listdir(folder) if d.startswith("iter") and d[4:].isdigit())
    for it in [0] + its:
        d = os.path.join(folder, f"iter{it}" if it else "base")
        if os.path.exists(os.path.join(d, "eval.json")):
            run["eval"][it] = {n: t["all"]["greedy"] for n, t in read_json(os.path.join(d, "eval.json"))
                               ["benchmarks"].items()}
        if os.path.exists(os.path.join(d, "dataset_stats.json")):
            stats = read_json(os.path.join(d, "dataset_stats.json"))
            if "label_accuracy" in stats:
                run["labels"][it] = 100 * stats["label_accuracy"]
        for role in ("challenger", "solver"):
            if os.path.exists(os.path.join(d, f"{role}_metrics.jsonl")):
                run[role] += [(it, r["reward"]) for r in read_jsonl(os.path.join(d, f"{role}_metrics.jsonl"))]
    return run


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
        raise ValueError("drawing needs matplotlib: pip install matplotlib (rzero itself does not)") from None
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
