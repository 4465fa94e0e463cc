"""The run folder: what a run writes and how it resumes; nothing here knows what a stage computes.

- `Run`: one run in its folder. `Run.stage` runs a stage of rzero.py unless its record says it is done, then
  records it and sends its metrics to the tracker it was handed (report.Tracker). Entering a Run takes the folder's
  lock and checks config.json against the command's settings (`settings_diff`, `HOW_IT_RUNS`).
- Files: each named once (`CONFIG`, `EVAL`, ...), written under a temporary name and renamed into place, by rank 0
  only, so a killed run never leaves half a file. A stage states each file it writes (`Run.output`); its record
  (`file_record`) names them with their sizes and sha256s, and is written last, so a stage counts as done only when
  its record exists and its files still match it (`record_mismatch`).
- One run at a time writes a folder: `take_lock` before anything is written there, `release_lock` at the end.
- Errors: `RZeroError`, and `io_error` for a failed read or write (the file, the cause, and that the same command
  resumes). Models and seeds are models.py's; the command's way in and out, command.py's.
"""
import hashlib
import json
import os
import re
import socket
import sys
import time
import uuid
from dataclasses import fields

import torch

import config
import dist


class RZeroError(Exception):
    """Bad input or a failed read or write: reported as one line, with no traceback."""


RESUME = "rerun the same command to resume after the last finished stage"

# The files of a run folder, each named here once: OUT/config.json, OUT/report.json, OUT/summary.json and .md, and in
# each iteration's folder (`iteration_folder`) what its stages write besides the role's checkpoint folder
CONFIG, REPORT, SUMMARY = "config.json", "report.json", "summary"
EVAL, DATASET, DATASET_STATS, SAMPLES = "eval.json", "dataset.jsonl", "dataset_stats.json", "challenger_samples.jsonl"


def metrics_file(role):
    """A role's per-step GRPO metrics: challenger_metrics.jsonl, solver_metrics.jsonl."""
    return f"{role}_metrics.jsonl"


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

# ----------------------------------------------------------------------------- the run and its stages


def log(line):
    if dist.is_main():
        print(line, flush=True)


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


# The settings that decide how a run goes, not what it computes: a run folder resumes, moves or extends under other
# values of these. Row limits, device and process count batch the samples otherwise, device and dtypes round them
# otherwise, and --cpu-autocast GRPO's gradients (cosine 0.999 to float32's, RESULTS.md Sec. 9.6): the same
# experiment, not the same bits. Each evaluation records its own settings (a change evaluates again); every other
# setting decides the results and must match to resume.
HOW_IT_RUNS = {"out", "iterations", "device", "sample_dtype", "max_rows", "kv_cache_gb", "compile",
               "grad_checkpointing", "cpu_autocast", "report_to", "force_lock"}
EVALUATION = {"eval_file", "eval_k", "eval_max_new_tokens", "eval_choice_max_new_tokens"}


def defining(cfg, ch, sv):
    """{flag: value} of every setting that decides what the run computes (JSON values, as config.json holds them)."""
    return {config.flag(prefix, f.name): list(v) if isinstance(v := getattr(c, f.name), tuple) else v
            for (prefix, _, _), c in zip(config.ROLES, (cfg, ch, sv)) for f in fields(c)
            if c is not cfg or f.name not in HOW_IT_RUNS | EVALUATION}


