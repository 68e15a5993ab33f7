"""`sparsegate build`: a design that cannot fit stops with the numbers (one line, exit 2), the cache digest,
the resource estimate, and the sweep's quick mode plumbing (no tools run)."""
from __future__ import annotations

import pytest

from sparsegate.hw.board_top import capacity_geometry, retarget_program
from sparsegate.sim.engine_sim import small_program
from sparsegate.sw.build_command import design_digest, estimate_resources
from sparsegate.sw.cli import main
from sparsegate.sw.weight_image import encode_image


@pytest.fixture(scope="module")
def image():
    prog = small_program(lanes=1, seed=3, n_samples=1, spec=[
        {"kind": "conv", "cout": 2, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.6},
        {"kind": "fc", "cout": 4, "density": 0.6}], input_shape=(1, 6, 6))
    return encode_image(prog.qnet)


def test_build_does_not_fit_gives_numbers(tmp_path, image, capsys):
    img = tmp_path / "tiny.bin"
    img.write_bytes(image)
    code = main(["build", "--board", "ulx3s-25f", "--lanes", "64", "--image", str(img), "--out", str(tmp_path / "o"),
                 "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert "does not fit LFE5U-25F" in err[0] and "MULT18X18D 67/28" in err[0] and "DP16KD" in err[0]
    assert not (tmp_path / "o" / "top.bit").exists()


def test_build_unknown_board_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit):
        main(["build", "--board", "nope", "--out", str(tmp_path)])


def test_digest_tracks_image_and_settings():
    a = small_program(lanes=4, seed=1, n_samples=1)
    b = small_program(lanes=4, seed=2, n_samples=1)
    pa = retarget_program(a, capacity_geometry(a))
    pb = retarget_program(b, capacity_geometry(b))
    assert design_digest(pa, board="ulx3s-25f") == design_digest(pa, board="ulx3s-25f")
    assert design_digest(pa, board="ulx3s-25f") != design_digest(pa, board="ulx3s-85f")
    assert design_digest(pa, board="ulx3s-25f") != design_digest(pb, board="ulx3s-25f")


def test_estimate_scales_with_lanes():
    small = small_program(lanes=4, seed=1, n_samples=1)
    big = small_program(lanes=16, seed=1, n_samples=1)
    e4 = estimate_resources(retarget_program(small, capacity_geometry(small)))
    e16 = estimate_resources(retarget_program(big, capacity_geometry(big)))
    assert e4["MULT18X18D"] == 7 and e16["MULT18X18D"] == 19
    assert e16["DP16KD_parts"]["activation banks"] == 32 > e4["DP16KD_parts"]["activation banks"]
