from pathlib import Path

import pytest

from torchspex.__main__ import main


@pytest.mark.slow
def test_demo_explains_a_real_model_and_writes_a_plot(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.png"
    assert main(["demo", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MLP test accuracy" in text
    assert "n_evaluations=1024" in text
    assert "Top interactions:" in text
    assert out.stat().st_size > 10_000
