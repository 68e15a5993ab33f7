"""The pruning benchmark's report rendering (the benchmark itself takes minutes: `sparsegate bench --only prune`)."""
from __future__ import annotations

import json

from sparsegate.sw.prune.counting import LayerTable, layer_table
from sparsegate.sw.bench.prune import BenchSettings, oracle_reading, rerender_markdown

from support.tiny_model import tiny_network


def _row(method, compression, drop):
    table = layer_table(tiny_network()).to_dict()
    return {"method": method, "kept_weights": 23, "nonzero_params": 31, "params": 92, "compression": compression,
            "mac_reduction": 0.7, "test_accuracy": 0.98 - drop, "accuracy_drop": drop, "val_accuracy": 0.97,
            "storage_ratio": 2.0, "wall_time_s": 1.0, "table": table}


def test_rerender_markdown_from_json(tmp_path):
    histories = {"SRA": [{"round": 1, "sparsity": 0.5, "info": {"monitor_accuracy": 0.979}, "accepted": True},
                         {"round": 2, "sparsity": 0.9, "info": {"monitor_accuracy": 0.970}, "accepted": True}]}
    rows = [_row("dense (base)", 1.0, 0.0), _row("torch global L1", 50.0, 0.002), _row("SRA+NRP", 150.0, 0.002),
            {"method": "ACRA uniform (filter), FLOPs -50%", "unreachable": "target_flops=0.5000 cannot be met",
             "wall_time_s": 0.5}]
    (tmp_path / "prune_lenet5.json").write_text(json.dumps({
        "model": "lenet5", "quick": False, "settings": vars(BenchSettings()), "base_test_accuracy": 0.98,
        "base_val_accuracy": 0.97, "wall_time_s": 60.0, "threads": 1, "rows": rows, "histories": histories}))
    result = rerender_markdown(tmp_path, "lenet5")
    md = result.markdown
    assert md == (tmp_path / "prune_lenet5.md").read_text()
    assert result.json_path == tmp_path / "prune_lenet5.json" and json.loads(result.json_path.read_text())["rows"]
    assert "| SRA+NRP | 23 | 31 | 150.0x | 70.0% | 97.80% | +0.20 | 97.00% |" in md
    assert "**met** — 150.0x at +0.20 points; torch global L1 at the same budget: 50.0x" in md
    assert "| ACRA uniform (filter), FLOPs -50% | — |" in md and "not met — target_flops=0.5000" in md
    assert "| SRA | 2.0x | 97.90% |" in md  # oracle reading: the 10x round lost 1 point
    assert "| conv1 | conv | 27 | 11 |" in md


def test_oracle_reading_and_table_round_trip():
    rounds = [{"sparsity": 0.5, "info": {"monitor_accuracy": 0.98}}, {"sparsity": 0.75, "info": {}},
              {"sparsity": 0.9, "info": {"monitor_accuracy": 0.95}}]
    assert oracle_reading(rounds, 0.98, 0.003) == (2.0, 0.98)
    assert oracle_reading(rounds, 0.99, 0.003) is None
    table = layer_table(tiny_network())
    again = LayerTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.to_markdown() == table.to_markdown()
