"""The studio's HTTP side: the shared local-server mechanics (``common.localserver``) + the studio's routes.

Everything that makes a local page safe (loopback bind by default, Host-header check, strict CSP,
size limits, 4xx on malformed requests, bounded worker threads) comes from ``common.localserver``,
shared with the labeller. This module maps URLs to :class:`~pipeline.studio.app.StudioApp` and
to the page's three static files, and runs a session (:func:`run_studio`).

The page's CSP is the shared one plus ``blob:`` images: the page fetches each render (to read
its timing headers and to keep one request in flight) and shows it through an object URL that
only its own script can create.
"""
from __future__ import annotations

import getpass
import logging
import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from common.localserver import PAGE_CSP, LocalRequestHandler, LocalServer, RequestError, ServerLimits
from common.paths import PipelinePaths
from common.settings import (
    StepConfig,
    allow_hosts_setting,
    device_setting,
    host_setting,
    port_setting,
    seed_setting,
    setting,
    weights_setting,
)
from common.runtime import resolve_device
from pipeline.scorers import SegmentationScorer
from pipeline.studio.app import StudioApp
from pipeline.studio.landmarks import StudioLandmarkJudge
from pipeline.studio.render import load_studio_models
from stylegan.control_methods import REFINE_AUTO, refine_setting
from stylegan.control_resolver import MissingMethodError, no_method_message

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_FILES = {"/": "index.html", "/index.html": "index.html", "/static/studio.js": "studio.js",
                 "/static/studio.css": "studio.css", "/favicon.ico": ""}
STUDIO_CSP = PAGE_CSP.replace("img-src 'self'", "img-src 'self' blob:")
MAX_QUERY_FIELDS = 32
CROPS: tuple[str, ...] = ("auto", "mtcnn", "full")
SCORERS: tuple[str, ...] = ("segmentation", "brightness")


class _StudioHandler(LocalRequestHandler):
    """GET only: the page, its files, and the studio's JSON/PNG API."""

    server_version = "studio/1"
    page_dir = STATIC_DIR
    page_files = _STATIC_FILES
    page_csp = STUDIO_CSP

    def get(self, path: str) -> None:
        if not path.startswith("/api/"):
            raise RequestError(HTTPStatus.NOT_FOUND, "not found")
        try:
            query = parse_qs(urlsplit(self.path).query, keep_blank_values=True,
                             max_num_fields=MAX_QUERY_FIELDS)
        except ValueError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad query string: {exc}") from None
        app: StudioApp = self.server.context
        response = app.get(path, query)
        self.send_bytes(response.status, response.body, response.content_type, response.headers)

    def post(self, path: str) -> None:
        self.close_connection = True
        raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "the studio takes GET requests only")


EXPOSES = "render, measure and save faces with this run's models, on this machine's CPU or GPU"
"""What a visitor of a studio bound beyond loopback can do (the start-up warning says it)."""


def make_server(app: StudioApp, host: str = "127.0.0.1", port: int = 8770,
                limits: ServerLimits = ServerLimits(), allow_hosts: tuple[str, ...] = ()) -> LocalServer:
    """Bind (port 0 picks a free one); the caller runs ``serve_forever``."""
    return LocalServer((host, port), _StudioHandler, context=app, limits=limits, allow_hosts=allow_hosts)


# ----------------------------------------------------------------------------------------------
# a session: config -> models -> server -> summary


@dataclass(frozen=True)
class StudioConfig(StepConfig):
    """One studio session (paths come from ``PipelinePaths``; None = the contract path / newest).

    The fields are the studio script's flags (``common.settings``): declared once, with their ranges."""

    host: str = host_setting()
    port: int = port_setting(8770)
    allow_hosts: tuple[str, ...] = allow_hosts_setting()
    device: str = device_setting()
    finetuned_checkpoint: Path | None = setting(None, concept="finetuned_checkpoint", aliases=("--checkpoint",))
    directions_file: Path | None = setting(None, concept="directions", fill=False)
    sefa_file: Path | None = setting(None, flag="--sefa", path="sefa_pt", fill=False,
                                     help="SeFa directions (default: stylegan/directions/sefa.pt, written by step 7a)")
    weights: str = weights_setting("ema", help="fine-tune: ema = the EMA generator, raw = the trained weights, auto = "
                                              "ema (a fine-tune checkpoint always holds both)")
    refine: str = refine_setting(REFINE_AUTO, "; offered as the method directions+refine: its exact frames are "
                                              "refined, a moving slider shows the linear edit (default: auto)")
    crop: str = setting("auto", choices=CROPS,
                        help="Measure's face crop: auto = full image for the demo's models, MTCNN otherwise")
    measure: bool = setting(True, flag="--no-measure", negate=True,
                            help="do not offer Measure (never loads FaceXFormer)")
    scorer: str = setting("segmentation", choices=SCORERS,
                          help="Measure's judge: segmentation (the real one) or brightness (a labelled stand-in)")
    seed: int = seed_setting("the face a fresh page opens on: image SEED of a default step-1 run (the page's seed "
                             "box changes it)")
    open_browser: bool = setting(False, off_flag="--no-browser",
                                 help="open the page in a local browser (--no-browser: do not, the default)")


