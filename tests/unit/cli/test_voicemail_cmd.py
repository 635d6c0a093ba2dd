"""`softswitch voicemail` through click's CliRunner on a real data dir."""

from __future__ import annotations

import json
import wave
from pathlib import Path

from click.testing import CliRunner

from softswitch.cli import main
from softswitch.voicemail import VoicemailStore, deposit


def filled(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for box, caller in [("1001@pbx.example.com", "1002"), ("1001@pbx.example.com", "1003"),
                        ("1002@pbx.example.com", "1001")]:
        wav = tmp_path / "r.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x00" * 800)
        deposit(data, box, wav, caller=caller, duration=0.1)
    VoicemailStore(data).ingest()
    return data


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["voicemail", *args])
    return result.exit_code, result.stdout, result.stderr


def test_listing_on_a_pipe_is_one_message_per_line(tmp_path: Path) -> None:
    data = filled(tmp_path)
    code, out, _ = run("--data-dir", str(data))
    lines = out.splitlines()
    assert code == 0 and lines[0].split("\t")[:2] == ["mailbox", "id"]
    assert len(lines) == 4
    code, out, _ = run("1001", "--data-dir", str(data))
    assert code == 0 and len(out.splitlines()) == 3
    assert all(line.split("\t")[-1] == "new" for line in out.splitlines()[1:])


def test_json_and_delete_by_id_and_all(tmp_path: Path) -> None:
    data = filled(tmp_path)
    code, out, _ = run("1001@pbx.example.com", "--json", "--data-dir", str(data))
    messages = json.loads(out)
    assert code == 0 and [m["caller"] for m in messages] == ["1002", "1003"]
    assert Path(messages[0]["wav"]).exists()
    code, out, _ = run("delete", "1001", messages[0]["id"], "--data-dir", str(data))
    assert code == 0 and "deleted 1 message" in out
    code, _, err = run("delete", "1001", messages[0]["id"], "--data-dir", str(data))
    assert code == 1 and "no message" in err
    code, out, _ = run("delete", "1002", "--all", "--data-dir", str(data))
    assert code == 0 and VoicemailStore(data).messages("1002@pbx.example.com") == []


def test_unknown_mailbox_and_bad_usage_fail(tmp_path: Path) -> None:
    data = filled(tmp_path)
    code, _, err = run("9999", "--data-dir", str(data))
    assert code == 1 and "no mailbox for 9999" in err
    code, _, err = run("delete", "1001", "--data-dir", str(data))
    assert code == 2


def test_media_prompts_generates_once_then_keeps(tmp_path: Path) -> None:
    import shutil

    import pytest

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    data = tmp_path / "data"
    result = CliRunner().invoke(main, ["media", "prompts", "--json", "--data-dir", str(data)])
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout)
    assert {p["name"] for p in first} >= {"vm-greeting", "echo-intro", "vm-main-menu"}
    assert all(p["generated"] and p["seconds"] > 0.3 for p in first)
    again = CliRunner().invoke(main, ["media", "prompts", "--data-dir", str(data)])
    assert again.exit_code == 0
    assert all(line.split("\t")[2] == "kept" for line in again.stdout.splitlines()[1:])
