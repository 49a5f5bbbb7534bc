"""Shared test settings: everything offline, every cache in a temp folder, the repo importable."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Offline first: a from_pretrained of an absent model fails in ms instead of ~23 s of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_cache_root = Path(os.environ.get("MMAT_TEST_CACHE", "/tmp/mmat-test-cache"))
os.environ.setdefault("DEEPFACE_HOME", str(_cache_root / "deepface"))
(_cache_root / "deepface").mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module", params=["paddle", "rapidocr"])
def ocr_ops(request):
    """Each OCR test runs through both backends: they must read the same and answer in the same form."""
    if request.param == "paddle":
        require_paddle()
    ops = ocr_only(request.param)
    assert ops.backends == {"ocr": request.param}, ops.unavailable
    return ops


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return REPO / "samples"
from tests.hub_fixtures import hub_client, hub_server  # noqa: E402,F401  (Hub test server fixtures)
from tests.demo_fixtures import demo  # noqa: E402,F401  (the demo dataset, generated once per session)
from tests.ocr_support import ocr_only, require_paddle  # noqa: E402

# Session guards (tests/session_guards.py): no silent skips under MMAT_REQUIRE_ALL=1, no leftover processes.
from tests import session_guards  # noqa: E402

_SESSION_MARKER = session_guards.start_session_marker()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if session_guards.require_all():
        session_guards.fail_skip(outcome.get_result())


def pytest_collectreport(report):
    if session_guards.require_all():
        session_guards.fail_skip(report)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        session_guards.report_leftovers(session, _SESSION_MARKER)
