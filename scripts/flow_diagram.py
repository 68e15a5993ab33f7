#!/usr/bin/env python3
"""Draw the sparsegate flow (the stages of ``sparsegate demo``) as docs/flow.png.

    .venv/bin/python scripts/flow_diagram.py [--out docs/flow.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# (x, y, title, detail, colour): software top row, hardware bottom row
BOXES = {
    "train": (0.0, 1.0, "train", "PyTorch model\nsw/data.py, sw/ml/train.py", "#dbe9f6"),
    "prune": (1.0, 1.0, "prune", "SRA + NRP, KEP,\nACRA, coarse, task", "#dbe9f6"),
    "quantize": (2.0, 1.0, "quantize", "int8 golden model\nsw/golden.py", "#dbe9f6"),
    "export": (3.0, 1.0, "export", "sparse-index image\nimage.bin, hex, manifest", "#dbe9f6"),
    "simulate": (3.0, 0.0, "simulate", "Amaranth engine, P lanes\nVerilator / Icarus", "#e3f1dc"),
    "build": (2.0, 0.0, "build", "ECP5 bitstream\nYosys / nextpnr (YoWASP)", "#e3f1dc"),
    "run": (1.0, 0.0, "run", "board over UART\nor simulated board", "#e3f1dc"),
    "report": (0.0, 0.0, "report", "report.md / .html\nBENCHMARKS.md", "#f6e9d6"),
}
ARROWS = [("train", "prune"), ("prune", "quantize"), ("quantize", "export"), ("export", "simulate"),
          ("simulate", "build"), ("build", "run"), ("run", "report")]
W, H = 0.8, 0.55


def draw(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for x, y, title, detail, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x - W / 2, y - H / 2), W, H, boxstyle="round,pad=0.02,rounding_size=0.06",
                                    facecolor=colour, edgecolor="#444444"))
        ax.text(x, y + 0.12, title, ha="center", va="center", fontsize=11, fontweight="bold")
        ax.text(x, y - 0.09, detail, ha="center", va="center", fontsize=7.5)
    for a, b in ARROWS:
        (xa, ya), (xb, yb) = BOXES[a][:2], BOXES[b][:2]
        if ya == yb:
            start, end = (xa + (W / 2 if xb > xa else -W / 2), ya), (xb + (-W / 2 if xb > xa else W / 2), yb)
        else:
            start, end = (xa, ya - H / 2), (xb, yb + H / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#333333"))
    ax.text(-0.45, 1.42, "software (sw/): PyTorch → integers", fontsize=9, color="#2b5d8c")
    ax.text(-0.45, -0.43, "hardware (hw/, sim/): engine → FPGA;  `sparsegate demo` runs every stage but run",
            fontsize=9, color="#3d7a2b")
    ax.set_xlim(-0.5, 3.5)
    ax.set_ylim(-0.5, 1.5)
    ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "flow.png")
    args = parser.parse_args()
    draw(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
