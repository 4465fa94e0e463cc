"""The run folder: every file a run writes, written whole or not at all, the record of each finished stage, and
the summary tables. rzero.py's stages call these; nothing here knows what a stage computes.

A file is written under a temporary name and renamed into place, by rank 0 only, so a killed run never leaves half
a file. A stage's record (`file_record`) names each file the stage wrote with its size and sha256; it is written
last, so a stage counts as done only when its record exists and its files still match it (`record_mismatch`).
Every failed read or write becomes one line (`io_error`): the file, the cause, and that the same command resumes.
One run at a time writes a folder: `take_lock` before anything is written there, `release_lock` at the end.
"""
import hashlib
import json
import os
import re
import socket
import sys
import time
import uuid

import dist
import evaluation


class RZeroError(Exception):
    """Bad input or a failed read or write: reported as one line, with no traceback."""


RESUME = "rerun the same command to resume after the last finished stage"


def io_error(path, e):
    """One line for a failed write or read (no space, no permission, a read-only file system, a damaged file)."""
    cause = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
    cause = re.search(r'message: "([^"]+)"', cause).group(1) if 'message: "' in cause else cause  # safetensors' Rust
    return RZeroError(f"{path}: {cause}; once that is fixed, {RESUME}")


LOCK = "rzero.lock"


class LockHeld(RZeroError):
    """The run folder is another process's: its holder in words and what to do, in one line."""


