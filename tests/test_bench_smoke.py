"""`python -m bench --quick`: the benchmark harness runs end to end on tiny sizes.

Three groups of sections run as parallel processes (the sections are independent, each with
its own replay and databases); together their JSON files must hold every figure. The aims are
not checked: tiny sizes measure nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import FIGURES
from crawler.config import PROJECT_ROOT

GROUPS = ["throughput,extraction", "cycles", "latency,memory"]


def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    outs = [tmp_path / f"group{number}.json" for number in range(len(GROUPS))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench", "--quick", "--only", group, "--out", str(out)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for group, out in zip(GROUPS, outs, strict=True)
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, output[-3000:]
        assert "| figure |" in output
    figures: dict[str, dict] = {}
    for out in outs:
        result = json.loads(out.read_text(encoding="utf-8"))
        assert result["quick"] is True and result["machine"]["cores"]
        figures.update(result["figures"])
    missing = [key for key in FIGURES if key not in figures]
    assert not missing, f"figures missing from the JSON: {missing}"
    for key in FIGURES:
        assert figures[key]["median"] is not None, key
        assert figures[key]["runs"] >= 1, key
