"""The replay's toolkit: the case registry, a scratch-root context that runs the real scripts, and the classifier.

Used by ``replay_table.py`` (the campaign's rows), ``replay_new.py`` (new cases of the same classes) and the
driver ``replay_cases.py``; see the driver's docstring.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "stylegan_and_segmentation"
RELIABILITY = Path("/work/shared/reliability")
CLASSES = ("TRACEBACK", "SILENT", "SECURITY", "HANG", "LOSS", "CLEAR (weak)", "CLEAR", "SKIPPED")
SHORT = {"01": "01_generate_images", "02": "02_label_images", "03": "03_train_gender_cnn",
         "04": "04_filter_images", "05": "05_run_segmentation", "06": "06_compute_property_scores",
         "07a": "07_fit_latent_directions", "07b": "07_finetune_stylegan", "08": "08_generate_with_properties",
         "09": "09_evaluate_control", "studio": "studio", "ms": "merge_shards", "rp": "run_pipeline"}
TRACEBACK = "Traceback (most recent call last)"
BIG_FILE = 50 * 2 ** 20


@dataclass
class Run:
    """One subprocess: what a user would see."""
    argv: list[str]
    rc: int | None
    out: str
    err: str
    seconds: float
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.text

    def line(self) -> str:
        """The line a user reads: the first error line of stderr, else its last line, else stdout's last."""
        for stream in (self.err, self.out):
            for ln in stream.splitlines():
                if re.match(r"\s*(error|ERROR|.*: error:)", ln) or ln.startswith("step ") and "error" in ln:
                    return ln.strip()[:300]
        streams = (self.out, self.err) if self.rc == 0 else (self.err, self.out)
        for stream in streams:  # the summary, never a progress bar
            lines = [ln for ln in stream.replace("\r", "\n").splitlines()
                     if ln.strip() and not re.search(r"\d+%\|", ln)]
            if lines:
                return lines[-1].strip()[:300]
        return ""


@dataclass
class Outcome:
    id: str
    source: str            # "table #N" or "new"
    before: str            # the table's class ("new" cases: the class tried)
    now: str
    command: str
    result: str            # exit code and the line printed
    note: str = ""
    seconds: float = 0.0


@dataclass
class Case:
    id: str
    group: str
    before: str
    fn: Callable[["Ctx"], Outcome | tuple[str, str, str, str]]
    source: str = "new"
    cls_tried: str = ""


CASES: list[Case] = []


def case(id: str, group: str, before: str, row: int | None = None, tried: str = ""):
    """Register a case; ``before`` is the table's class (or, for a new case, the class it tries)."""
    def wrap(fn):
        CASES.append(Case(id, group, before, fn, f"table #{row}" if row else "new", tried or before))
        return fn
    return wrap


