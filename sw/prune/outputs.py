"""The files of one pruning run: checkpoint, per-layer table (JSON + Markdown), plot, sensitivity curves and
the summary JSON, all written atomically. Shared by ``sparsegate prune`` and the demo."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from sparsegate.sw.prune.api import PruneResult
from sparsegate.sw.prune.counting import plot_layer_table
from sparsegate.sw.prune.registry import get_method, table_of
from sparsegate.sw.util.atomic_io import write_json, write_text

META_KEYS = ("method", "dataset", "seed", "data_seed", "held_out", "test_accuracy", "compression", "mac_reduction")


def write_outputs(out: Path, model: nn.Module, model_name: str, result: PruneResult, summary: dict) -> dict[str, Path]:
    """Write ``result`` (its model and masks) and ``summary`` (needs ``method``, ``test_accuracy``,
    ``base_test_accuracy``, ``accuracy_drop``; ``compression``/``mac_reduction`` default to the table's) under
    ``out``; returns the paths by kind (``checkpoint``: ``model.pt``, or the method's own file)."""
    record = get_method(result.method)
    out = Path(out)
    table = table_of(record.name, model, result.masks)
    paths = {"checkpoint": out / record.checkpoint, "layers_json": out / "layers.json",
             "layers_md": out / "layers.md", "summary": out / "prune.json", "layers_png": out / "layers.png"}
    record.save(paths["checkpoint"], model, model_name, result.masks,
                meta={k: summary[k] for k in META_KEYS if k in summary})
    write_json(paths["layers_json"], table.to_dict())
    compression = summary.get("compression", table.total.compression)
    mac_reduction = summary.get("mac_reduction", table.total.mac_reduction)
    header = (f"# {model_name} pruned with {summary['method']}\n\n"
              f"Test accuracy {100 * summary['test_accuracy']:.2f}% (base {100 * summary['base_test_accuracy']:.2f}%, "
              f"drop {100 * summary['accuracy_drop']:.2f} points); compression {compression:.1f}x; "
              f"MAC reduction {100 * mac_reduction:.1f}%.\n\n")
    write_text(paths["layers_md"], header + table.to_markdown())
    plot_layer_table(table, paths["layers_png"])
    if result.sensitivity is not None:
        for kind, path in result.sensitivity.write(out, "sensitivity").items():
            paths[f"sensitivity_{kind}"] = path
    summary = dict(summary, table=table.to_dict(), outputs={k: str(v) for k, v in paths.items()})
    write_json(paths["summary"], summary)
    return paths
