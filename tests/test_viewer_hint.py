"""`mmat audit REPO --revision TAG` points at the failing rows with a `mmat view` line that opens the
same revision (it dropped `--revision`, so the viewer showed main, not the audited tag)."""
from __future__ import annotations

from rich.console import Console

from generation.quality.audit import FAILING_KINDS, AuditReport
from generation.quality.report import print_report


def _hint(revision):
    report = AuditReport(dataset="tester/mmat-1m", config="rr")
    report.examples[FAILING_KINDS[0]].append({"id": "tabmwp/tabmwp/train-000001", "why": "x"})
    console = Console(width=200, record=True, color_system=None)
    print_report(report, console, revision=revision)
    return [line for line in console.export_text().splitlines() if line.startswith("open one:")]


def test_the_view_hint_keeps_the_audited_revision():
    assert _hint("v1.0.0") == ["open one: mmat view tester/mmat-1m --revision v1.0.0 --config rr, then add #<id> "
                               "to the address"]
    assert _hint(None) == ["open one: mmat view tester/mmat-1m --config rr, then add #<id> to the address"]
