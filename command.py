"""The way in and out of rzero.py's command: joining torchrun's process group, every failure as
one line and an exit status (`one_line_errors`), SIGTERM as Ctrl-C, and a clean exit under torchrun (`cli`).
"""
import contextlib
import os
import signal
import sys

import torch

import config
import dist
import sampler
from runfolder import RESUME, RZeroError, io_error


def join(device):
    """Join torchrun's process group, or on a GPU start a group of one (dist.init), in one line when it fails."""
    try:
        dist.init(device)
    except ValueError as e:
        raise RZeroError(str(e)) from None


@contextlib.contextmanager
def one_line_errors():
    """Errors and interruptions are one line from rank 0, with the exit status: 2 bad input, 130 interrupted, 1 a
    failed read or write or another process gone. Every file written so far stays whole (write_file)."""
    if not dist.is_main():
        sys.stdout = open(os.devnull, "w")  # rank 0 speaks for the run (--help, the summary); stderr stays open
    try:
        yield
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


def cli(main, argv=None):
    """A command: `main(argv)`, then the way out. SIGTERM stops it as Ctrl-C does. Under torchrun a process leaves by
    os._exit with main's status once its streams are flushed: every file is written and the process group destroyed
    by then, and what the interpreter's teardown does after that (a gloo thread was seen to abort it, about 1 run in
    20) must not turn a finished run into a failed one for a scheduler. Alone, the process exits as usual."""
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
