"""`lantian <tool>` reaches each user's tool through the one entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import cli


@pytest.mark.parametrize("word", sorted(cli.DELEGATED))
def test_every_tool_answers_help(word: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main([word, "--help"])
    assert stop.value.code == 0
    assert f"lantian {word}" in capsys.readouterr().out


def test_calibrations_on_an_empty_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["calibrations", "yb-town-01", "--db", str(tmp_path / "g.db")]) == 0
    assert "no commands recorded for yb-town-01" in capsys.readouterr().out
