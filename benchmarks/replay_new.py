"""New hostile cases of the campaign's classes that its table does not list (issue 19, task 3).

Each tries another step, flag, file kind or folder with the same kind of bad input as a table row; the
class it tries is the case's "before" (the class a failure would be).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

from benchmarks.replay_kit import Ctx, O, case, refusal, worst
from benchmarks.replay_table import (NORM, SCORES, appeared, demo, free_port, fresh, full_case,
                                     http_status, interrupt_case, merge_copy, payload_case, ro_case, together, with_file)


# ------------------------------------------------------------------------------ flags: NaN, inf, range
def flag_case(short: str, *args, must: str, root_fn=None, out: str | None = None):
    def fn(ctx: Ctx):
        root = root_fn(ctx) if root_fn else ctx.base
        extra = ["--out", fresh(ctx.k / out)] if out else []
        r = ctx.py(short, "--root", root, *args, *extra)
        return O(ctx, refusal(r, must=[must]), r)
    return fn


case("n_s1_psi_inf", "flags", "TRACEBACK")(flag_case("01", "--num", "2", "--trunc-psi", "inf", must="psi", out="n1psi"))
case("n_s8_haircolor_ninf", "flags", "SILENT")(
    flag_case("08", "--control", "directions", "--num", "1", "--hair-color=-inf", must="hair", out="n8hc"))
case("n_s8_dev_mps", "flags", "TRACEBACK")(
    flag_case("08", "--control", "directions", "--num", "1", "--device", "mps", must="mps", out="n8mps"))
case("n_s9_seed_neg", "flags", "TRACEBACK")(
    flag_case("09", *demo("9"), "--seed", "-2", must="seed", out="n9seed"))
case("n_s7a_seed_neg", "flags", "TRACEBACK")(flag_case("07a", *demo("7a"), "--seed", "-5", must="seed", out="n7aseed"))
case("n_s7b_lrd_inf", "flags", "TRACEBACK")(flag_case("07b", *demo("7b"), "--lr-d", "inf", must="lr", out="n7blrd"))
case("n_s7b_ema_nan", "flags", "TRACEBACK")(flag_case("07b", *demo("7b"), "--ema-beta", "nan", must="ema", out="n7bema"))
case("n_s3_lr_nan", "flags", "TRACEBACK")(
    flag_case("03", *demo("3"), "--lr", "nan", must="lr", root_fn=lambda c: c.mkroot("n3lr")))
case("n_s3_wd_inf", "flags", "TRACEBACK")(
    flag_case("03", *demo("3"), "--weight-decay", "inf", must="weight", root_fn=lambda c: c.mkroot("n3wd")))
case("n_s4_threshold_inf", "flags", "SILENT")(
    flag_case("04", "--gender-threshold", "inf", must="threshold", root_fn=lambda c: c.mkroot("n4thr")))
case("n_s9_dev_meta", "flags", "TRACEBACK")(flag_case("09", *demo("9"), "--device", "meta", must="meta", out="n9meta"))
case("n_s6_out_file", "flags", "TRACEBACK")(lambda ctx: _out_file(ctx, "06", "--landmark-judge", "off"))
case("n_s5_out_file", "flags", "TRACEBACK")(lambda ctx: _out_file(ctx, "05", "--crop", "full"))
case("n_s7a_out_file", "flags", "TRACEBACK")(lambda ctx: _out_file(ctx, "07a", *demo("7a")))


def _out_file(ctx: Ctx, short: str, *args) -> tuple:
    f = ctx.k / f"afile_{short}"
    f.write_text("")
    r = ctx.py(short, "--root", ctx.base, *args, "--out", f)
    return O(ctx, refusal(r, must=[f.name]), r)


# --------------------------------------------------------------------------- readers: other file kinds
@case("n_s7b_scores_cut_row", "inputs", "SILENT")
def _(ctx: Ctx):
    def cut(p: Path):
        lines = p.read_text().splitlines()
        p.write_text("\n".join(lines[:-1] + [",".join(lines[-1].split(",")[:2])]))
    root = with_file(ctx, "n7bcut", SCORES, cut)
    r = ctx.py("07b", "--root", root, *demo("7b"), "--out", fresh(ctx.k / "n7bcut"))
    return O(ctx, refusal(r, must=["all_scores.csv"]), r)


@case("n_s6_crops_cut_row", "inputs", "SILENT")
def _(ctx: Ctx):
    crops = "segmentation/segmentation_results/crops.csv"

    def cut(p: Path):
        lines = p.read_text().splitlines()
        p.write_text("\n".join(lines[:-1] + [lines[-1][: len(lines[-1]) // 3]]))
    root = with_file(ctx, "n6cut", crops, cut)
    r = ctx.py("06", "--root", root, "--landmark-judge", "off", "--out", fresh(ctx.k / "n6cut"))
    return O(ctx, refusal(r, must=["crops.csv"]), r)


@case("n_s9_norm_trunc", "inputs", "TRACEBACK")
def _(ctx: Ctx):
    root = with_file(ctx, "n9norm", NORM, lambda p: p.write_bytes(p.read_bytes()[:200]))
    r = ctx.py("09", "--root", root, *demo("9"), "--out", fresh(ctx.k / "n9norm"))
    return O(ctx, refusal(r, must=["normalization.json"]), r)


@case("n_s1_latents_trunc", "inputs", "TRACEBACK")
def _(ctx: Ctx):
    out = fresh(ctx.k / "n1lat")
    shutil.copytree(ctx.base / "stylegan/synthesize_results", out)
    lat = out / "latents.npy"
    lat.write_bytes(lat.read_bytes()[:300])
    r = ctx.py("01", "--root", ctx.base, "--num", "48", "--batch-size", "16", "--out", out)
    cls = refusal(r, must=["latents.npy"])
    if r.rc == 0:  # regenerated the file instead: fine if it is whole again
        import numpy as np
        try:
            ok = np.load(lat).shape[0] == 48
        except Exception:  # noqa: BLE001
            ok = False
        cls = "CLEAR" if ok else "SILENT"
    return O(ctx, cls, r)


@case("n_s4_labels_cut_row", "inputs", "SILENT")
def _(ctx: Ctx):
    root = ctx.mkroot("n4cut")
    r = ctx.py("04", "--root", root, "--labels", ctx.csv / "truncated.csv", *demo("4"))
    return O(ctx, refusal(r, must=["truncated.csv"]), r)


@case("n_s3_labels_cut_row", "inputs", "SILENT")
def _(ctx: Ctx):
    root = ctx.mkroot("n3cut")
    r = ctx.py("03", "--root", root, "--labels", ctx.csv / "truncated.csv", *demo("3"), "--overwrite")
    return O(ctx, refusal(r, must=["truncated.csv"]), r)


# ------------------------------------------------------------------------------------- FIFOs (hangs)
def fifo_case(ctx: Ctx, name: str, rel: str, argv_of, optional: str = "") -> tuple:
    root = ctx.mkroot(name)
    p = root / rel
    p.unlink()
    os.mkfifo(p)
    r = ctx.py(*argv_of(root), timeout=120)
    if r.rc == 0 and optional:  # the step treats a FIFO as an absent file, and that file is optional
        return O(ctx, "CLEAR", r, f"{p.name} is optional: {optional}")
    return O(ctx, "HANG" if r.timed_out else refusal(r, must=[p.name]), r)


case("n_fifo_w_npy", "inputs", "HANG")(lambda ctx: fifo_case(
    ctx, "nfifo_w", "stylegan/synthesize_results/w.npy", lambda root: ("07a", "--root", root, *demo("7a"),
                                                                      "--out", fresh(ctx.k / "nfifo_w")),
    optional="without w.npy step 7a maps latents.npy (stylegan.directions_step.load_w_codes)"))
case("n_fifo_all_scores_7b", "inputs", "HANG")(lambda ctx: fifo_case(
    ctx, "nfifo_s", SCORES, lambda root: ("07b", "--root", root, *demo("7b"), "--out", fresh(ctx.k / "nfifo_s"))))


@case("n_fifo_rp_labels", "inputs", "HANG")
def _(ctx: Ctx):
    root = ctx.mkroot("nfifo_l")
    fifo = ctx.k / "labels_fifo.csv"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    r = ctx.py("rp", "--root", root, "--from", "2", "--to", "2", "--labels", fifo, timeout=120)
    return O(ctx, "HANG" if r.timed_out else refusal(r, must=["labels_fifo.csv"]), r)


@case("n_fifo_directions", "inputs", "HANG")
def _(ctx: Ctx):
    fifo = ctx.k / "dir_fifo.pt"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    r = ctx.py("08", "--root", ctx.base, "--control", "directions", "--directions", fifo, "--num", "1",
               "--out", fresh(ctx.k / "nfifo_d"), timeout=120)
    return O(ctx, "HANG" if r.timed_out else refusal(r, must=["dir_fifo.pt"]), r)


# --------------------------------------------------------------------------------- payloads elsewhere
def _payload(short: str, *args, flag: str | None = None, new_flag: str | None = None, must: str = "posix.system"):
    def fn(ctx: Ctx):
        f = ctx.flag(short, new_flag) if new_flag else flag
        return payload_case(ctx, [[short, "--root", ctx.base, *args, f, ctx.bad / "torch_payload.pth"]], must=must)
    return fn


case("n_s7a_stylegan_payload", "security", "SECURITY")(
    _payload("07a", *demo("7a"), "--out", "k/n7apay", flag="--checkpoint", new_flag="--stylegan-checkpoint",
             must="torch_payload.pth"))
case("n_s8_refine_payload", "security", "SECURITY")(
    _payload("08", "--control", "directions", "--num", "1", "--out", "k/n8pay", flag="--refine"))


@case("n_studio_directions_payload", "security", "SECURITY")
def _(ctx: Ctx):
    for p in ctx.bad.glob("PWNED*"):
        p.unlink()
    r = ctx.py("studio", "--root", ctx.base, "--port", free_port(), "--no-browser", "--directions",
               ctx.bad / "torch_payload.pth", timeout=90)
    ran = any(ctx.bad.glob("PWNED*")) or "PWNED" in r.out
    cls = "SECURITY" if ran else ("SILENT" if r.timed_out else refusal(r, must=["posix.system"]))
    return O(ctx, cls, r, "the studio started with it" if r.timed_out else "")


@case("n_s7b_resume_payload", "security", "SECURITY")
def _(ctx: Ctx):
    root = ctx.mkroot("n7bpay")
    ck = root / "stylegan/finetuned/checkpoints"
    shutil.copy2(ctx.bad / "torch_payload.pth", ck / "checkpoint_000024.pt")
    for p in ctx.bad.glob("PWNED*"):
        p.unlink()
    r = ctx.py("07b", "--root", root, *demo("7b", drop=("--steps",)), "--steps", "32")
    ran = any(ctx.bad.glob("PWNED*")) or "PWNED" in r.out
    kept = (ck / "checkpoint_000016.pt").exists()
    return O(ctx, "SECURITY" if ran else (refusal(r, must=["posix.system"]) if kept else "LOSS"), r,
             f"payload ran: {ran}; own checkpoints kept: {kept}")


@case("n_s9_inception_payload", "security", "SECURITY")
def _(ctx: Ctx):
    for p in ctx.bad.glob("PWNED*"):
        p.unlink()
    r = ctx.py("09", "--root", ctx.base, *demo("9", drop=("--quality", "--quality-num")), "--quality", "inception",
               "--inception", ctx.bad / "torch_payload.pth", "--out", fresh(ctx.k / "n9inc"))
    ran = any(ctx.bad.glob("PWNED*")) or "PWNED" in r.out
    cls = "SECURITY" if ran else ("CLEAR" if not r.traceback and (r.rc != 0 or "Inception" in r.text) else "TRACEBACK")
    return O(ctx, cls, r, f"payload ran: {ran}")


@case("n_studio_host_all", "server", "SECURITY")
def _(ctx: Ctx):
    from benchmarks.replay_table import first_line, lan_address
    port = free_port()
    with ctx.server("studio", "--root", ctx.base, "--port", port, "--host", "0.0.0.0", "--no-browser") as srv:
        time.sleep(1)
        lan = lan_address()
        evil = http_status(lan, port, "/api/info", host_header="evil.example")
        no_token = http_status(lan, port, "/api/render?seed=1")
        log = srv.text()
    warned = "WARNING" in log and "token" in log.lower()
    cls = "CLEAR" if warned and evil == 403 and no_token == 403 else "SECURITY"
    return (cls, f"studio --host 0.0.0.0 --port {port}; GET from {lan} with Host evil.example, then without a token",
            f"warning: {warned}; evil Host -> {evil}; no token -> {no_token}", first_line(log, "WARNING"))


@case("n_lab_same_site_post", "server", "SECURITY")
def _(ctx: Ctx):
    root = ctx.mkroot("nlab_xs")
    port = free_port()
    journal = root / "gender_cnn/hand_labels.journal.jsonl"
    with ctx.server("02", "--root", root, "--port", port, "--no-browser"):
        before = journal.read_text() if journal.exists() else ""
        img = sorted((root / "stylegan/synthesize_results").glob("*.jpg"))[-1].name
        body = json.dumps({"img": img, "gender": 1, "quality": 0}).encode()
        statuses = []
        for hdr in ("Sec-Fetch-Site: same-site", "Origin: http://127.0.0.1:1", "Origin: null"):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                s.sendall((f"POST /api/label HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{hdr}\r\nConnection: close\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
                statuses.append(s.recv(100).split(b"\r\n")[0].decode())
        time.sleep(0.5)
        after = journal.read_text() if journal.exists() else ""
    written = after != before
    cls = "SECURITY" if written or not all(" 403 " in s + " " for s in statuses) else "CLEAR"
    return (cls, f"02 --port {port}; POST /api/label with Sec-Fetch-Site: same-site / Origin: http://127.0.0.1:1 / "
                 "Origin: null", f"{statuses}; journal changed: {written}", "")


@case("n_lab_slow_body", "server", "HANG")
def _(ctx: Ctx):
    root = ctx.mkroot("nlab_sb")
    port = free_port()
    with ctx.server("02", "--root", root, "--port", port, "--no-browser"):
        slow = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall((f"POST /api/label HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                       "Content-Length: 1000\r\n\r\n{").encode())
            slow.append(s)
        t0 = time.monotonic()
        answers = []
        for _ in range(3):
            t = time.monotonic()
            st = http_status("127.0.0.1", port, "/api/state")
            answers.append(f"{st} in {time.monotonic() - t:.2f}s")
            for s in slow:
                try:
                    s.sendall(b" ")
                except OSError:
                    pass
            time.sleep(2)
        closed = 0
        time.sleep(max(0, 12 - (time.monotonic() - t0)))
        for s in slow:
            try:
                s.settimeout(0.2)
                closed += s.recv(100) != b"" or 1
            except OSError:
                pass
            s.close()
    ok = all(a.startswith("200 in 0") or a.startswith("200 in 1.") for a in answers)
    return ("CLEAR" if ok else "HANG", f"02 --port {port}; 40 POSTs whose 1000-byte body trickles a byte every 2 s; "
                                       "3 normal GET /api/state", f"{answers}; slow connections answered/closed: {closed}",
            "")


# ------------------------------------------------------------------------------- interrupts, disk, ro
case("n_int_step6", "boundary", "TRACEBACK")(lambda ctx: interrupt_case(
    ctx, ["06", "--root", ctx.base, "--out", fresh(ctx.k / "nint6")], None, after=12))
case("n_int_step8", "boundary", "TRACEBACK")(lambda ctx: interrupt_case(
    ctx, ["08", "--root", ctx.base, "--control", "finetuned", "--num", "400", "--out", fresh(ctx.k / "nint8")],
    appeared(ctx.k / "nint8", "0*.png", 3)))
case("n_int_step3", "boundary", "TRACEBACK")(lambda ctx: interrupt_case(
    ctx, ["03", "--root", ctx.mkroot("nint3"), *demo("3", drop=("--epochs",)), "--epochs", "50", "--overwrite"],
    None, after=20))
case("n_int_step7a", "boundary", "TRACEBACK")(lambda ctx: interrupt_case(
    ctx, ["07a", "--root", ctx.base, *demo("7a"), "--out", fresh(ctx.k / "nint7a")], None, after=6))
case("n_ro_step7a", "boundary", "TRACEBACK")(lambda ctx: ro_case(
    ctx, lambda m: ("07a", "--root", ctx.base, *demo("7a"), "--out", m / "out")))
case("n_ro_step7b", "boundary", "TRACEBACK")(lambda ctx: ro_case(
    ctx, lambda m: ("07b", "--root", ctx.base, *demo("7b"), "--out", m / "out")))
case("n_ro_step9", "boundary", "TRACEBACK")(lambda ctx: ro_case(
    ctx, lambda m: ("09", "--root", ctx.base, *demo("9"), "--out", m / "out")))
case("n_ro_step4", "boundary", "TRACEBACK")(lambda ctx: ro_case(
    ctx, lambda m: ("04", "--root", ctx.mkroot("nro4"), *demo("4"), "--filtered-dir", m / "out")))
case("n_df_step1_merge", "boundary", "TRACEBACK")(lambda ctx: _df_merge(ctx))
case("n_df_studio_save", "boundary", "TRACEBACK")(lambda ctx: full_case(
    ctx, "nfull_regen", lambda m: ("studio", "--root", ctx.base, "--regenerate", _saved_face(ctx), "--out",
                                   m / "face.png"), size="16k", fill_to_kb=1))


def _df_merge(ctx: Ctx) -> tuple:
    """merge_shards.py 1 where both shards' files fit but the merged lists (latents, w, CSV) do not."""
    a, b = fresh(ctx.k / "nshA"), fresh(ctx.k / "nshB")
    ctx.py("01", "--root", ctx.base, "--num", "40", "--shard", "0/2", "--out", a)
    ctx.py("01", "--root", ctx.base, "--num", "40", "--shard", "1/2", "--out", b)
    files = [p for d in (a, b) for p in d.iterdir() if p.is_file()]
    need_kb = sum(-(-p.stat().st_size // 4096) * 4 for p in files) + 8

    def argv(m: Path):
        merge_copy(a, m / "sh")
        merge_copy(b, m / "sh")
        return ("ms", "1", "--root", ctx.base, "--num", "40", "--out", m / "sh")
    return full_case(ctx, "nfull_ms", argv, size=f"{need_kb}k")


def _saved_face(ctx: Ctx) -> Path:
    """A face saved by the studio (its --regenerate input), made once through the running studio."""
    face = ctx.k / "saved_face.png"
    if face.exists():
        return face
    from benchmarks.replay_table import http_get
    port = free_port()
    with ctx.server("studio", "--root", ctx.base, "--port", port, "--no-browser"):
        data = http_get(f"http://127.0.0.1:{port}/api/save?face=base&seed=3")
    if not data.startswith(b"\x89PNG"):
        from benchmarks.replay_kit import Skip
        raise Skip(f"the studio's save answered {data[:200]!r}")
    face.write_bytes(data)
    return face


# ------------------------------------------------------------------------------ provenance elsewhere
@case("n_s5_resume_other_model", "provenance", "SILENT")
def _(ctx: Ctx):
    out = fresh(ctx.k / "n5swap")
    other = ctx.k / "fx_other.pt"
    if not other.exists():
        ctx.run([ctx.python, "-c", "import sys; from segmentation import save_random_facexformer_checkpoint as s; "
                 "s(sys.argv[1], seed=2)", other])
    ck = ctx.flag("05", "--segmentation-checkpoint")
    r1 = ctx.py("05", "--root", ctx.base, "--crop", "full", "--limit", "3", "--out", out)
    r2 = ctx.py("05", "--root", ctx.base, "--crop", "full", "--limit", "3", ck, other, "--out", out)
    cls = "SILENT" if r2.rc == 0 and re.search(r"skipped[^,;]*\b[1-9]", r2.text) else refusal(r2, silent_if_ok=False)
    return O(ctx, cls, [r1, r2])


@case("n_s1_resume_other_psi", "provenance", "SILENT")
def _(ctx: Ctx):
    out = fresh(ctx.k / "n1psi2")
    r1 = ctx.py("01", "--root", ctx.base, "--num", "4", "--out", out)
    r2 = ctx.py("01", "--root", ctx.base, "--num", "8", "--trunc-psi", "0.5", "--out", out)
    return O(ctx, refusal(r2, must=["psi"]), [r1, r2])


@case("n_s7a_rerun_other_cap", "provenance", "SILENT")
def _(ctx: Ctx):
    out = fresh(ctx.k / "n7acap")
    r1 = ctx.py("07a", "--root", ctx.base, *demo("7a"), "--out", out)
    before = (out / "directions.pt").read_bytes() if (out / "directions.pt").exists() else b""
    r2 = ctx.py("07a", "--root", ctx.base, *demo("7a"), "--cap", "1.5", "--out", out)
    kept = (out / "directions.pt").exists() and (out / "directions.pt").read_bytes() == before
    cls = ("SILENT" if kept else "CLEAR") if r2.rc == 0 else refusal(r2, must=["cap"])
    return O(ctx, cls, [r1, r2], f"old directions.pt kept unchanged: {kept}")


@case("n_s8_other_directions", "provenance", "SILENT")
def _(ctx: Ctx):
    out = fresh(ctx.k / "n8dir")
    args = ["08", "--root", ctx.base, "--control", "directions", "--eyes", "0.6", "--out", out]
    r1 = ctx.py(*args, "--num", "2")
    r2 = ctx.py(*args, "--num", "3", "--directions", ctx.bad / "dir_zero_slope.pt")
    cls = "SILENT" if r2.rc == 0 and re.search(r"[1-9]\d* already there", r2.text) else refusal(r2, silent_if_ok=False)
    return O(ctx, cls, [r1, r2])


@case("n_ms6_foreign_method", "provenance", "SILENT")
def _(ctx: Ctx):
    out = fresh(ctx.k / "n6sh")
    r1 = ctx.py("06", "--root", ctx.base, "--landmark-judge", "off", "--shard", "0/2", "--method", "minmax", "--out", out)
    r2 = ctx.py("06", "--root", ctx.base, "--landmark-judge", "off", "--shard", "1/2", "--method", "zscore", "--out", out)
    r = ctx.py("ms", "6", "--root", ctx.base, "--landmark-judge", "off", "--out", out)
    return O(ctx, refusal(r, must=["method"]), [r1, r2, r])


@case("n_ms4_foreign_threshold", "provenance", "SILENT")
def _(ctx: Ctx):
    root = ctx.mkroot("n4sh")
    r1 = ctx.py("04", "--root", root, "--shard", "0/2", "--gender-threshold", "0.5")
    r2 = ctx.py("04", "--root", root, "--shard", "1/2", "--gender-threshold", "0.3")
    r = ctx.py("ms", "4", "--root", root, "--gender-threshold", "0.5")
    return O(ctx, refusal(r, must=["threshold"]), [r1, r2, r])


@case("n_cc_step5", "provenance", "SILENT")
def _(ctx: Ctx):
    out = fresh(ctx.k / "ncc5")
    a, b = together(ctx, [["05", "--root", ctx.base, "--crop", "full", "--out", out],
                          ["05", "--root", ctx.base, "--crop", "mtcnn", "--out", out]])
    refused = [r for r in (a, b) if r.rc not in (0, None)]
    cls = "SILENT" if not refused else worst(*(refusal(r, must=["another"]) for r in refused),
                                             *("TRACEBACK" for r in (a, b) if r.traceback))
    return O(ctx, cls, [a, b])


@case("n_cc_step7a", "provenance", "SILENT")
def _(ctx: Ctx):
    out = fresh(ctx.k / "ncc7a")
    a, b = together(ctx, [["07a", "--root", ctx.base, *demo("7a"), "--out", out],
                          ["07a", "--root", ctx.base, *demo("7a"), "--cap", "1.5", "--out", out]])
    refused = [r for r in (a, b) if r.rc not in (0, None)]
    cls = "SILENT" if not refused else worst(*(refusal(r, must=["another"]) for r in refused),
                                             *("TRACEBACK" for r in (a, b) if r.traceback))
    return O(ctx, cls, [a, b])


@case("n_s8_out_in_seg", "provenance", "SILENT")
def _(ctx: Ctx):
    root = ctx.mkroot("n8seg")
    r = ctx.py("08", "--root", root, "--control", "finetuned", "--num", "2",
               "--out", root / "segmentation/segmentation_results")
    return O(ctx, refusal(r, must=["--out"]), r)


@case("n_s6_out_in_step1", "provenance", "SILENT")
def _(ctx: Ctx):
    root = ctx.mkroot("n6img")
    r = ctx.py("06", "--root", root, "--landmark-judge", "off", "--out", root / "stylegan/synthesize_results/scores")
    return O(ctx, refusal(r, must=["--out"]), r)


@case("n_s5_out_in_step1", "provenance", "SILENT")
def _(ctx: Ctx):
    root = ctx.mkroot("n5img")
    r = ctx.py("05", "--root", root, "--crop", "full", "--out", root / "stylegan/synthesize_results")
    return O(ctx, refusal(r, must=["--out"]), r)


# ------------------------------------------------------------------------------------------- loss
@case("n_lab_import_cut_row", "provenance", "LOSS")
def _(ctx: Ctx):
    root = ctx.mkroot("nimp")
    labels = root / "gender_cnn/hand_labels.csv"
    before = labels.read_text()
    r = ctx.py("02", "--root", root, "--import", ctx.csv / "truncated.csv", timeout=120)
    kept = labels.read_text() == before
    cls = ("LOSS" if not kept else refusal(r, must=["truncated.csv"])) if not r.timed_out else "HANG"
    return O(ctx, cls, r, f"labels unchanged: {kept}")


@case("n_demo_over_real_stylegan", "provenance", "LOSS")
def _(ctx: Ctx):
    root = ctx.mkroot("ndemo_ck")
    ck = root / "stylegan/stylegan_model.pth"
    shutil.copy2(ctx.bad / "half.pth", ck)
    before = ck.read_bytes()
    r = ctx.py("rp", "--demo", "--root", root, "--from", "1", "--to", "1")
    kept = ck.read_bytes() == before
    return O(ctx, refusal(r, must=["stylegan_model.pth"]) if kept else "LOSS", r, f"checkpoint unchanged: {kept}")


@case("n_rp_swapped_fx_real_run", "provenance", "SILENT")
def _(ctx: Ctx):
    """rp_swapped_fx without --demo (the demo's guard refuses the root before step 5 runs): a real run."""
    from benchmarks.replay_kit import sha
    root = ctx.mkroot("nrpfx")
    model = root / "segmentation/models/segmentation_model.pt"
    model.unlink()  # hard-linked to the reference: never written in place
    ctx.run([ctx.python, "-c", "import sys; from segmentation import save_random_facexformer_checkpoint as s; "
             "s(sys.argv[1], seed=1)", model])
    maps = sorted((root / "segmentation/segmentation_results").glob("parsing_*.png"))
    before = sha(maps[0])
    r = ctx.py("rp", "--root", root, "--from", "5", "--to", "5", "--device", "cpu")
    changed = sha(maps[0]) != before
    cls = ("CLEAR" if changed else "SILENT") if r.rc == 0 else refusal(r, must=["--overwrite"])
    return O(ctx, cls, r, f"{maps[0].name} re-parsed: {changed}")


@case("n_regen_payload_in_recipe", "security", "SECURITY")
def _(ctx: Ctx):
    """A saved face whose recipe names a pickle payload as its model file: --regenerate must refuse it unrun."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    face = _saved_face(ctx)
    with Image.open(face) as im:
        recipe = json.loads(im.text["studio"])
        pixels = im.copy()

    from common.fingerprint import file_fingerprint
    payload_fp = file_fingerprint(ctx.bad / "torch_payload.pth")

    def swap(node):
        if isinstance(node, dict):
            if "fingerprint" in node:  # the model the recipe names: the payload, by path and by content
                node = {**node, "fingerprint": payload_fp}
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        if isinstance(node, str) and node.endswith((".pt", ".pth")):
            return str(ctx.bad / "torch_payload.pth")
        return node
    info = PngInfo()
    info.add_text("studio", json.dumps(swap(recipe)))
    evil = ctx.k / "evil_face.png"
    pixels.save(evil, pnginfo=info)
    for p in ctx.bad.glob("PWNED*"):
        p.unlink()
    out = ctx.k / "evil_out.png"
    out.unlink(missing_ok=True)
    r = ctx.py("studio", "--root", ctx.base, "--regenerate", evil, "--out", out)
    ran = any(ctx.bad.glob("PWNED*")) or "PWNED" in r.out
    return O(ctx, "SECURITY" if ran else refusal(r), r, f"payload ran: {ran}")
