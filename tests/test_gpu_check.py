"""``bash bench/gpu_check.sh --dry-run`` as a user runs it: the GPU check's code at tiny sizes on the CPU.

No GPU has run the check yet, so this dry run is what keeps it from rotting: every part (a)-(d) must give numbers
or say why it could not, the kernel rows must say they need CUDA, and flex must agree with the torch reference.
"""

import json
import os
import subprocess

from .helpers import REPO

PARTS = ("a", "b", "c", "d")


def test_gpu_check_dry_run(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--output", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| part | case | status |" in result.stdout  # the table is printed
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] is True
    assert sorted(report["parts"]) == list(PARTS)
    for name in PARTS:
        rows = report["parts"][name]["rows"]
        assert rows, f"part ({name}) has no rows"
        for row in rows:
            if row["status"] == "ok":
                assert isinstance(row["seconds"], float) and row["seconds"] > 0, row
            else:
                assert row["status"].startswith("skipped: "), row  # an explicit reason, never a silent gap
        assert any(row["status"] == "ok" for row in rows), f"part ({name}) ran nothing"

    vsa = report["parts"]["a"]["rows"]
    kernel = [row for row in vsa if row["values"].get("backend") == "kernel"]
    assert kernel and all(row["status"] == "skipped: no CUDA" for row in kernel)
    flex = [row for row in vsa if row["values"].get("backend") == "flex" and row["status"] == "ok"]
    assert flex, "no flex row ran"
    for row in flex:
        assert row["values"]["rel_vs_torch"] < 1e-5, row
        assert row["values"]["max_abs_vs_torch"] < 1e-5, row
        assert row["dense_ratio"] > 0

    training = report["parts"]["b"]["rows"]
    assert {row["values"]["kind"] for row in training} == {"LoRA", "full finetune"}
    assert all(row["status"] == "ok" and row["values"]["loss"] == row["values"]["loss"] for row in training)  # no NaN

    preprocess = report["parts"]["c"]["rows"]
    assert [row["values"]["num_workers"] for row in preprocess][0] == 0
    assert all(row["values"]["videos_per_second"] > 0 for row in preprocess)

    savers = report["parts"]["d"]["rows"]
    assert {(row["values"]["layerwise_casting"], row["values"]["group_offload"]) for row in savers} == {
        (None, None),
        ("float8_e4m3fn", None),
        (None, "block_level"),
        ("float8_e4m3fn", "block_level"),
    }
    for row in savers:  # fastvideo-hf plan's estimate of the same combination, for the GPU run to compare with
        assert row["values"]["plan"]["allocated_gib"] > 0, row
    assert all(goal["result"].startswith("not measured") for goal in report["goals"])
