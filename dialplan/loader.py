"""Loading a dialplan: text or file in, `CheckResult` (plan or diagnostics) out.

Owns the order of the passes (parse, compile, link, whole-plan checks) and
the rule that a plan is only returned when there is no error. The server's
reload (SIGHUP, `softswitch reload`, file change) calls `load_file` and keeps
its running plan when the result has no plan.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from dialplan.checks import check_goto_loops, check_shadowing, check_targets
from dialplan.compiler import Compiler
from dialplan.diagnostics import CheckResult, Reporter
from dialplan.linker import check_references, link
from dialplan.source import parse_text


def load_text(
    text: str,
    file: str = "<string>",
    known_users: Collection[str] | None = None,
    known_trunks: Collection[str] | None = None,
) -> CheckResult:
    """Compile and check dialplan text. `known_*` None means "do not check names"."""
    report = Reporter(file)
    root = parse_text(text, report)
    if root is None:
        return CheckResult(None, report.sorted())
    compiled = Compiler(report).compile(root)
    if compiled is None:
        return CheckResult(None, report.sorted())
    check_references(compiled, report)
    check_targets(compiled.refs, report, known_users, known_trunks)
    if report.has_errors:
        return CheckResult(None, report.sorted())
    plan = link(compiled, file)
    check_shadowing(plan, report)
    check_goto_loops(plan, report)
    if report.has_errors:
        return CheckResult(None, report.sorted())
    return CheckResult(plan, report.sorted())


def load_file(
    path: str | Path,
    known_users: Collection[str] | None = None,
    known_trunks: Collection[str] | None = None,
) -> CheckResult:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        report = Reporter(file)
        report.error(
            1, 1, "file not found", "pass the dialplan path, e.g. conf/dialplan.yaml", "no-file"
        )
        return CheckResult(None, report.sorted())
    except (OSError, UnicodeDecodeError) as exc:
        report = Reporter(file)
        report.error(
            1, 1, f"cannot read the file: {exc}", "it must be readable UTF-8 text", "no-file"
        )
        return CheckResult(None, report.sorted())
    return load_text(text, file, known_users, known_trunks)