# --------------------------------------------------------------------------------------------- context
class Ctx:
    """The scratch root, the demo copy and helpers to run scripts there."""

    def __init__(self, demo: Path, scratch: Path, python: str, verbose: bool = False):
        self.demo = demo.resolve()
        self.scratch = scratch.resolve()
        self.python = python
        self.verbose = verbose
        self.t = self.scratch / "t"
        self.bad = self.scratch / "bad"
        self.csv = self.scratch / "csv"
        self.k = self.scratch / "k"
        self.mnt = self.scratch / "mnt"
        for d in (self.t, self.csv, self.k, self.mnt):
            d.mkdir(parents=True, exist_ok=True)
        self._help: dict[str, str] = {}
        self.env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    # -- roots
    @property
    def ref(self) -> Path:
        return self.scratch / "demo_ref"

    def prepare(self) -> None:
        """A pristine copy of the demo (the demo folder itself is only read), the bad files and label CSVs."""
        if not (self.ref / ".done").exists():
            shutil.rmtree(self.ref, ignore_errors=True)
            _copy_tree(self.demo, self.ref, link_from=None)
            (self.ref / ".done").write_text("")
        if not (self.bad / ".done").exists():
            self.bad.mkdir(parents=True, exist_ok=True)
            r = self.run([self.python, str(RELIABILITY / "make_bad_files.py"), str(self.bad), "--demo", str(self.ref)],
                         timeout=600)
            if r.rc != 0:
                raise SystemExit(f"make_bad_files.py failed:\n{r.err[-2000:]}")
            (self.bad / ".done").write_text("")
        self._label_csvs()
        self.base = self.mkroot("base", fresh=False)

    def mkroot(self, name: str, fresh: bool = True) -> Path:
        """``t/NAME``: a copy of the demo run, the big FaceXFormer file hard-linked (scripts replace files by rename)."""
        dst = self.t / name
        if dst.exists():
            if not fresh:
                return dst
            _rmtree(dst)
        _copy_tree(self.ref, dst, link_from=self.ref)
        return dst

    def _label_csvs(self) -> None:
        hand = (self.ref / "gender_cnn/hand_labels.csv").read_text().splitlines()
        header, rows = hand[0], hand[1:]
        (self.csv / "original_fmt.csv").write_text(
            "img_name,quality,gender\n" + "".join(f"{r.split(',')[0]},{r.split(',')[2]},{r.split(',')[1]}\n" for r in rows))
        cut = rows[:9] + [",".join(rows[9].split(",")[:2])]
        (self.csv / "truncated.csv").write_text(header + "\n" + "\n".join(cut))
        (self.csv / "hand_only.csv").write_text(header + "\n" + "".join(
            ",".join(r.split(",")[:3] + ["hand"]) + "\n" for r in rows))

    # -- running
    def script(self, short: str) -> str:
        return str(SCRIPTS / f"{SHORT.get(short, short)}.py")

    def help(self, short: str) -> str:
        if short not in self._help:
            self._help[short] = self.run([self.python, self.script(short), "--help"], timeout=120).out
        return self._help[short]

    def flag(self, short: str, new: str, old: str = "--checkpoint") -> str:
        """The contract's spelling where this tree has it, else the table's (``--checkpoint`` is an alias)."""
        return new if re.search(rf"(^|\s){re.escape(new)}[\s,=]", self.help(short)) else old

    def py(self, short: str, *args: str | Path, timeout: float = 300, **kw) -> Run:
        return self.run([self.python, self.script(short), *map(str, args)], timeout=timeout, **kw)

    def run(self, argv: Sequence[str], timeout: float = 300, env: dict | None = None, signal_after: float | None = None,
            sig: int = signal.SIGINT, signal_when: Callable[[], bool] | None = None, stdin: str | None = None) -> Run:
        """Run ``argv`` niced in its own process group; optionally send ``sig`` to the group after a delay or
        once ``signal_when()`` holds (the way Ctrl-C reaches a foreground job)."""
        argv = [str(a) for a in argv]
        start = time.monotonic()
        proc = subprocess.Popen(["nice", "-n", "10", *argv], cwd=self.scratch, env=env or self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_default_sigint,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        if signal_after is not None or signal_when is not None:
            def fire():
                while proc.poll() is None:
                    elapsed = time.monotonic() - start
                    ready = signal_when() if signal_when else elapsed >= signal_after
                    if ready and (signal_after is None or elapsed >= signal_after):
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, sig)
                        return
                    time.sleep(0.1)
            threading.Thread(target=fire, daemon=True).start()
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            timed_out = True
        res = Run(argv, proc.returncode, out, err, time.monotonic() - start, timed_out)
        if self.verbose:
            print(f"    $ {_show(self, argv)}\n    rc {res.rc} ({res.seconds:.1f}s): {res.line()}", flush=True)
        return res

    @contextlib.contextmanager
    def server(self, short: str, *args: str | Path, ready: str = "http://", timeout: float = 180) -> Iterator["Server"]:
        """Start a server script; yield once it printed its URL; stop it with SIGINT, then SIGKILL."""
        argv = [self.python, self.script(short), *map(str, args)]
        log = self.scratch / f"server-{short}-{time.monotonic_ns()}.log"
        fh = log.open("w")
        proc = subprocess.Popen(["nice", "-n", "10", *argv], cwd=self.scratch, env=self.env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True, stdin=subprocess.DEVNULL,
                                preexec_fn=_default_sigint)
        srv = Server(proc, log, argv)
        try:
            deadline = time.monotonic() + timeout
            while ready not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            yield srv
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            fh.close()

    # -- file systems
    @contextlib.contextmanager
    def tmpfs(self, name: str, size: str = "1m", readonly: bool = False, fill_to_kb: int | None = None) -> Iterator[Path]:
        """A small tmpfs at ``SCRATCH/mnt/NAME`` (unmounted afterwards); raises Skip where mount is refused."""
        at = self.mnt / name
        at.mkdir(parents=True, exist_ok=True)
        subprocess.run(["umount", str(at)], capture_output=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)], capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip(f"mount -t tmpfs not permitted here ({r.stderr.strip()})")
        try:
            if readonly:
                subprocess.run(["mount", "-o", "remount,ro", str(at)], check=True, capture_output=True)
            elif fill_to_kb is not None:
                free_kb = shutil.disk_usage(at).free // 1024
                if free_kb > fill_to_kb:
                    (at / "filler.bin").write_bytes(b"\0" * ((free_kb - fill_to_kb) * 1024))
            yield at
        finally:
            for _ in range(10):
                if subprocess.run(["umount", str(at)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.5)


class Skip(Exception):
    """A case that cannot run here (the reason is recorded)."""


@dataclass
class Server:
    proc: subprocess.Popen
    log: Path
    argv: list[str]

    def url(self) -> str:
        m = re.search(r"http://[^\s]+", self.log.read_text())
        return m.group(0) if m else ""

    def port(self) -> int:
        m = re.search(r"http://[^/:\s]+:(\d+)", self.log.read_text())
        return int(m.group(1)) if m else 0

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def _default_sigint() -> None:
    """In the child: SIGINT at its default. A driver started in the background of a non-interactive shell
    inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored, so Ctrl-C cases would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _copy_tree(src: Path, dst: Path, link_from: Path | None) -> None:
    def copy(s, d):
        if link_from is not None and os.path.getsize(s) > BIG_FILE:
            os.link(s, d)
        else:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=copy, symlinks=True,
                    ignore=shutil.ignore_patterns("*.lock", ".recipe.lock"))


def _rmtree(path: Path) -> None:
    for p in path.rglob("*"):  # read-only leftovers from earlier cases
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def _show(ctx: Ctx, argv: Sequence[str]) -> str:
    """The command as the table writes it: short script names, scratch-relative paths."""
    out = []
    for a in argv:
        a = str(a)
        if a == ctx.python:
            continue
        for short, name in SHORT.items():
            if a.endswith(f"stylegan_and_segmentation/{name}.py"):
                a = short if short not in ("rp", "ms") else f"{name}.py"
        a = a.replace(str(ctx.scratch) + "/", "").replace(str(RELIABILITY) + "/", "")
        out.append(a if re.fullmatch(r"[\w@%+=:,./-]+", a) else repr(a))
    return " ".join(out)


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def tree_hash(folder: Path, pattern: str = "*") -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(Path(folder).glob(pattern)) if p.is_file()}


# ------------------------------------------------------------------------------------------ classifying
def refusal(run: Run, must: Sequence[str] = (), silent_if_ok: bool = True) -> str:
    """The class of a run that should be refused: HANG, TRACEBACK, SILENT (accepted), CLEAR or CLEAR (weak)."""
    if run.timed_out:
        return "HANG"
    if run.traceback:
        return "TRACEBACK"
    if run.rc == 0:
        return "SILENT" if silent_if_ok else "CLEAR"
    text = run.err.lower() + run.out.lower()
    return "CLEAR" if all(m.lower() in text for m in must) else "CLEAR (weak)"


def worst(*classes: str) -> str:
    for c in CLASSES:
        if c in classes:
            return c
    return "CLEAR"


def res(run: Run, extra: str = "") -> str:
    s = f"rc {run.rc}{' (timed out)' if run.timed_out else ''}: {run.line()}"
    return s + (f"; {extra}" if extra else "")


def O(ctx: Ctx, now: str, runs: Run | Sequence[Run], note: str = "", result: str | None = None) -> tuple:
    runs = [runs] if isinstance(runs, Run) else list(runs)
    cmd = " ; ".join(_show(ctx, r.argv) for r in runs)
    result = result if result is not None else " / ".join(res(r) for r in runs)
    return now, cmd, result, note