def _process_start(pid):
    """The boot-relative start tick of a live process on this host (Linux's /proc), None where it cannot be read:
    a pid that the system gave to a newer process since is then told from the lock's holder."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(holder):
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    started = _process_start(holder["pid"])
    return started is None or holder.get("tick") is None or started == holder["tick"]


def _holder_line(h):
    return f"host {h.get('host')}, pid {h.get('pid')}, started {h.get('started')}, command: {h.get('command')}"


def take_lock(out, force=False, say=print):
    """Make this process the one writer of the run folder `out`, or raise LockHeld naming the holder.

    The lock is `out/rzero.lock`, a JSON of its holder (host, pid, start, command), created whole: written under a
    name of its own, then hard-linked to the lock's name, which fails when the lock exists (an atomic exclusive
    create that holds on NFS too, where O_EXCL may not). A lock whose holder is gone (this host, its pid no longer
    the process that took it) is taken over with one line; a lock from another host only with force. A kill at any
    point leaves at most the lock, which the same command then takes over. Returns the holder record."""
    path, me = os.path.join(out, LOCK), {
        "host": socket.gethostname(), "pid": os.getpid(), "tick": _process_start(os.getpid()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv), "token": uuid.uuid4().hex}
    mine = f"{path}.{me['token']}"
    write_file(mine, json.dumps(me) + "\n")
    try:
        while True:
            try:
                os.link(mine, path)
                return me
            except FileExistsError:
                pass
            except OSError as e:
                raise io_error(path, e) from None
            try:
                with open(path) as f:
                    holder = json.load(f)
            except FileNotFoundError:  # released or taken over while we looked: try again
                continue
            except (OSError, ValueError) as e:
                raise io_error(path, e) from None
            here = holder.get("host") == me["host"]
            if (here and _alive(holder)) or (not here and not force):
                how = (f"wait for it to end or stop it (kill {holder.get('pid')})" if here else
                       f"if that run is gone (its machine lost or stopped), rerun with --force-lock to take the folder "
                       f"over; a run still alive on {holder.get('host')} would then share it")
                raise LockHeld(f"{out} is in use by another run ({_holder_line(holder)}): {how}")
            # The holder is gone. Move its lock aside; if what was moved is not the lock just read, another process
            # took the folder over in between: its lock goes back and the next look names it.
            aside = f"{path}.stale.{me['token']}"
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            with open(aside) as f:
                moved = json.load(f)
            if moved.get("token") != holder.get("token"):
                os.link(aside, path)
                os.remove(aside)
                continue
            os.remove(aside)
            why = "no longer running" if here else "on another host (--force-lock)"
            say(f"rzero: the lock of {out} was held by a run that is {why} ({_holder_line(holder)}): taking it over")
    finally:
        if os.path.exists(mine):
            os.remove(mine)


def release_lock(out, holder):
    """Remove the lock if it is still `holder`'s (a run taken over by --force-lock leaves the new holder's alone)."""
    path = os.path.join(out, LOCK)
    try:
        with open(path) as f:
            if json.load(f).get("token") != holder["token"]:
                return
        os.remove(path)
    except (OSError, ValueError):
        pass


def write_file(path, text):
    """Rank 0 writes, under a temporary name renamed into place; the other ranks write nothing."""
    if not dist.is_main():
        return
    try:
        with open(f"{path}.tmp", "w") as f:
            f.write(text)
        os.replace(f"{path}.tmp", path)
    except BaseException as e:
        if os.path.exists(f"{path}.tmp"):
            os.remove(f"{path}.tmp")
        if isinstance(e, OSError):
            raise io_error(path, e) from None
        raise


def write_json(path, obj):
    write_file(path, json.dumps(obj, indent=1) + "\n")


def write_jsonl(path, rows):
    write_file(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise io_error(path, e) from None


def file_record(root, paths):
    """{path relative to root: {"bytes", "sha256"}} of every file under `paths` (files or folders). A stage's
    record: checked on resume, so a truncated or missing file is found before anything reads it. Hashing reads
    every byte once (about 10 s for a 16 GB checkpoint), small beside a stage of a real run."""
    walk = lambda p: os.walk(p) if os.path.isdir(p) else [(os.path.dirname(p), [], [os.path.basename(p)])]  # noqa: E731
    files = sorted(os.path.join(d, f) for p in paths if os.path.exists(p)  # what the stage wrote (it may skip one)
                   for d, _, fs in walk(p) for f in fs)
    return {os.path.relpath(path, root): {"bytes": os.path.getsize(path), "sha256": sha256_of(path)} for path in files}


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def record_mismatch(root, record):
    """None when every file of a stage's record is there as recorded; else the first difference, in words."""
    for rel, want in record["files"].items():
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            return f"{rel} is missing"
        if os.path.getsize(path) != want["bytes"]:
            return f"{rel} holds {os.path.getsize(path)} bytes, its record {want['bytes']}"
        if sha256_of(path) != want["sha256"]:
            return f"{rel} is not the file its record names (another sha256)"
    return None


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def summarize(cfg):
    """The final tables, from the files the stages wrote: summary.json and summary.md in the output folder."""
    k, rows, tables, base = cfg.eval_k, [], {}, {}
    for it in range(0, cfg.iterations + 1):
        d = os.path.join(cfg.out, "base" if it == 0 else f"iter{it}")
        ev = read_json(os.path.join(d, "eval.json")) if os.path.exists(os.path.join(d, "eval.json")) else {}
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
            ds = read_json(os.path.join(d, "dataset_stats.json"))
            chm = read_jsonl(os.path.join(d, "challenger_metrics.jsonl"))
            sm = read_jsonl(os.path.join(d, "solver_metrics.jsonl"))
            row.update({"label_accuracy": ds.get("label_accuracy"), "in_band_before": chm[0].get("in_band")
                        if chm else None, "in_band_after": ds.get("in_band"), "dataset": ds["kept"],
                        **{key: ds.get(key) for key in ("difficulty", "distinct_2grams_per_q", "mean_pairwise_bleu",
                                                        "distinct_shapes")},
                        "seconds": {"challenger": round(sum(r["seconds"] for r in chm), 1),
                                    "dataset": ds["seconds"], "solver": round(sum(r["seconds"] for r in sm), 1),
                                    "eval": ev.get("seconds")}})
        rows.append(row)
    write_json(os.path.join(cfg.out, "summary.json"), rows)
    md = markdown_tables(rows, tables, k)
    write_file(os.path.join(cfg.out, "summary.md"), md)
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
