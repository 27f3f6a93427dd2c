"""The campaign's non-CLEAR and "CLEAR (weak)" rows (``cases-2026-12.md``), each replayed as its command column says.

Flag spellings that changed are translated (``Ctx.flag``: the contract's ``--stylegan-checkpoint`` and
friends where this tree has them); the check of each row is what its "expected" column asks.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

from benchmarks.replay_kit import RELIABILITY, Ctx, O, Run, Skip, case, refusal, sha, worst
from pipeline.demo import DEMO_STEP_ARGS

PWNED_ADVICE = re.compile(r"rerun with --trust-checkpoint|re-run with --trust-checkpoint|If you trust", re.I)


def demo(step: str, drop: tuple[str, ...] = ()) -> list[str]:
    """The demo's flags for a step, without the flags named in ``drop`` (and their values)."""
    args, out, skip = DEMO_STEP_ARGS[step], [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in drop:
            skip = i + 1 < len(args) and not args[i + 1].startswith("--")
            continue
        out.append(a)
    return out


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def pwned(ctx: Ctx, *runs: Run) -> bool:
    return any(ctx.bad.glob("PWNED*")) or any("PWNED" in r.out for r in runs)


def payload_case(ctx: Ctx, runs_of: list[list[str]], must: str = "posix.system") -> tuple:
    """A pickle whose global is posix.system, refused without advice to unpickle; with --trust-checkpoint too.
    ``must``: what the refusal names (a step that refuses the file before loading it names the file)."""
    for p in ctx.bad.glob("PWNED*"):
        p.unlink()
    runs = [ctx.py(*argv) for argv in runs_of]
    notes = []
    if pwned(ctx, *runs):
        notes.append("the payload ran")
    if PWNED_ADVICE.search(runs[0].err):
        notes.append("the refusal advises --trust-checkpoint")
    cls = "SECURITY" if notes else worst(*(refusal(r, must=[must]) for r in runs))
    return O(ctx, cls, runs, "; ".join(notes) or "payload not run, no trust advice")


# ------------------------------------------------------------------------------------------- security
@case("s5_pickle_payload", "security", "SECURITY", 30)
def _(ctx: Ctx):
    ck = ctx.flag("05", "--segmentation-checkpoint")
    base = ["05", "--root", ctx.base, ck, ctx.bad / "torch_payload.pth", "--crop", "full", "--out", fresh(ctx.k / "s5pay")]
    return payload_case(ctx, [base, base + ["--trust-checkpoint"]])


@case("s9_segck_payload", "security", "SECURITY", 236)
def _(ctx: Ctx):
    base = ["09", "--root", ctx.base, *demo("9"), "--segmentation-checkpoint", ctx.bad / "torch_payload.pth",
            "--out", fresh(ctx.k / "s9pay")]
    return payload_case(ctx, [base, base + ["--trust-checkpoint"]])


@case("lab_host_all", "server", "SECURITY", 278)
def _(ctx: Ctx):
    root = ctx.mkroot("lab2")
    port = free_port()
    with ctx.server("02", "--root", root, "--port", port, "--host", "0.0.0.0", "--no-browser") as srv:
        time.sleep(1)
        lan = lan_address()
        status = http_status(lan, port, "/api/state", host_header="evil.example")
        status_ok_host = http_status(lan, port, "/api/state")
        log = srv.text()
    warned = "WARNING" in log and "token" in log.lower()
    cls = "CLEAR" if warned and status == 403 and status_ok_host == 403 else "SECURITY"
    return (cls, f"02 --root t/lab2 --port {port} --host 0.0.0.0; GET http://{lan}:{port}/api/state with Host: "
            f"evil.example, then with its own Host and no token",
            f"warning printed: {warned}; evil Host -> {status}; own Host without token -> {status_ok_host}",
            first_line(log, "WARNING"))


@case("st_xorigin_jobs", "server", "SECURITY", 183)
def _(ctx: Ctx):
    port = free_port()
    with ctx.server("studio", "--root", ctx.base, "--port", port, "--no-browser", "-vv") as srv:
        studio = f"http://127.0.0.1:{port}/"
        before = json.loads(http_get(studio + "api/stats"))
        page = ("<!doctype html><script>(async () => {const s = [];"
                "for (let i = 0; i < 20; i++) {s.push(fetch(`S/api/measure?seed=${i}`, {mode: 'no-cors'}));"
                "s.push(fetch(`S/api/save?face=base&seed=${i}`, {mode: 'no-cors'}));}"
                "await Promise.allSettled(s); document.body.dataset.done = '1';})();</script>").replace("S/", studio)
        attacker, aport = serve_page(page)
        try:
            run_in_chromium(f"http://127.0.0.1:{aport}/")
            render_s = timed(lambda: http_get(studio + "api/render?seed=3"))
        finally:
            attacker.shutdown()
            attacker.server_close()
        time.sleep(1)
        after = json.loads(http_get(studio + "api/stats"))
        log = srv.text()
    ran = {k: after.get(k, 0) - before.get(k, 0) for k in after if isinstance(after.get(k), (int, float))}
    forbidden = len(re.findall(r'"GET /api/(?:measure|save)[^"]*" 403', log))
    extra_runs = ran.get("ran", 0) - 1  # the user's own render
    cls = "SECURITY" if extra_runs > 0 else ("CLEAR" if forbidden == 40 else "CLEAR (weak)")
    return (cls, "studio --root t/base; Chromium on http://127.0.0.1:<other port> sends 20 fetch(no-cors) "
                 "/api/measure and 20 /api/save; then the user's GET /api/render",
            f"stats delta {ran}; 403 lines in the log: {forbidden}; user's render answered in {render_s:.2f}s", "")


# ---------------------------------------------------------------------------------------------- hangs
def slowloris_case(ctx: Ctx, short: str, root: Path, *extra: str) -> tuple:
    port = free_port()
    with ctx.server(short, "--root", root, "--port", port, "--no-browser", *extra):
        r = ctx.run([ctx.python, RELIABILITY / "slowloris.py", port, 40, 30, 10], timeout=120)
    legit = re.findall(r"legit request \d: (.*)", r.out)
    answered = [ln for ln in legit if re.search(r"HTTP/1\.[01] \d{3}", ln) and float(ln.rsplit(" ", 1)[-1][:-1]) < 1.5]
    cls = "CLEAR" if len(legit) == 3 and len(answered) == 3 else "HANG"
    return (cls, f"{short} --port {port}; slowloris.py {port} 40 30 10",
            "; ".join(legit) or f"rc {r.rc}: {r.line()}", "")


@case("lab_slowloris", "server", "HANG", 159)
def _(ctx: Ctx):
    return slowloris_case(ctx, "02", ctx.mkroot("lab"))


@case("st_slowloris", "server", "HANG", 182)
def _(ctx: Ctx):
    return slowloris_case(ctx, "studio", ctx.base)


# ----------------------------------------------------------------------------------------------- loss
@case("demo_over_real_labels", "provenance", "LOSS", 77)
def _(ctx: Ctx):
    root = ctx.mkroot("r2h")
    imp = ctx.py("rp", "--root", root, "--from", "2", "--to", "2", "--labels", ctx.csv / "hand_only.csv")
    labels = root / "gender_cnn/hand_labels.csv"
    before = labels.read_text()
    r = ctx.py("rp", "--demo", "--root", root, "--from", "2", "--to", "2")
    kept = labels.read_text() == before
    cls = "LOSS" if not kept and not list(labels.parent.glob("*.bak*")) else refusal(r, must=["hand"])
    if not kept and cls != "LOSS":
        cls = "SILENT"
    return O(ctx, cls, [imp, r], f"hand labels kept: {kept}")


# ------------------------------------------------------------------------------------------ checkpoints
@case("s1_long", "checkpoint", "SILENT", 23)
def _(ctx: Ctx):
    r = ctx.py("01", ctx.flag("01", "--stylegan-checkpoint"), ctx.bad / "long.pth", "--num", "2",
               "--out", fresh(ctx.k / "s1long"))
    cls = refusal(r, must=["long.pth"])
    if r.rc == 0 and re.search(r"int64|integer|dtype|cast", r.text, re.I):
        cls = "CLEAR"
    return O(ctx, cls, r)


def s8(ctx: Ctx, *args, out: str = "s8x") -> Run:
    return ctx.py("08", "--root", ctx.base, *args, "--out", fresh(ctx.k / out))


@case("s8_dir_nan", "checkpoint", "CLEAR (weak)", 39)
def _(ctx: Ctx):
    r = s8(ctx, "--control", "directions", "--directions", ctx.bad / "dir_nan.pt", "--eyes", "0.7", "--num", "1")
    return O(ctx, refusal(r, must=["dir_nan.pt", "nan"]), r)


@case("s8_dir_shape", "checkpoint", "CLEAR (weak)", 44)
def _(ctx: Ctx):
    r = s8(ctx, "--control", "directions", "--directions", ctx.bad / "dir_shape.pt", "--eyes", "0.7", "--num", "1")
    return O(ctx, refusal(r, must=["dir_shape.pt", "shape"]), r)


@case("s8_dir_notckpt", "checkpoint", "CLEAR (weak)", 46)
def _(ctx: Ctx):
    runs, classes = [], []
    for name, word in (("random.pth", "random"), ("html.pth", "html"), ("lfs.pth", "lfs")):
        r = s8(ctx, "--control", "directions", "--directions", ctx.bad / name, "--num", "1")
        runs.append(r)
        c = refusal(r, must=[name, word])
        if "weights_only" in r.err and c == "CLEAR":
            c = "CLEAR (weak)"
        classes.append(c)
    return O(ctx, worst(*classes), runs)


@case("s8_dir_empty", "checkpoint", "CLEAR (weak)", 47)
def _(ctx: Ctx):
    r = s8(ctx, "--control", "directions", "--directions", ctx.bad / "empty.pth", "--num", "1")
    return O(ctx, refusal(r, must=["empty.pth", "empty"]), r)


@case("s8_ft_props", "checkpoint", "TRACEBACK", 51)
def _(ctx: Ctx):
    r = s8(ctx, "--control", "finetuned", ctx.flag("08", "--finetuned-checkpoint"), ctx.bad / "ft_props.pt", "--num", "1")
    return O(ctx, refusal(r, must=["ft_props.pt"]), r)


@case("s9_ft_props", "checkpoint", "TRACEBACK", 285)
def _(ctx: Ctx):
    r = ctx.py("09", "--root", ctx.base, *demo("9", drop=("--control",)), "--control", "finetuned",
               ctx.flag("09", "--finetuned-checkpoint"), ctx.bad / "ft_props.pt", "--out", fresh(ctx.k / "s9props"))
    cls = refusal(r, must=["ft_props.pt"])
    return O(ctx, cls, r, f"refused after {r.seconds:.0f}s")


@case("trust_stale_cache", "provenance", "SILENT", 263)
def _(ctx: Ctx):
    trust = fresh(ctx.k / "trust")
    (trust / "models").mkdir(parents=True)
    model = trust / "models/model.pt"
    make = ("import argparse, torch, os, sys\n"
            "from segmentation import save_random_facexformer_checkpoint as s\n"
            "s(sys.argv[1], seed=int(sys.argv[2]))\n"
            "ck = torch.load(sys.argv[1], weights_only=True); ck['args'] = argparse.Namespace(note='harmless')\n"
            "torch.save(ck, sys.argv[1])\n")
    a = ctx.run([ctx.python, "-c", make, model, "0"])
    ck = ctx.flag("05", "--segmentation-checkpoint")
    common = ["--root", ctx.base, ck, model, "--trust-checkpoint", "--crop", "full", "--limit", "2"]
    r1 = ctx.py("05", *common, "--out", fresh(ctx.k / "trustA"))
    b_file = trust / "b.pt"
    b = ctx.run([ctx.python, "-c", make, b_file, "1"])
    old = model.stat().st_mtime - 3600
    import os
    os.utime(b_file, (old, old))
    b_file.replace(model)
    r2 = ctx.py("05", *common, "--overwrite", "--out", fresh(ctx.k / "trustB"))
    ctx.py("05", "--root", ctx.base, ck, model, "--trust-checkpoint", "--crop", "full", "--limit", "2",
                "--out", fresh(ctx.k / "trustB_fresh"))
    if a.rc or b.rc:
        raise Skip(f"could not make the FaceXFormer files: {a.err[-300:]} {b.err[-300:]}")
    maps = lambda d: {p.name: sha(p) for p in sorted((ctx.k / d).glob("parsing_*.png"))}  # noqa: E731
    same_as_a = maps("trustA") == maps("trustB") and bool(maps("trustA"))
    cls = "SILENT" if r2.rc == 0 and same_as_a else refusal(r2, silent_if_ok=False)
    return O(ctx, cls, [r1, r2], f"maps after the swap equal model A's: {same_as_a}; model B fresh equals the swap: "
                                 f"{maps('trustB') == maps('trustB_fresh')}")


# ------------------------------------------------------------------------------------------ provenance
@case("s8_mix_checkpoints", "provenance", "SILENT", 37)
def _(ctx: Ctx):
    out = fresh(ctx.k / "s8mix")
    ft = ctx.flag("08", "--finetuned-checkpoint")
    args = ["08", "--root", ctx.base, "--control", "finetuned", "--eyes", "0.5", "--out", out]
    r1 = ctx.py(*args, "--num", "2")
    r2 = ctx.py(*args, "--num", "4", ft, ctx.base / "stylegan/finetuned/checkpoints/checkpoint_000008.pt")
    r3 = ctx.py(*args, "--num", "4", "--weights", "raw")
    classes = [("SILENT" if r.rc == 0 and re.search(r"[1-9]\d* already there", r.text) else refusal(r, silent_if_ok=False))
               for r in (r2, r3)]
    return O(ctx, worst(*classes) if r1.rc == 0 else "TRACEBACK", [r1, r2, r3])


@case("rp_step8_stale", "provenance", "SILENT", 38)
def _(ctx: Ctx):
    root = ctx.mkroot("rp8")
    ck = root / "stylegan/finetuned/checkpoints"
    shutil.copy2(ck / "checkpoint_000008.pt", ck / "checkpoint_000024.pt")
    img = root / "stylegan/finetuned/generated/000000.png"
    before = sha(img)
    r = ctx.py("rp", "--demo", "--root", root, "--from", "8", "--to", "8")
    changed = img.exists() and sha(img) != before
    cls = ("CLEAR" if changed else "SILENT") if r.rc == 0 else refusal(r, must=["--overwrite"])
    return O(ctx, cls, r, f"000000.png regenerated: {changed}")


@case("s7b_foreign_resume", "provenance", "SILENT", 57)
def _(ctx: Ctx):
    root = ctx.mkroot("r7")
    ck = root / "stylegan/finetuned/checkpoints"
    shutil.copy2(ctx.bad / "ft_props.pt", ck / "checkpoint_000024.pt")
    r = ctx.py("07b", "--root", root, *demo("7b", drop=("--steps",)), "--steps", "32")
    kept = (ck / "checkpoint_000008.pt").exists() and (ck / "checkpoint_000016.pt").exists()
    cls = refusal(r) if kept else "LOSS"
    return O(ctx, cls, r, f"run's own checkpoints kept: {kept}")


@case("s7b_resume_after_renorm", "provenance", "SILENT", 60)
def _(ctx: Ctx):
    root = ctx.mkroot("r7n")
    r6 = ctx.py("06", "--root", root, "--landmark-judge", "off", "--method", "zscore")
    r = ctx.py("07b", "--root", root, *demo("7b", drop=("--steps",)), "--steps", "24")
    cls = refusal(r, must=["normaliz"]) if r6.rc == 0 else "TRACEBACK"
    return O(ctx, cls, [r6, r])


@case("rpl_truncated", "provenance", "SILENT", 70)
def _(ctx: Ctx):
    root = ctx.mkroot("r2t")
    labels = root / "gender_cnn/hand_labels.csv"
    before = labels.read_text()
    r = ctx.py("rp", "--root", root, "--from", "2", "--to", "2", "--labels", ctx.csv / "truncated.csv")
    cls = refusal(r, must=["truncated.csv"]) if labels.read_text() == before else "SILENT"
    return O(ctx, cls, r)


@case("rpl_same_path_edited", "provenance", "SILENT", 76)
def _(ctx: Ctx):
    root = ctx.mkroot("r2e")
    mine = ctx.csv / "mylabels.csv"
    shutil.copy2(ctx.csv / "original_fmt.csv", mine)
    r1 = ctx.py("rp", "--root", root, "--from", "2", "--to", "2", "--labels", mine)
    lines = mine.read_text().splitlines()
    for i in range(1, 6):
        name, q, g = lines[i].split(",")
        lines[i] = f"{name},{1 - int(q)},{1 - int(g)}"
    mine.write_text("\n".join(lines) + "\n")
    r2 = ctx.py("rp", "--root", root, "--from", "2", "--to", "2", "--labels", mine)
    hand = {ln.split(",")[0]: ln.split(",")[1:3] for ln in (root / "gender_cnn/hand_labels.csv").read_text().splitlines()[1:]}
    want = {ln.split(",")[0]: [ln.split(",")[2], ln.split(",")[1]] for ln in lines[1:6]}
    ok = all(hand.get(k) == v for k, v in want.items())
    cls = "CLEAR" if r2.rc == 0 and ok else ("SILENT" if r2.rc == 0 else refusal(r2))
    return O(ctx, cls, [r1, r2], f"edited rows imported: {ok}")


@case("rp_labels_with_from3", "provenance", "SILENT", 214)
def _(ctx: Ctx):
    root = ctx.mkroot("rp3")
    labels = root / "gender_cnn/hand_labels.csv"
    before = labels.read_text()
    r = ctx.py("rp", "--root", root, "--from", "3", "--to", "3", "--labels", ctx.csv / "original_fmt.csv")
    cls = refusal(r, must=["--labels"]) if labels.read_text() == before or r.rc else "SILENT"
    return O(ctx, cls, r)


@case("s5_stem_collision", "provenance", "SILENT", 107)
def _(ctx: Ctx):
    from PIL import Image
    root = ctx.mkroot("rb")
    folder = root / "stylegan/synthesize_results_filtered"
    first = sorted(folder.glob("*.jpg"))[0]
    Image.new("RGB", (256, 256), (128, 128, 128)).save(first.with_suffix(".png"))
    r = ctx.py("05", "--root", root, *demo("5"))
    return O(ctx, refusal(r, must=[first.stem]), r)


@case("k8_kill_then_other_values", "provenance", "SILENT", 133)
def _(ctx: Ctx):
    out = fresh(ctx.k / "s8kill")
    args = ["08", "--root", ctx.base, "--control", "finetuned", "--num", "40", "--batch-size", "4", "--out", out]
    r1 = ctx.py(*args, "--eyes", "0.3", sig=signal.SIGKILL, signal_when=lambda: len(list(out.rglob("0*.png"))) >= 2)
    n = len(list(out.rglob("0*.png")))
    r2 = ctx.py(*args, "--eyes", "0.9")
    cls = "SILENT" if r2.rc == 0 and re.search(r"[1-9]\d* already there", r2.text) else refusal(r2, silent_if_ok=False)
    return O(ctx, cls, [r1, r2], f"{n} images on disk after the kill")


@case("cc_step8", "provenance", "SILENT", 257)
def _(ctx: Ctx):
    out = fresh(ctx.k / "cc8")
    args = ["08", "--root", ctx.base, "--control", "finetuned", "--num", "40", "--batch-size", "4", "--out", out]
    a, b = together(ctx, [[*args, "--eyes", "0.2"], [*args, "--eyes", "0.9"]])
    refused = [r for r in (a, b) if r.rc not in (0, None)]
    cls = "SILENT" if not refused else worst(*(refusal(r, must=["another"]) for r in refused),
                                             *("TRACEBACK" for r in (a, b) if r.traceback))
    return O(ctx, cls, [a, b])


@case("ms1_foreign_seed", "provenance", "SILENT", 207)
def _(ctx: Ctx):
    a, b, m = fresh(ctx.k / "shFA"), fresh(ctx.k / "shFB"), fresh(ctx.k / "shF")
    r1 = ctx.py("01", "--root", ctx.base, "--num", "40", "--shard", "0/2", "--seed", "0", "--out", a)
    r2 = ctx.py("01", "--root", ctx.base, "--num", "40", "--shard", "1/2", "--seed", "1", "--out", b)
    merge_copy(a, m)
    merge_copy(b, m)
    r = ctx.py("ms", "1", "--root", ctx.base, "--num", "40", "--seed", "1", "--out", m)
    return O(ctx, refusal(r, must=["seed"]), [r1, r2, r])


@case("ms1_foreign_ckpt", "provenance", "SILENT", 208)
def _(ctx: Ctx):
    a, b, m = fresh(ctx.k / "shCA"), fresh(ctx.k / "shCB"), fresh(ctx.k / "shC")
    r1 = ctx.py("01", "--root", ctx.base, "--num", "40", "--shard", "0/2", "--out", a)
    r2 = ctx.py("01", "--root", ctx.base, "--num", "40", "--shard", "1/2", ctx.flag("01", "--stylegan-checkpoint"),
                ctx.bad / "half.pth", "--out", b)
    merge_copy(a, m)
    merge_copy(b, m)
    r = ctx.py("ms", "1", "--root", ctx.base, "--num", "40", "--out", m)
    return O(ctx, refusal(r), [r1, r2, r])


@case("ms5_foreign_crop", "provenance", "SILENT", 210)
def _(ctx: Ctx):
    a, b, m = fresh(ctx.k / "s5shX"), fresh(ctx.k / "s5shY"), fresh(ctx.k / "s5shF")
    r1 = ctx.py("05", "--root", ctx.base, "--shard", "0/2", "--crop", "full", "--out", a)
    r2 = ctx.py("05", "--root", ctx.base, "--shard", "1/2", "--crop", "mtcnn", "--out", b)
    merge_copy(a, m)
    merge_copy(b, m)
    r = ctx.py("ms", "5", "--root", ctx.base, "--crop", "full", "--out", m)
    return O(ctx, refusal(r, must=["crop"]), [r1, r2, r])


@case("rp_swapped_fx", "provenance", "SILENT", 216)
def _(ctx: Ctx):
    root = ctx.mkroot("rpfx")
    model = root / "segmentation/models/segmentation_model.pt"
    model.unlink()  # hard-linked to the reference: never written in place
    mk = ctx.run([ctx.python, "-c", "import sys; from segmentation import save_random_facexformer_checkpoint as s; "
                  "s(sys.argv[1], seed=1)", model])
    maps = sorted((root / "segmentation/segmentation_results").glob("parsing_*.png"))
    before = sha(maps[0])
    r = ctx.py("rp", "--demo", "--root", root, "--from", "5", "--to", "5")
    changed = sha(maps[0]) != before
    cls = ("CLEAR" if changed else "SILENT") if r.rc == 0 else refusal(r)
    return O(ctx, cls if mk.rc == 0 else "SKIPPED", [r], f"{maps[0].name} re-parsed: {changed}")


@case("s7a_other_generator", "provenance", "SILENT", 218)
def _(ctx: Ctx):
    root = ctx.mkroot("r7g")
    ck = root / "stylegan/stylegan_model.pth"
    mk = ctx.run([ctx.python, "-c", "import sys; from stylegan import write_random_checkpoint as w; "
                  "from pipeline.demo import DEMO_STYLEGAN as D; w(sys.argv[1], seed=1, **D)", ck])
    r = ctx.py("07a", "--root", root, *demo("7a"), "--out", fresh(ctx.k / "s7agen"))
    return O(ctx, refusal(r) if mk.rc == 0 else "SKIPPED", r)


# -------------------------------------------------------------------------------------- flags (boundary)
@case("s8_eyes_inf", "flags", "SILENT", 31)
def _(ctx: Ctx):
    r = s8(ctx, "--control", "directions", "--eyes", "inf", "--num", "1")
    return O(ctx, refusal(r, must=["eyes"]), r)


@case("s8_eyes_nan", "flags", "SILENT", 32)
def _(ctx: Ctx):
    r = s8(ctx, "--control", "directions", "--eyes", "nan", "--num", "1")
    cls = refusal(r, must=["eyes"])
    if r.rc == 0 and re.search(r"nan", r.text, re.I):
        cls = "CLEAR"
    return O(ctx, cls, r)


@case("s1_seed_neg", "flags", "TRACEBACK", 81)
def _(ctx: Ctx):
    r = ctx.py("01", "--root", ctx.base, "--num", "2", "--seed", "-1", "--out", fresh(ctx.k / "s1seed"))
    return O(ctx, refusal(r, must=["seed"]), r)


@case("s1_dev_meta", "flags", "TRACEBACK", 85)
def _(ctx: Ctx):
    out = fresh(ctx.k / "s1meta")
    r = ctx.py("01", "--root", ctx.base, "--num", "2", "--device", "meta", "--out", out)
    return O(ctx, refusal(r, must=["meta"]), r, f"output folder left: {out.exists()}")


@case("s1_dev_mps", "flags", "TRACEBACK", 86)
def _(ctx: Ctx):
    r = ctx.py("01", "--root", ctx.base, "--num", "2", "--device", "mps", "--out", fresh(ctx.k / "s1mps"))
    return O(ctx, refusal(r, must=["mps"]), r)


@case("s1_out_file", "flags", "TRACEBACK", 88)
def _(ctx: Ctx):
    f = ctx.k / "afile"
    f.write_text("")
    r = ctx.py("01", "--root", ctx.base, "--num", "2", "--out", f)
    return O(ctx, refusal(r, must=["afile"]), r)


@case("s8_seed_neg", "flags", "CLEAR (weak)", 91)
def _(ctx: Ctx):
    r = s8(ctx, "--control", "directions", "--num", "1", "--seed", "-3")
    return O(ctx, refusal(r, must=["seed"]), r)


@case("s8_dev_meta", "flags", "TRACEBACK", 92)
def _(ctx: Ctx):
    r = s8(ctx, "--control", "directions", "--num", "1", "--device", "meta")
    return O(ctx, refusal(r, must=["meta"]), r)


@case("s3_seed_neg", "flags", "TRACEBACK", 93)
def _(ctx: Ctx):
    r = ctx.py("03", "--root", ctx.mkroot("r3"), "--seed", "-1")
    return O(ctx, refusal(r, must=["seed"]), r)


@case("st_dev_mps", "flags", "TRACEBACK", 195)
def _(ctx: Ctx):
    r = ctx.py("studio", "--root", ctx.base, "--device", "mps", "--port", free_port(), "--no-browser", timeout=120)
    cls = "SILENT" if r.timed_out else refusal(r, must=["mps"])
    return O(ctx, cls, r)


@case("st_limit_ignored", "flags", "SILENT", 196)
def _(ctx: Ctx):
    r = ctx.py("studio", "--root", ctx.base, "--limit", "3", "--port", free_port(), "--no-browser", timeout=90)
    if r.timed_out:  # it started: is --limit used or said to be ignored?
        cls = "CLEAR" if re.search(r"limit", r.text) else "SILENT"
        return O(ctx, cls, r, "the studio started (stopped after 90 s)")
    return O(ctx, refusal(r, must=["limit"]), r)


@case("s7a_cap0", "flags", "SILENT", 237)
def _(ctx: Ctx):
    r = ctx.py("07a", "--root", ctx.base, *demo("7a"), "--cap", "0", "--out", fresh(ctx.k / "s7acap0"))
    return O(ctx, refusal(r, must=["cap"]), r)


@case("s7b_lr_nan", "flags", "TRACEBACK", 247)
def _(ctx: Ctx):
    r = ctx.py("07b", "--root", ctx.base, *demo("7b"), "--lr", "nan", "--out", fresh(ctx.k / "s7blr"))
    return O(ctx, refusal(r, must=["lr"]), r)


@case("s7b_embeddim0", "flags", "SILENT", 248)
def _(ctx: Ctx):
    r = ctx.py("07b", "--root", ctx.base, *demo("7b"), "--embed-dim", "0", "--overwrite", "--out", fresh(ctx.k / "s7bemb"))
    return O(ctx, refusal(r, must=["embed"]), r)


@case("s3_lr_huge", "flags", "TRACEBACK", 249)
def _(ctx: Ctx):
    r = ctx.py("03", "--root", ctx.mkroot("r3n"), *demo("3"), "--lr", "1e12", "--overwrite")
    return O(ctx, refusal(r, silent_if_ok=False), r)


@case("dl_endpoint_bogus", "flags", "CLEAR (weak)", 252)
def _(ctx: Ctx):
    r = ctx.run([ctx.python, Path(__file__).resolve().parents[1] / "download_models.py", "--root", fresh(ctx.k / "dl"),
                 "--endpoint", "notaurl", "--inception-url", "file:///etc/passwd"], timeout=120)
    cls = refusal(r, must=["url"])
    if cls == "CLEAR" and re.search(r"no internet|connection refused", r.text, re.I):
        cls = "CLEAR (weak)"
    return O(ctx, cls, r)


@case("lab_labels_is_dir", "flags", "CLEAR (weak)", 171)
def _(ctx: Ctx):
    d = ctx.k / "labels_dir"
    d.mkdir(exist_ok=True)
    r = ctx.py("02", "--root", ctx.base, "--labels", d, "--port", free_port(), "--no-browser", timeout=60)
    cls = refusal(r, must=["labels_dir"])
    if cls == "CLEAR" and re.search(r"free some space", r.text):
        cls = "CLEAR (weak)"
    return O(ctx, "HANG" if r.timed_out else cls, r)


@case("lab_labeller_bad", "flags", "TRACEBACK", 172)
def _(ctx: Ctx):
    root = ctx.mkroot("lab3")
    port = free_port()
    with ctx.server("02", "--root", root, "--port", port, "--labeller", "bad;name!", "--no-browser") as srv:
        if srv.proc.poll() is None:
            img = sorted((root / "stylegan/synthesize_results").glob("*.jpg"))[0].name
            status = http_status("127.0.0.1", port, "/api/label", method="POST",
                                 body=json.dumps({"img": img, "gender": 1, "quality": 1}))
        else:
            status = None
        log = srv.text()
        rc = srv.proc.poll()
    if rc is not None:
        cls = "TRACEBACK" if "Traceback" in log else ("CLEAR" if "labeller" in log else "CLEAR (weak)")
        return (cls, f"02 --root t/lab3 --port {port} --labeller 'bad;name!'", f"rc {rc}: {first_line(log, 'error')}", "")
    cls = "TRACEBACK" if status == 500 or "Traceback" in log else "SILENT"
    return (cls, f"02 --root t/lab3 --port {port} --labeller 'bad;name!'; POST /api/label",
            f"started; a label POST -> {status}", "")


# --------------------------------------------------------------------------------------- step inputs
def with_file(ctx: Ctx, name: str, rel: str, change) -> Path:
    root = ctx.mkroot(name)
    change(root / rel)
    return root


def edit_csv_cell(path: Path, row: int, col: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(col)] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def s7a(ctx: Ctx, root: Path, *extra, out: str = "s7ax") -> Run:
    return ctx.py("07a", "--root", root, *demo("7a"), *extra, "--out", fresh(ctx.k / out))


W = "stylegan/synthesize_results/w.npy"
SCORES = "segmentation/property_score_results/all_scores.csv"
NORM = "segmentation/property_score_results/normalization.json"


def _w_case(variant: str):
    def fn(ctx: Ctx):
        root = with_file(ctx, f"r7a_{variant}", W, lambda p: shutil.copy2(ctx.bad / f"npy/{variant}.npy", p))
        r = s7a(ctx, root)
        return O(ctx, refusal(r, must=["w.npy"]), r)
    return fn


case("s7a_w_nan", "inputs", "TRACEBACK", 111)(_w_case("w_nan"))
case("s7a_w_obj", "inputs", "TRACEBACK", 112)(_w_case("w_obj"))
case("s7a_w_trunc", "inputs", "TRACEBACK", 113)(_w_case("w_trunc"))
case("s7a_w_int", "inputs", "SILENT", 114)(_w_case("w_int"))


@case("s7a_scores_inf", "inputs", "TRACEBACK", 117)
def _(ctx: Ctx):
    root = with_file(ctx, "r7a_sinf", SCORES, lambda p: edit_csv_cell(p, 1, "eyes", "inf"))
    r = s7a(ctx, root)
    return O(ctx, refusal(r, must=["all_scores.csv"]), r)


@case("s7a_scores_text", "inputs", "TRACEBACK", 118)
def _(ctx: Ctx):
    root = with_file(ctx, "r7a_stext", SCORES, lambda p: edit_csv_cell(p, 1, "eyes", "abc"))
    r = s7a(ctx, root)
    return O(ctx, refusal(r, must=["all_scores.csv"]), r)


@case("s7a_norm_trunc", "inputs", "TRACEBACK", 122)
def _(ctx: Ctx):
    root = with_file(ctx, "r7a_ntrunc", NORM, lambda p: p.write_bytes(p.read_bytes()[:300]))
    r = s7a(ctx, root)
    return O(ctx, refusal(r, must=["normalization.json"]), r)


@case("s7a_norm_ver", "inputs", "SILENT", 123)
def _(ctx: Ctx):
    def change(p: Path):
        d = json.loads(p.read_text())
        d["format_version"] = 7
        p.write_text(json.dumps(d))
    root = with_file(ctx, "r7a_nver", NORM, change)
    r = s7a(ctx, root)
    return O(ctx, refusal(r, must=["normalization.json"]), r)


@case("s7a_qg_inf", "inputs", "SILENT", 272)
def _(ctx: Ctx):
    root = with_file(ctx, "r7a_qg", "gender_cnn/all_image_quality_and_gender.csv",
                     lambda p: edit_csv_cell(p, 1, "gender_score", "inf"))
    r = s7a(ctx, root)
    return O(ctx, refusal(r, must=["all_image_quality_and_gender.csv"]), r)


@case("st_ft_props", "checkpoint", "TRACEBACK", 190)
def _(ctx: Ctx):
    return studio_start_case(ctx, ctx.flag("studio", "--finetuned-checkpoint"), ctx.bad / "ft_props.pt",
                             probe="/api/render?method=finetuned&seed=1", must="ft_props.pt")


@case("st_dir_nan", "checkpoint", "TRACEBACK", 191)
def _(ctx: Ctx):
    return studio_start_case(ctx, "--directions", ctx.bad / "dir_nan.pt", probe="/api/render?method=directions&seed=1",
                             must="dir_nan.pt")


def studio_start_case(ctx: Ctx, *args, probe: str, must: str) -> tuple:
    port = free_port()
    with ctx.server("studio", "--root", ctx.base, "--port", port, "--no-browser", *args) as srv:
        rc = srv.proc.poll()
        status = http_status("127.0.0.1", port, probe) if rc is None else None
        log = srv.text()
    cmd = f"studio --root t/base --port {port} {' '.join(str(a).replace(str(ctx.scratch) + '/', '') for a in args)}"
    if rc is not None:
        cls = "TRACEBACK" if "Traceback" in log else ("CLEAR" if must in log else "CLEAR (weak)")
        return cls, cmd, f"rc {rc}: {first_line(log, 'error')}", "refused at start-up"
    cls = "TRACEBACK" if status == 500 or "Traceback" in log else "SILENT"
    return cls, cmd + f"; GET {probe}", f"started; {probe} -> {status}", ""


@case("st_regen_deep", "inputs", "TRACEBACK", 188)
def _(ctx: Ctx):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("studio", '{"version": 1, "params": ' + "[" * 5000 + "]" * 5000 + "}")
    png = ctx.k / "deep.png"
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    r = ctx.py("studio", "--root", ctx.base, "--regenerate", png, "--out", ctx.k / "deep_out.png")
    return O(ctx, refusal(r, must=["deep.png"]), r)


# ------------------------------------------------------------------------------------- disk full, read-only
def full_case(ctx: Ctx, name: str, argv_of, size: str = "1m", fill_to_kb: int | None = None, must=("space",)) -> tuple:
    with ctx.tmpfs(name, size=size, fill_to_kb=fill_to_kb) as mnt:
        r = ctx.py(*argv_of(mnt))
        left = sorted(p.name for p in mnt.rglob(".tmp*")) + sorted(p.name for p in mnt.rglob("*.tmp"))
    cls = refusal(r, must=list(must), silent_if_ok=False)
    if r.rc == 0:
        cls = "SILENT"  # a full disk cannot hold the outputs
    return O(ctx, cls, r, f"temp files left: {left}" if left else "")


@case("df_step3", "boundary", "TRACEBACK", 135)
def _(ctx: Ctx):
    root = ctx.mkroot("r3df")
    models = root / "gender_cnn/models"
    with ctx.tmpfs("full3", fill_to_kb=144) as mnt:
        shutil.rmtree(models)
        (mnt / "models").mkdir()
        models.symlink_to(mnt / "models")
        r = ctx.py("03", "--root", root, *demo("3"))
        models.unlink()
        models.mkdir()
    return O(ctx, "SILENT" if r.rc == 0 else refusal(r, must=["space"]), r)


@case("df_step4", "boundary", "TRACEBACK", 136)
def _(ctx: Ctx):
    root = ctx.mkroot("r4df")
    return full_case(ctx, "full4", lambda m: ("04", "--root", root, *demo("4"), "--filtered-dir", m / "filtered"),
                     fill_to_kb=144)


@case("df_step5", "boundary", "TRACEBACK", 138)
def _(ctx: Ctx):
    return full_case(ctx, "full5", lambda m: ("05", "--root", ctx.base, *demo("5"), "--out", m / "s5"))


@case("df_step6", "boundary", "TRACEBACK", 139)
def _(ctx: Ctx):
    return full_case(ctx, "full6", lambda m: ("06", "--root", ctx.base, "--landmark-judge", "off", "--out", m / "s6"))


@case("df_step7a", "boundary", "TRACEBACK", 140)
def _(ctx: Ctx):
    return full_case(ctx, "full7a", lambda m: ("07a", "--root", ctx.base, *demo("7a"), "--out", m / "s7a"))


@case("df_step7b", "boundary", "TRACEBACK", 141)
def _(ctx: Ctx):
    return full_case(ctx, "full7b", lambda m: ("07b", "--root", ctx.base, *demo("7b", drop=("--steps",)), "--steps", "8",
                                              "--out", m / "s7b"))


@case("df_step8", "boundary", "TRACEBACK", 142)
def _(ctx: Ctx):
    return full_case(ctx, "full8", lambda m: ("08", "--root", ctx.base, "--control", "finetuned", "--num", "100",
                                             "--out", m / "s8"))


@case("df_step9", "boundary", "TRACEBACK", 143)
def _(ctx: Ctx):
    return full_case(ctx, "full9", lambda m: ("09", "--root", ctx.base, "--control", "directions", "--num-z", "1",
                                             "--num-values", "2", "--crop", "full", "--judges", "main", "--quality",
                                             "off", "--random-weight-models", "--out", m / "s9"))


def ro_case(ctx: Ctx, argv_of) -> tuple:
    with ctx.tmpfs("ro", readonly=True) as mnt:
        r = ctx.py(*argv_of(mnt))
    return O(ctx, refusal(r, must=["read-only"]), r, f"refused after {r.seconds:.0f}s")


@case("ro_step5", "boundary", "TRACEBACK", 259)
def _(ctx: Ctx):
    return ro_case(ctx, lambda m: ("05", "--root", ctx.base, "--crop", "full", "--out", m / "out"))


@case("ro_step6", "boundary", "TRACEBACK", 260)
def _(ctx: Ctx):
    return ro_case(ctx, lambda m: ("06", "--root", ctx.base, "--landmark-judge", "off", "--out", m / "out"))


@case("ro_step8", "boundary", "TRACEBACK", 261)
def _(ctx: Ctx):
    return ro_case(ctx, lambda m: ("08", "--root", ctx.base, "--control", "finetuned", "--num", "2", "--out", m / "out"))


# ------------------------------------------------------------------------------------------- Ctrl-C
def interrupt_case(ctx: Ctx, argv: list, when, after: float | None = None) -> tuple:
    r = ctx.py(*argv, sig=signal.SIGINT, signal_when=when, signal_after=after, timeout=400)
    if r.timed_out:
        return O(ctx, "HANG", r)
    if r.traceback:
        return O(ctx, "TRACEBACK", r)
    cls = "CLEAR" if r.rc in (130, -2) and re.search(r"interrupt", r.text, re.I) else ("SILENT" if r.rc == 0 else "CLEAR (weak)")
    return O(ctx, cls, r)


def appeared(folder: Path, pattern: str, n: int = 1):
    return lambda: len(list(folder.rglob(pattern))) >= n


@case("int_step1", "boundary", "TRACEBACK", 219)
def _(ctx: Ctx):
    out = fresh(ctx.k / "int1")
    return interrupt_case(ctx, ["01", "--root", ctx.base, "--num", "2000", "--out", out], appeared(out, "0*.jpg", 20))


@case("int_step5", "boundary", "TRACEBACK", 220)
def _(ctx: Ctx):
    out = fresh(ctx.k / "int5")
    return interrupt_case(ctx, ["05", "--root", ctx.base, "--crop", "full", "--batch-size", "2", "--out", out],
                          appeared(out, "parsing_*.png"))


@case("int_step7b", "boundary", "TRACEBACK", 221)
def _(ctx: Ctx):
    out = fresh(ctx.k / "int7b")
    return interrupt_case(ctx, ["07b", "--root", ctx.base, *demo("7b", drop=("--steps", "--checkpoint-every")),
                                "--steps", "40", "--checkpoint-every", "4", "--out", out],
                          appeared(out, "checkpoint_*.pt"))


@case("int_step9", "boundary", "TRACEBACK", 222)
def _(ctx: Ctx):
    out = fresh(ctx.k / "int9")
    return interrupt_case(ctx, ["09", "--root", ctx.base, *demo("9"), "--out", out], None, after=25)


@case("int_runner", "boundary", "TRACEBACK", 223)
def _(ctx: Ctx):
    root = fresh(ctx.t / "rpint")
    (root / "stylegan").mkdir(parents=True)
    shutil.copy2(ctx.base / "stylegan/stylegan_model.pth", root / "stylegan/stylegan_model.pth")
    return interrupt_case(ctx, ["rp", "--root", root, "--from", "1", "--to", "1", "--device", "cpu"],
                          appeared(root / "stylegan/synthesize_results", "0*.jpg", 20))


# ----------------------------------------------------------------------------------- concurrency, outputs
@case("cc_step1", "provenance", "CLEAR (weak)", 255)
def _(ctx: Ctx):
    out = fresh(ctx.k / "cc1")
    args = ["01", "--root", ctx.base, "--num", "400", "--out", out]
    a, b = together(ctx, [args, args])
    refused = [r for r in (a, b) if r.rc not in (0, None)]
    if any(r.traceback for r in (a, b)):
        cls = "TRACEBACK"
    elif not refused:
        cls = "CLEAR"
    else:
        cls = worst(*(refusal(r, must=["another"]) for r in refused))
    return O(ctx, cls, [a, b])


@case("s7a_out_in_images", "provenance", "SILENT", 242)
def _(ctx: Ctx):
    root = ctx.mkroot("r7o")
    r = ctx.py("07a", "--root", root, *demo("7a"), "--out", root / "stylegan/synthesize_results")
    return O(ctx, refusal(r, must=["--out"]), r)


@case("s8_out_eq_step1", "provenance", "SILENT", 280)
def _(ctx: Ctx):
    root = ctx.mkroot("r8o")
    r = ctx.py("08", "--root", root, "--control", "finetuned", "--num", "2", "--out", root / "stylegan/synthesize_results")
    return O(ctx, refusal(r, must=["--out"]), r)


@case("s9_out_in_filtered", "provenance", "SILENT", 281)
def _(ctx: Ctx):
    root = ctx.mkroot("r9o")
    r = ctx.py("09", "--root", root, "--control", "directions", "--num-z", "1", "--num-values", "2", "--crop", "full",
               "--judges", "main", "--quality", "off", "--random-weight-models",
               "--out", root / "stylegan/synthesize_results_filtered")
    return O(ctx, refusal(r, must=["--out"]), r)


@case("srv_client_reset", "server", "TRACEBACK", 289)
def _(ctx: Ctx):
    root = ctx.mkroot("lab4")
    lines = []
    for short, args in (("02", ["--root", root]), ("studio", ["--root", ctx.base])):
        port = free_port()
        with ctx.server(short, *args, "--port", port, "--no-browser") as srv:
            for _ in range(3):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /api/sta")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            time.sleep(1)
            alive = http_status("127.0.0.1", port, "/favicon.ico")
            log = srv.text()
        loud = len(re.findall(r"Traceback|ERROR", log))
        lines.append(f"{short}: {loud} ERROR/Traceback lines, then /favicon.ico -> {alive}")
    cls = "TRACEBACK" if any(not ln.split(": ")[1].startswith("0 ") for ln in lines) else "CLEAR"
    return cls, "02 and studio; 3 connections each reset (SO_LINGER 0) mid request line", "; ".join(lines), ""


# ------------------------------------------------------------------------------------------- helpers
def merge_copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file():
            shutil.copy2(p, dst / p.name)


def together(ctx: Ctx, argvs: list[list]) -> list[Run]:
    """Start the commands at the same moment (threads), return their runs."""
    import threading
    out: list[Run | None] = [None] * len(argvs)

    def go(i):
        out[i] = ctx.py(*argvs[i])
    ths = [threading.Thread(target=go, args=(i,)) for i in range(len(argvs))]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return out  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lan_address() -> str:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    v4 = [a for a in out if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a) and not a.startswith("127.")]
    if not v4:
        raise Skip("no non-loopback IPv4 address on this machine")
    return v4[0]


def http_status(addr: str, port: int, path: str, method: str = "GET", body: str | None = None,
                host_header: str | None = None) -> int | None:
    """The status of one raw request (None: no answer)."""
    hh = host_header or f"{addr}:{port}"
    data = body.encode() if body else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: {hh}\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    try:
        with socket.create_connection((addr, port), timeout=30) as s:
            s.sendall(head.encode() + b"\r\n" + data)
            resp = b""
            while b"\r\n" not in resp:
                chunk = s.recv(4096)
                if not chunk:
                    break
                resp += chunk
    except OSError:
        return None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


def http_get(url: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def timed(fn) -> float:
    t0 = time.monotonic()
    try:
        fn()
    except OSError:
        return float("inf")
    return time.monotonic() - t0


def first_line(log: str, word: str) -> str:
    for ln in log.splitlines():
        if word.lower() in ln.lower():
            return ln.strip()[:300]
    lines = [ln for ln in log.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def serve_page(html: str):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def run_in_chromium(url: str) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise Skip(f"playwright not installed: {exc}") from None
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        raise Skip("no /usr/bin/chromium")
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=args)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("document.body.dataset.done === '1'", timeout=60_000)
        finally:
            browser.close()
