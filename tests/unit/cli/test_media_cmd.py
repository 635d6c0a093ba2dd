"""`softswitch media conceal` through click's CliRunner, on generated WAV files."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rtpmedia import codecs
from softswitch.cli import main


def write_wav(path: Path, x: np.ndarray, rate: int = 8000, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.astype("<i2").tobytes())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def vowel(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return np.round(sum(6000 / k * np.sin(2 * np.pi * 130 * k * t) for k in range(1, 5))).astype(
        np.int16
    )


def conceal(tmp_path: Path, x: np.ndarray, lost: str, *extra: str) -> tuple[int, str, Path]:
    src, out, marks = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "lost.txt"
    write_wav(src, x)
    marks.write_text(lost)
    result = CliRunner().invoke(
        main, ["media", "conceal", str(src), str(out), "--lost", str(marks), *extra]
    )
    return result.exit_code, result.output, out


@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
def test_without_losses_the_output_is_the_decoded_input(tmp_path: Path, codec: str) -> None:
    x = vowel(1.0)
    code, output, out = conceal(tmp_path, x, "0\n" * 50, "--codec", codec)
    assert code == 0, output
    c = codecs.get(f"{codec.upper()}/8000")
    assert np.array_equal(read_wav(out)[: len(x)], c.decode(c.encode(x)))
    assert "0 lost" in output


def test_lost_packets_are_concealed_and_reported(tmp_path: Path) -> None:
    x = vowel(2.0)
    lost = "".join("1\n" if i % 10 == 5 else "0\n" for i in range(100))
    code, output, out = conceal(tmp_path, x, lost)
    assert code == 0, output
    y = read_wav(out)
    assert "100 packets, 10 lost, 10 frames concealed" in output
    assert abs(len(y) - len(x)) <= 2 * 160
    # Concealed, not silent: every 20 ms of the steady vowel keeps its level.
    rms = np.sqrt(np.mean(y[: 99 * 160].reshape(-1, 160).astype(float) ** 2, axis=1))
    assert rms.min() > 0.5 * np.sqrt(np.mean(x.astype(float) ** 2))


def test_a_short_loss_file_leaves_the_rest_received(tmp_path: Path) -> None:
    code, output, _ = conceal(tmp_path, vowel(1.0), "# first packets\n0\n1\n\n0\n")
    assert code == 0, output
    assert "50 packets, 1 lost" in output


def test_a_bad_mark_is_reported_with_its_line(tmp_path: Path) -> None:
    code, output, _ = conceal(tmp_path, vowel(0.2), "0\n0\nyes\n")
    assert code != 0
    assert "lost.txt:3: expected 0 or 1, got 'yes'" in output


def test_a_wav_that_is_not_8_khz_mono_is_refused_with_the_fix(tmp_path: Path) -> None:
    src, marks = tmp_path / "in.wav", tmp_path / "lost.txt"
    write_wav(src, np.zeros(3200, dtype=np.int16), rate=16000)
    marks.write_text("0\n")
    result = CliRunner().invoke(
        main, ["media", "conceal", str(src), str(tmp_path / "o.wav"), "--lost", str(marks)]
    )
    assert result.exit_code != 0
    assert "16000 Hz" in result.output and "sox" in result.output


def test_the_command_line_does_not_load_numpy_until_a_media_command_runs() -> None:
    # rtpmedia.durable (standard library only) is shared with the voicemail store.
    code = (
        "import sys, softswitch.cli; sys.exit('numpy' in sys.modules or any("
        "m.startswith('rtpmedia') and m not in ('rtpmedia', 'rtpmedia.durable')"
        " for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_without_the_jitter_buffer_module_packets_play_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rtpmedia.jitterbuffer", None)  # import fails
    x = vowel(1.0)
    code, output, out = conceal(tmp_path, x, "0\n0\n1\n" * 20)
    assert code == 0, output
    assert len(read_wav(out)) == len(x)
    assert "50 packets, 16 lost, 16 frames concealed" in output
