"""Golden tests of `softswitch dialplan check` (one broken file per error class) and `test`.

Regenerate the golden outputs after an intended change with
DIALPLAN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/dialplan, then review the diff.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from dialplan import Severity, load_file, load_text
from softswitch.cli.dialplan_cmd import dialplan

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "conf" / "dialplan.yaml"
UPDATE = os.environ.get("DIALPLAN_UPDATE_GOLDEN") == "1"
NOT_DIALPLANS = {"directory.yaml", "softswitch.yaml"}
BROKEN = sorted(p.name for p in GOLDEN.glob("*.yaml") if p.name not in NOT_DIALPLANS)


def run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(dialplan, args, catch_exceptions=False)
    return result.exit_code, result.stdout


def compare(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"golden {name} differs"


@pytest.mark.parametrize("name", BROKEN)
def test_check_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run(
        ["check", "--directory", "directory.yaml", "--config", "softswitch.yaml", name],
        GOLDEN,
        monkeypatch,
    )
    compare(name.removesuffix(".yaml") + ".check.out", out + f"exit: {code}\n")
    assert code == (0 if name in ("ok.yaml", "shadowed.yaml") else 1)


TEST_CASES = {
    "outbound": "--from 1001 --to 918005551234 --at 2026-12-24T19:00",
    "extension": "--from 1002 --to 1003 --at 2026-12-24T19:00",
    "echo": "--from 1001 --to 9196 --at 2026-12-24T19:00",
    "international-refused": "--from 1002 --to 011442071234567 --at 2026-12-24T19:00",
    "international-allowed": "--from 1002 --to 011442071234567 --group international --at 2026-12-24T19:00",
    "inbound-open": "--context from-provider --trunk provider --from +12125550000 "
    "--to +15550100100 --at 2026-12-24T10:00",
    "inbound-closed": "--context from-provider --trunk provider --from +12125550000 "
    "--to +15550100100 --at 2026-12-24T19:00-05:00",
    "inbound-direct": "--context from-provider --trunk provider --from +12125550000 "
    "--to +15550101004 --at 2026-12-24T10:00",
    "trunk-to-trunk-refused": "--context to-provider --trunk provider --from +12125550000 "
    "--to +12125551234 --header X-Test=1 --at 2026-12-24T10:00",
    "not-found": "--from 1001 --to 555 --at 2026-12-24T10:00",
}


@pytest.mark.parametrize("case", sorted(TEST_CASES))
def test_test_golden(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [
        "test",
        "--file",
        str(SHIPPED),
        "--directory",
        "directory.yaml",
        "--config",
        "softswitch.yaml",
    ]
    code, out = run(args + shlex.split(TEST_CASES[case]), GOLDEN, monkeypatch)
    assert code == 0
    compare(f"test-{case}.out", f"$ softswitch dialplan test {TEST_CASES[case]}\n" + out)


def test_test_refuses_a_broken_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _ = run(["test", "--file", "unknown_action.yaml", "--to", "1001"], GOLDEN, monkeypatch)
    assert code == 1


def test_test_rejects_bad_options(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _ = run(
        ["test", "--file", str(SHIPPED), "--to", "1", "--header", "nonsense"], GOLDEN, monkeypatch
    )
    assert code == 2
    code, _ = run(
        ["test", "--file", str(SHIPPED), "--to", "1", "--at", "tomorrow"], GOLDEN, monkeypatch
    )
    assert code == 2


def test_check_without_directory_or_config_gives_no_name_warnings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "dp.yaml").write_text(
        "contexts:\n  internal:\n    rules:\n      - {match: '1', actions: [dial: user/nobody]}\n"
    )
    code, out = run(["check", "dp.yaml"], tmp_path, monkeypatch)
    assert code == 0
    assert "warning:" not in out


def test_shipped_example_is_clean() -> None:
    result = load_file(
        SHIPPED, known_users={"1001", "1002", "1003", "1004"}, known_trunks={"provider"}
    )
    assert result.plan is not None
    assert result.diagnostics == ()


# --- the API the server's reload uses ---


def test_load_file_returns_no_plan_on_errors_and_formats_diagnostics() -> None:
    result = load_file(GOLDEN / "unknown_action.yaml")
    assert result.plan is None and not result.ok
    first = result.errors[0]
    assert (first.line, first.column, first.severity) == (7, 13, Severity.ERROR)
    assert first.format() == (
        f"{GOLDEN / 'unknown_action.yaml'}:7:13: error: unknown action 'answr' "
        "(hint: did you mean 'answer'?)"
    )


def test_load_file_keeps_the_plan_when_there_are_only_warnings() -> None:
    result = load_file(GOLDEN / "shadowed.yaml")
    assert result.plan is not None
    assert result.warnings and not result.errors


def test_missing_file_is_a_diagnostic(tmp_path: Path) -> None:
    result = load_file(tmp_path / "absent.yaml")
    assert result.plan is None
    assert result.diagnostics[0].code == "no-file"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty-file"),
        ("contexts: {}\n---\ncontexts: {}\n", "yaml-syntax"),
        ("[1, 2]\n", "bad-type"),
        ("settings: {}\n", "no-contexts"),
        ("contexts:\n  a: {rules: []}\n  a: {rules: []}\n", "duplicate-key"),
        ("contexts:\n  a:\n    rules:\n      - {match: '1', actions: dial}\n", "bad-type"),
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', actions: [answer: 3]}\n",
            "unknown-option",
        ),
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', actions: [{goto: {number: '2'}}]}\n",
            "bad-action",
        ),
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', continue: maybe, actions: [echo]}\n",
            "bad-type",
        ),
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', actions: [set: {'a b': 1}]}\n",
            "bad-value",
        ),
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', actions: [dial: {timeout: 3}]}\n",
            "bad-action",
        ),
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', actions: [dial: trunk/x]}\n",
            "bad-target",
        ),
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', when: {group: []}, actions: [echo]}\n",
            "bad-type",
        ),
    ],
)
def test_error_classes(text: str, code: str) -> None:
    result = load_text(text)
    assert result.plan is None
    assert code in {d.code for d in result.errors}, [d.format() for d in result.diagnostics]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', actions: [hangup, echo]}\n",
            "unreachable-action",
        ),
        (
            "contexts:\n  a:\n    rules:\n      - {match: '1', else: [echo], actions: [echo]}\n",
            "useless-else",
        ),
    ],
)
def test_warning_classes(text: str, code: str) -> None:
    result = load_text(text)
    assert result.plan is not None
    assert code in {d.code for d in result.warnings}


# --- issue 18: trunks, --config, --json, exit codes ---


def test_check_warns_about_a_trunk_the_configuration_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A configuration without `trunks:` defines none: trunk/provider would get 503.
    (tmp_path / "plan.yaml").write_text(
        "contexts:\n  internal:\n    rules:\n      - {match: '911', actions: [dial: trunk/provider/911]}\n"
    )
    (tmp_path / "server.yaml").write_text("dialplan: plan.yaml\n")
    code, out = run(["check", "--config", "server.yaml"], tmp_path, monkeypatch)
    assert code == 0
    assert "plan.yaml:4:" in out and "unknown trunk 'provider'" in out
    assert "1 warning" in out


def test_shipped_configuration_defines_the_shipped_plans_trunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out = run(["check", "--config", str(REPO / "conf" / "softswitch.yaml")], REPO, monkeypatch)
    assert code == 0, out
    assert out.strip().endswith("0 warnings") and "conf/dialplan.yaml: ok" in out


def test_test_json(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["test", "--file", str(SHIPPED), "--directory", "directory.yaml", "--config",
            "softswitch.yaml", "--from", "1001", "--to", "918005551234", "--at",
            "2026-12-24T19:00", "--json"]
    code, out = run(args, GOLDEN, monkeypatch)
    assert code == 0
    import json

    decision = json.loads(out)
    assert decision["call"]["context"] == "internal" and decision["call"]["groups"] == ["sales"]
    assert decision["call"]["at"] == "2026-12-24T19:00:00-05:00"
    assert decision["matched"] is True
    assert decision["trace"][-1]["rule"] == "trunk" and decision["trace"][-1]["outcome"] == "match"
    [action] = decision["actions"]
    assert action["action"].startswith("dial trunk/provider/+18005551234")
    assert action["on_failure"] == ["hangup 503 Service Unavailable"]


def test_test_with_an_unknown_context_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(
        dialplan, ["test", "--file", str(SHIPPED), "--context", "NOSUCH", "--to", "1001"]
    )
    assert result.exit_code == 1
    assert "no context 'NOSUCH'" in result.stderr and "internal" in result.stderr