@dataclass(frozen=True)
class StudioSummary:
    url: str
    renders: int
    dropped: int
    seconds: float

    def line(self) -> str:
        return (f"studio: served {self.url} for {self.seconds:.0f}s; {self.renders} renders, "
                f"{self.dropped} superseded view requests dropped")


def tunnel_hint(server: LocalServer) -> str:
    """The ssh -L line a laptop user needs to reach a studio on a remote box."""
    port = server.server_address[1]
    return (f"ssh -N -L {port}:127.0.0.1:{port} {getpass.getuser()}@{socket.gethostname()}"
            f"   # on your laptop, then open http://localhost:{port}/")


def build_app(config: StudioConfig) -> StudioApp:
    """Load the models of ``config.root`` and the (lazy) scorer; errors are plain-message exceptions."""
    paths = PipelinePaths(Path(config.root).resolve())
    device = resolve_device(config.device)
    models = load_studio_models(paths, device, config.finetuned_checkpoint, config.directions_file,
                                config.weights, config.sefa_file, config.refine)
    if not models.available:
        raise MissingMethodError(no_method_message(paths, models.notes))
    factory, name, measure_off = None, "", ""
    if not config.measure:
        measure_off = "this studio was started with --no-measure"
    elif config.scorer == "brightness":
        from stylegan.control_measures import BrightnessScorer

        factory, name = BrightnessScorer, "STAND-IN brightness scorer (not a property judge)"
    elif paths.segmentation_checkpoint.is_file() and paths.normalization_json.is_file():
        crop = ("full" if models.demo else "mtcnn") if config.crop == "auto" else config.crop
        factory = _scorer_factory(paths, crop, device)
        name = f"FaceXFormer segmentation + step-6 scores ({crop} crop)"
    else:
        missing = [f"{path} ({fix})" for path, fix in ((paths.segmentation_checkpoint, "download_models.py"),
                                                      (paths.normalization_json, "step 6"))
                   if not path.is_file()]
        measure_off = f"Measure needs {' and '.join(missing)}"
        models.notes.append(measure_off)
    landmarks = _landmark_factory(paths, device) if factory is not None else None
    return StudioApp(models, factory, name, seed=config.seed, landmark_factory=landmarks,
                     measure_off=measure_off, identity_factory=_landmark_factory(paths, device))


def _landmark_factory(paths: PipelinePaths, device) -> Callable:
    def build():
        return StudioLandmarkJudge(paths.landmark_normalization_json, device)
    return build


def _scorer_factory(paths: PipelinePaths, crop: str, device) -> Callable:
    def build():
        return SegmentationScorer(paths.segmentation_checkpoint, paths.normalization_json, crop, device)
    return build


def run_studio(config: StudioConfig, progress: Callable[[str], None] | None = None,
               stop: threading.Event | None = None) -> StudioSummary:
    """Serve the studio until Ctrl-C (or ``stop`` is set); ``progress`` gets the URL and tunnel lines."""
    app = build_app(config)
    server = make_server(app, config.host, config.port, allow_hosts=config.allow_hosts)
    start = time.perf_counter()
    say = progress or logger.info
    warning = server.exposure_warning(EXPOSES)
    if warning:
        say(warning)
    say(f"studio at {server.url}  ({', '.join(app.models.available) or 'no control method'}; "
        f"{app.models.device}; Ctrl-C stops)")
    if server.loopback_only:
        say(f"from a laptop: {tunnel_hint(server)}")
    for note in app.models.notes:
        say(f"note: {note}")
    if config.open_browser:
        webbrowser.open(server.url)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    stop = stop or threading.Event()
    try:
        while thread.is_alive() and not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        app.close()
    stats = app.gate.stats()
    return StudioSummary(server.url, stats["ran"], stats["dropped"], time.perf_counter() - start)
