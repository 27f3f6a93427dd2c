"""Fetch the checkpoints the pipeline needs (run once, on a machine with internet).

* FaceXFormer (step 5): downloaded from the Hugging Face repo kartiknarayan/facexformer
  (ckpts/model.pt, about 1.1 GB) with huggingface_hub, which resumes an interrupted download;
  saved as segmentation/models/segmentation_model.pt; its size and sha256 are printed.
* the FID Inception-v3 (step 9's image-quality figures): torch-fidelity's weights file, from its
  GitHub release (``FID_INCEPTION_URL`` overrides the address), saved as
  judges/models/weights-inception-2015-12-05-6726825d.pth; its size and sha256 are printed, and a
  file whose sha256 does not start with the 8 digits in its name is refused.
* genforce StyleGAN celeba-partial-256x256 (steps 1, 7): genforce's official links are dead, so
  it cannot be downloaded by this script; it explains where the file must go.

Without internet it fails within seconds with a clear message (it never hangs): it honours
HF_HUB_OFFLINE=1 and checks that the endpoint (HF_ENDPOINT, default https://huggingface.co)
answers before starting.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from common.checkpoints import FACEXFORMER, STYLEGAN_CELEBA_PARTIAL_256
from common.paths import PipelinePaths
from judges.image_quality import INCEPTION, INCEPTION_SHA256_PREFIX, INCEPTION_URL

HF_REPO = "kartiknarayan/facexformer"
HF_FILE = "ckpts/model.pt"
DEFAULT_ENDPOINT = "https://huggingface.co"


class OfflineError(RuntimeError):
    pass


def sha256_of(path: Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def http_url(text: str) -> str:
    """argparse type of the address flags: an http(s) URL with a host. A bare word or a file:// path is a typo,
    and reporting it as "no internet: cannot reach ..." sent users looking at their network."""
    url = urlparse(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError(f"{text} is not an http:// or https:// URL (e.g. {DEFAULT_ENDPOINT})")
    return text


def check_online(endpoint: str, timeout: float = 5.0, hugging_face: bool = True) -> None:
    """Fail fast (seconds) when offline, instead of letting the download hang on retries."""
    if hugging_face and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise OfflineError("HF_HUB_OFFLINE is set, so nothing can be downloaded")
    url = urlparse(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise OfflineError(f"cannot reach {endpoint} ({exc})") from exc


def describe_file(path: Path, expected_sha: str | None, expected_size: int | None) -> str:
    size = path.stat().st_size
    digest = sha256_of(path)
    notes = []
    if expected_size and size != expected_size:
        notes.append(f"size differs from the official {expected_size:,} bytes (an older upload?)")
    if expected_sha and digest != expected_sha:
        notes.append("sha256 differs from the current official file")
    return f"{path}: {size:,} bytes, sha256 {digest}" + (f"  [warning: {'; '.join(notes)}]" if notes else "  [matches]")


def download_facexformer(target: Path, endpoint: str) -> Path:
    from huggingface_hub import hf_hub_download

    check_online(endpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    cached = Path(hf_hub_download(repo_id=HF_REPO, filename=HF_FILE, endpoint=endpoint))
    tmp = target.with_name(".tmp-" + target.name)
    shutil.copyfile(cached, tmp)
    os.replace(tmp, target)
    return target


def download_url(url: str, target: Path, timeout: float = 30.0) -> Path:
    """Stream ``url`` to a temp file next to ``target``, then rename: a kill leaves no partial target."""
    import urllib.request

    parsed = urlparse(url)
    check_online(f"{parsed.scheme}://{parsed.netloc}", hugging_face=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".tmp-" + target.name)
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as handle:
        shutil.copyfileobj(response, handle, 1 << 20)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def fetch_inception(target: Path, url: str, force: bool) -> int:
    """Download (or report) the FID Inception file; refuse one whose sha256 does not match its name."""
    if target.is_file() and not force:
        digest = sha256_of(target)
        ok = digest.startswith(INCEPTION_SHA256_PREFIX)
        print(f"FID Inception already present: {target}: {target.stat().st_size:,} bytes, sha256 {digest}"
              + ("  [matches]" if ok else f"  [warning: sha256 does not start with {INCEPTION_SHA256_PREFIX}]"))
        return 0 if ok else 1
    print(f"downloading the FID Inception weights {url} (about {INCEPTION.approx_size}) -> {target}")
    try:
        tmp = download_url(url, target)
    except OfflineError as exc:
        print(f"error: no internet: {exc}.\n  Download {url} on another machine and copy it to {target}.",
              file=sys.stderr)
        return 1
    except Exception as exc:  # urllib/HTTP errors: say what happened, no traceback
        print(f"error: FID Inception download failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    digest, size = sha256_of(tmp), tmp.stat().st_size
    if not digest.startswith(INCEPTION_SHA256_PREFIX):
        tmp.unlink()
        print(f"error: the file from {url} ({size:,} bytes, sha256 {digest}) is not the FID Inception file: its "
              f"sha256 should start with {INCEPTION_SHA256_PREFIX}; nothing was saved", file=sys.stderr)
        return 1
    os.replace(tmp, target)
    print(f"FID Inception saved: {target}: {size:,} bytes, sha256 {digest}  [matches]")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=PipelinePaths().root, help="repository root")
    parser.add_argument("--endpoint", type=http_url, default=os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT),
                        help="the Hugging Face address (env HF_ENDPOINT)")
    parser.add_argument("--force", action="store_true", help="download again even if the file exists")
    parser.add_argument("--inception-url", type=http_url, default=os.environ.get("FID_INCEPTION_URL", INCEPTION_URL),
                        help="where the FID Inception weights come from (env FID_INCEPTION_URL)")
    args = parser.parse_args(argv)
    paths = PipelinePaths(args.root.resolve())

    status = 0
    target = paths.segmentation_checkpoint
    if target.is_file() and not args.force:
        print(f"FaceXFormer already present: {describe_file(target, FACEXFORMER.sha256, FACEXFORMER.size_bytes)}")
    else:
        print(f"downloading FaceXFormer {HF_REPO}/{HF_FILE} (about {FACEXFORMER.approx_size}) -> {target}")
        try:
            download_facexformer(target, args.endpoint)
            print(f"FaceXFormer saved: {describe_file(target, FACEXFORMER.sha256, FACEXFORMER.size_bytes)}")
        except OfflineError as exc:
            print(f"error: no internet: {exc}.\n  Download https://huggingface.co/{HF_REPO}/blob/main/{HF_FILE} on "
                  f"another machine and copy it to {target}.", file=sys.stderr)
            status = 1
        except Exception as exc:  # network/HTTP errors from huggingface_hub: say what happened, no traceback
            print(f"error: FaceXFormer download failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1

    status = max(status, fetch_inception(paths.inception_weights, args.inception_url, args.force))

    stylegan = paths.stylegan_checkpoint
    if stylegan.is_file():
        print(f"StyleGAN present: {stylegan} ({stylegan.stat().st_size:,} bytes)")
    else:
        print(f"StyleGAN missing (cannot be downloaded automatically):\n{STYLEGAN_CELEBA_PARTIAL_256.describe()}\n"
              f"  copy it to: {stylegan}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
