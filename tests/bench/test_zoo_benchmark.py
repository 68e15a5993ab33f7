"""The zoo benchmark's quick mode on two small zoo models (each trained one epoch, pruned, quantized, run on
Verilator) and one the graph capture refuses: the JSON and the tables agree cell by cell, the figures are
sane, the engine runs bit-exact, and the refused model is a row with its reason (`sparsegate bench --only zoo`
runs the whole zoo on bigger budgets)."""
from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from sparsegate.sw.bench.registry import benchmark
from sparsegate.sw.ml import zoo


class SigmoidMLP(nn.Module):
    """A network the engine cannot run (a sigmoid between two Linear layers)."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes=10):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 32), nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc2(torch.sigmoid(self.fc1(torch.flatten(x, 1))))


def _table(markdown: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading``, header row first, the rule left out;
    every row has the header's number of cells."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    header, rule, *body = rows
    assert all(len(row) == len(header) for row in body), (header, body)
    return [header, *body]


@pytest.mark.slow
def test_quick_zoo_json_and_tables_agree_and_the_figures_are_sane(tmp_path, monkeypatch):
    monkeypatch.setitem(zoo.ZOO, "sigmoid-mlp", zoo.ZooModel("sigmoid-mlp", SigmoidMLP, "mnist5k", "refused"))
    run = benchmark("zoo").function()
    result = run(tmp_path, quick=True, models=["sequential", "lenet5-bn", "sigmoid-mlp"], log=lambda line: None)
    data = json.loads(result.json_path.read_text())
    assert data == json.loads(json.dumps(result.data)) and result.markdown_path.read_text() == result.markdown
    assert data["quick"] is True and data["lanes"] == 16 and data["dp16kd_available"] == {"25F": 56, "85F": 208}
    rows = {r["name"]: r for r in data["models"]}
    assert list(rows) == ["sequential", "lenet5-bn", "sigmoid-mlp"]

    accuracy = {r[0]: r for r in _table(result.markdown, "## Accuracy and compression")[1:]}
    engine = {r[0]: r for r in _table(result.markdown, "## Engine at P=16 and block RAM")[1:]}
    for name in ("sequential", "lenet5-bn"):
        r = rows[name]
        assert r["status"] == "ok"
        model = zoo.ZOO[name].make()
        assert r["params"] == sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                                  for p in m.parameters())
        assert 0.2 < r["float_accuracy_dense"] <= 1 and 0 < r["pruning"]["float_accuracy"] <= 1
        assert 1.3 < r["pruning"]["compression"] < 2.5  # 50% of the conv/linear weights (biases and BN kept)
        assert 0.9 <= r["int8"]["agreement"] <= 1 and r["int8"]["test_digits"] == 200
        e, b, v = r["engine"], r["block_ram"], r["verilator"]
        assert 0 < e["utilisation"] <= 1 and 0 < e["cycles"] <= e["dense_cycles"]
        assert e["cycles"] == sum(layer["cycles"] for layer in e["layers"])
        assert b["dp16kd"] == sum(b["parts"].values()) > 0 and all(n > 0 for n in b["parts"].values())
        assert all(b["devices"][d]["fits"] == (b["dp16kd"] <= b["devices"][d]["available"]) for d in ("25F", "85F"))
        assert v["digits"] == 1 and v["bit_exact"] and v["cycles_equal_model"] and v["cycles"] == e["cycles"]

        row = accuracy[name]
        assert row[1] == f"`{type(model).__name__}`" and row[3] == f"{r['params']:,}"
        assert row[4] == f"{r['dense_macs']:,}" and row[8] == f"{r['pruning']['compression']:.1f}x"
        assert row[6] == f"{100 * r['float_accuracy_dense']:.1f}%" and row[10] == f"{100 * r['int8']['agreement']:.1f}%"
        row = engine[name]
        assert row[2:6] == [f"{e['cycles']:,}", f"{e['dense_cycles']:,}", f"{e['dense_cycles'] / e['cycles']:.2f}x",
                            f"{100 * e['utilisation']:.1f}%"]
        assert row[6] == "1 digit(s), bit-exact, cycles = model" and row[7] == str(b["dp16kd"])
        assert row[8:] == [f"{'fits' if b['devices'][d]['fits'] else 'no'} ({b['dp16kd']}/{n})"
                           for d, n in (("25F", 56), ("85F", 208))]
        assert (tmp_path / name / "image" / "image.bin").is_file()

    refused = rows["sigmoid-mlp"]
    assert refused["status"] == "refused" and refused["refused_at"] == "graph capture (before training)"
    assert "sigmoid" in refused["reason"] and "training" not in refused
    assert engine["sigmoid-mlp"][1] == f"refused at graph capture (before training): {refused['reason']}"
    assert accuracy["sigmoid-mlp"][5:] == ["—"] * 7