def settings_diff(old, new):
    """Each setting that decides the results and differs between a run folder's config.json and this command."""
    if "defining" not in old:
        return ["its config.json was written by an older rzero: rerun it with that version, or pick another --out"]
    a, b = {**old["defining"], "base model": old["base"]}, {**new["defining"], "base model": new["base"]}
    return [f"{k}: this command {b.get(k)!r}, the run {a.get(k)!r}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)]


def iteration_folder(out, it):
    """The folder of iteration `it` in run folder `out`: iterN, or base for 0 (the base model's evaluation)."""
    return os.path.join(out, f"iter{it}" if it else "base")


class Run:
    """One run in its folder. Entered, rank 0 holds the folder's lock (take_lock) and config.json must agree with
    this command on every setting that decides the results (HOW_IT_RUNS lists those that may differ: the
    folder's place, the hardware, more iterations); the tracker, made by `track` (report.Tracker), is open until the
    run is left."""

    def __init__(self, cfg, ch, sv, world, track):
        self.cfg, self.ch, self.sv, self.world, self.track = cfg, ch, sv, world, track
        self.lock = self.tracker = None
        self.outputs = []  # what the running stage wrote (`output`)

    def __enter__(self):
        cfg = self.cfg
        try:
            os.makedirs(cfg.out, exist_ok=True)
        except OSError as e:
            raise io_error(cfg.out, e) from None
        refused = None
        if dist.is_main():
            try:
                self.lock = take_lock(cfg.out, cfg.force_lock, say=lambda s: print(s, file=sys.stderr, flush=True))
            except RZeroError as e:
                refused = str(e)
        refused = dist.broadcast(refused)  # every rank leaves on rank 0's verdict
        if refused:
            raise RZeroError(refused)
        try:
            settings = {"defining": defining(cfg, self.ch, self.sv), "base": self.world.base_id,
                        "how_it_runs": {config.flag("", k): getattr(cfg, k) for k in sorted(HOW_IT_RUNS)}}
            path = os.path.join(cfg.out, CONFIG)
            diff = settings_diff(read_json(path), settings) if dist.is_main() and os.path.exists(path) else []
            if dist.broadcast(diff):
                raise RZeroError("\n".join([f"{cfg.out} holds a run with other settings that decide its results:",
                                            *diff, "rerun with the run's values to resume it, or pick another --out"]))
            write_json(path, settings)
            self.tracker = self.track(cfg.report_to, cfg.out, settings,
                                      {"challenger": self.ch.steps, "solver": self.sv.steps})
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.tracker:
            self.tracker.close()
        if self.lock:
            release_lock(self.cfg.out, self.lock)

    def path(self, it, name):
        """A file of iteration `it` (0: the base model's evaluation): OUT/iterN/name or OUT/base/name."""
        return os.path.join(iteration_folder(self.cfg.out, it), name)

    def output(self, it, name):
        """The path of a file or model folder that the running stage writes: the stage's record names it."""
        self.outputs.append(self.path(it, name))
        return self.outputs[-1]

    def log_step(self, role, it, row):
        self.tracker.log_step(role, it, row)

    def stage(self, it, name, fn, *args, inputs=None):
        """fn(self, it, *args) unless the stage's record says it is done; then its metrics to the tracker and one
        line. Returns the stage's path (a role's checkpoint folder). The record, written last and atomically, names
        every file the stage wrote (`output`) with its size and hash, and `inputs`: what the result depends on
        beyond config.json. A stage whose files or inputs do not match is said so in one line and redone. Rank 0
        decides for all ranks, and all wait until rank 0 has written the files."""
        label, record = f"iter {it}: {name}" if it else f"base: {name}", self.path(it, f"{name}.record.json")
        os.makedirs(os.path.dirname(record), exist_ok=True)
        redo, summary = dist.broadcast(self.redo(record, inputs) if dist.is_main() else None)
        if not redo:
            log(f"[{label}] done earlier: {summary}")
        else:
            if redo != "new":
                log(f"[{label}] {redo}: redoing the stage")
            self.outputs, cuda, t0 = [], self.cfg.device.startswith("cuda"), time.time()
            peak_memory(cuda, reset=True)
            summary = fn(self, it, *args)
            dist.barrier()
            seconds, peak = round(time.time() - t0, 1), peak_memory(cuda)
            if dist.is_main():  # hashing a checkpoint once is enough
                write_json(record, {"summary": summary, "seconds": seconds, "peak_gb": peak, "inputs": inputs,
                                    "files": file_record(self.cfg.out, self.outputs)})
            log(f"[{label}] {summary} ({seconds:.0f} s" + (f", peak {peak:.1f} GB)" if peak else ")"))
        self.tracker.stage(name, it, os.path.dirname(record))
        return self.path(it, name)

    def redo(self, record, inputs):
        """(why the stage must run, its summary): "new" without a record, the inputs that changed, or the first file
        that no longer matches the record; None when the record says the stage is done."""
        if not os.path.exists(record):
            return "new", None
        done, inputs = read_json(record), inputs or {}
        old = done.get("inputs") or {}
        changed = sorted(k for k in old.keys() | inputs.keys() if old.get(k) != inputs.get(k))
        why = f"its inputs changed ({', '.join(changed)})" if changed else record_mismatch(self.cfg.out, done)
        return why, done["summary"]
