"""`sparsegate build` (sw/flow/build.py behind sw/cli/build.py): a design that cannot fit stops with the numbers
(one line, exit 2), the cache digest, the resource estimate, and the sweep's quick mode plumbing (no tools run)."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.platform.board_top import capacity_geometry, retarget_program
from sparsegate.sim.engine.amaranth_sim import small_program
from sparsegate.hw.platform.cores import ENGINE, LIF
from sparsegate.sw.cli.main import main
from sparsegate.sw.flow.build import build_digest
from sparsegate.sw.ir.weight_image import encode_image


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
    assert "does not fit LFE5U-25F" in err[0] and "MULT18X18D 70/28" in err[0] and "DP16KD" in err[0]
    assert not (tmp_path / "o" / "top.bit").exists()


def test_build_unknown_board_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit):
        main(["build", "--board", "nope", "--out", str(tmp_path)])


def test_digest_tracks_image_and_settings():
    a = small_program(lanes=4, seed=1, n_samples=1)
    b = small_program(lanes=4, seed=2, n_samples=1)
    pa = retarget_program(a, capacity_geometry(a))
    pb = retarget_program(b, capacity_geometry(b))
    assert build_digest(pa, board="ulx3s-25f") == build_digest(pa, board="ulx3s-25f")
    assert build_digest(pa, board="ulx3s-25f") != build_digest(pa, board="ulx3s-85f")
    assert build_digest(pa, board="ulx3s-25f") != build_digest(pb, board="ulx3s-25f")


def test_engine_variants_compile_their_options_and_differ_in_digest(image):
    """Issue #16: each named variant is compiled with its ``compile_program`` options (the geometry the board is
    built with says so), so its build has its own cache digest; an unknown name is a BuildError."""
    from sparsegate.sw.flow.build import ENGINE_VARIANTS, BuildError, board_program

    programs = {name: board_program(ENGINE, image, lanes=4, engine=name) for name in ENGINE_VARIANTS}
    assert programs["v2"].geometry == board_program(ENGINE, image, lanes=4).geometry     # the default
    for name, options in ENGINE_VARIANTS.items():
        for key in ("drains", "bank_ratio"):
            if key in options:
                assert getattr(programs[name].geometry, key) == options[key], (name, key)
    digests = {name: build_digest(prog, board="ulx3s-25f") for name, prog in programs.items()}
    assert len(set(digests.values())) == len(ENGINE_VARIANTS)
    with pytest.raises(BuildError, match="engine must be one of v1, v2, got 'v3'"):
        board_program(ENGINE, image, lanes=4, engine="v3")


def test_build_engine_option_reaches_the_build_and_a_bad_one_is_exit_2(tmp_path, image, capsys):
    """``--engine v1`` compiles the old engine (2P activation banks: more block RAM in the fit check than v2's
    P banks for this stride-1 image); a name that is not a variant is argparse's one error line, exit 2."""
    import re

    img = tmp_path / "tiny.bin"
    img.write_bytes(image)
    need = {}
    for engine in ("v1", "v2"):
        code = main(["build", "--board", "ulx3s-25f", "--lanes", "64", "--image", str(img), "--engine", engine,
                     "--out", str(tmp_path / engine), "--cache", str(tmp_path / "cache")])
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and "does not fit" in line
        need[engine] = int(re.search(r"DP16KD (\d+)/", line).group(1))
    assert need["v1"] > need["v2"]
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--board", "ulx3s-25f", "--engine", "v3", "--out", str(tmp_path / "o")])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert exit_.value.code == 2 and len(errors) == 1 and "--engine: invalid choice: 'v3'" in errors[0]


def test_build_takes_several_placer_seeds_and_refuses_a_negative_one(tmp_path, image, capsys, monkeypatch):
    """``--seed 3 1 2`` hands every seed to the build (which keeps the fastest); a negative seed is one error line,
    exit 2, before any tool runs; report.md lists each seed's Fmax."""
    import sparsegate.sw.flow.build as fb

    img = tmp_path / "tiny.bin"
    img.write_bytes(image)
    args = ["build", "--board", "ulx3s-25f", "--lanes", "1", "--image", str(img), "--out", str(tmp_path / "o"),
            "--cache", str(tmp_path / "cache")]
    assert main([*args, "--seed", "2", "-1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "placer seeds must be non-negative integers" in line and not (tmp_path / "o").exists()
    seen = []
    monkeypatch.setattr(fb, "build_board", lambda *a, seeds, **kw: seen.append(seeds) or _seeded_result(image))
    assert main([*args, "--seed", "3", "1", "2"]) == 1      # timing not met in the stand-in's report
    assert seen == [[3, 1, 2]]
    out = capsys.readouterr().out
    assert "Fastest of 3 placer seeds: seed 2 (seed 1: 101.5, seed 2: 110.2, seed 3: failed MHz; mean 105.8)" in out
    assert "- seed 1: `a1` -> `b1`: 9.85 ns (101.5 MHz), 3 logic levels" in out
    assert "- seed 2: `a2` -> `b2`: 9.07 ns (110.2 MHz)" in out and "- seed 3" not in out


def _seeded_result(image):
    """A build result as a three-seed build leaves it (seed 3's nextpnr failed)."""
    from sparsegate.sw.flow.build import BuildResult, board_program

    geometry = ENGINE.identity(board_program(ENGINE, image, lanes=1))
    return BuildResult.from_dict({
        "board": "ulx3s-25f", "core": ENGINE.name, "lanes": 1, "clock_mhz": 100.0, "image": "tiny", "digest": "d",
        "tools": {}, "geometry": geometry, "report": {
            "device": "LFE5U-25F", "package": "CABGA381", "speed": "6", "elapsed_s": 9.0, "fmax_mhz": 110.2,
            "timing_met": False, "utilisation": {"TRELLIS_COMB": {"used": 10, "available": 24288}},
            "clocks": {"clk": {"achieved_mhz": 110.2, "constraint_mhz": 125.0, "met": False}},
            "seed": 2, "seed_fmax": {"1": 101.5, "2": 110.2, "3": None},
            "seed_critical": {str(seed): {"from_clock": "clk", "to_clock": "clk", "delay_ns": 1000 / fmax, "logic_ns": 1.0,
                                          "routing_ns": 1000 / fmax - 1.0, "levels": 3, "start": f"a{seed}",
                                          "end": f"b{seed}"} for seed, fmax in ((1, 101.5), (2, 110.2))}}})


def test_estimate_scales_with_lanes():
    small = small_program(lanes=4, seed=1, n_samples=1)
    big = small_program(lanes=16, seed=1, n_samples=1)
    e4 = ENGINE.estimate(retarget_program(small, capacity_geometry(small)))
    e16 = ENGINE.estimate(retarget_program(big, capacity_geometry(big)))
    assert e4.mult18x18d == 10 and e16.mult18x18d == 22
    assert e16.parts["activation banks"] == 32 > e4.parts["activation banks"]
    assert e4.to_dict()["DP16KD"] == e4.dp16kd == sum(e4.parts.values())


def test_detect_core_from_the_image(tmp_path, image):
    from sparsegate.sw.flow.build import BuildError, detect_core
    from sparsegate.sw.ir.snn_golden import save_int_snn
    from support.small_snn import small_snn

    (tmp_path / "img.bin").write_bytes(image)
    save_int_snn(tmp_path / "snn.npz", small_snn(1))
    assert detect_core("auto", tmp_path / "img.bin") is ENGINE
    assert detect_core("auto", tmp_path / "snn.npz") is LIF
    assert detect_core("auto", None) is ENGINE
    assert detect_core("lif", tmp_path / "img.bin") is LIF
    with pytest.raises(BuildError, match="unknown core"):
        detect_core("nope", None)


def test_lif_build_estimate_and_does_not_fit(tmp_path, capsys):
    """The LIF core's block-RAM estimate counts one bank per unit; an oversized sizing stops before the tools."""
    from sparsegate.hw.lif.design import LifDesign
    from sparsegate.sw.ir.snn_golden import IntSNN, LifParams, save_int_snn

    rng = np.random.default_rng(0)
    snn = IntSNN(rng.integers(-9, 9, size=(800, 784)), rng.integers(-9, 9, size=(10, 800)),
                 LifParams(threshold=500), LifParams.integrator(), np.ones(800, bool), 16)
    est = LIF.estimate(LifDesign(snn, units=20, per_word=8))
    assert est.parts["hidden banks"] == 20 * 16      # 64 x 3920 each: 2 wide x 8 deep
    assert est.parts["readout banks"] == 10
    assert build_digest(LifDesign(snn), board="a") != build_digest(LifDesign(snn, units=40), board="a")
    save_int_snn(tmp_path / "snn.npz", snn)
    code = main(["build", "--board", "ulx3s-25f", "--image", str(tmp_path / "snn.npz"), "--out", str(tmp_path / "o"),
                 "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "LIF core (20 units)" in err[0] and "does not fit LFE5U-25F" in err[0] and "hidden banks 320" in err[0]


def test_sweep_reports_points_that_do_not_fit_and_labels_quick_mode(tmp_path, monkeypatch):
    """The sweep's table and JSON with a stand-in for the tools: fitted points get numbers, the rest
    'does not fit' with what they need; quick mode labels Fmax as a placement estimate."""
    import json

    import sparsegate.sw.flow.build as fb
    from sparsegate.sw.bench.builds import run_build_sweep
    from sparsegate.hw.platform.ecp5_build import CellUsage, DesignDoesNotFit

    calls = []

    def fake_build(board, lanes, out, *, place_only, **kw):
        calls.append((board, lanes, place_only))
        if lanes > 4:
            raise DesignDoesNotFit("no", {"DP16KD": CellUsage(80, 56)})
        util = {k: {"used": lanes * n, "available": 99999} for k, n in
                (("TRELLIS_COMB", 1000), ("TRELLIS_FF", 500), ("MULT18X18D", 1), ("DP16KD", 10))}
        return fb.BuildResult.from_dict({"digest": f"d{lanes}", "report": {
            "utilisation": util, "fmax_mhz": 50.0 + lanes, "timing_met": False, "elapsed_s": 12.0, "seed": 1,
            "synth_opts": "-dff" if lanes == 4 else "",
            "critical_paths": [{"from_clock": "<async>", "to_clock": "posedge clk", "delay_ns": 9.0, "logic_ns": 0.0,
                                "routing_ns": 9.0, "levels": 0, "start": "uart_rx", "end": "sync1"},
                               {"from_clock": "posedge clk", "to_clock": "posedge clk", "delay_ns": 1000 / (50.0 + lanes),
                                "logic_ns": 5.0, "routing_ns": 1000 / (50.0 + lanes) - 5.0, "levels": 6,
                                "start": f"engine.l{lanes}", "end": "engine.q"}]}})

    monkeypatch.setattr(fb, "build_board", fake_build)
    from sparsegate.sw.jobs import RunnerOptions

    # One worker thread in this process: the stand-in is what the runner's job calls, in grid order.
    md = run_build_sweep(tmp_path, quick=True, lanes=(1, 4, 16), devices=("25f",), image=b"x",
                         log=lambda s: None, jobs=RunnerOptions(workers=1, processes=False)).markdown
    assert calls == [("ulx3s-25f", 1, True), ("ulx3s-25f", 4, True), ("ulx3s-25f", 16, True)]
    assert "quick mode: placed only" in md
    assert "| 25F | 4 | v2 | placed | 4,000 | 2,000 | 4 | 40 | 54.0 (estimate) | no | 1 | 12 |" in md
    assert "(seed 1); **quick mode" in md
    assert "| 25F | 16 | v2 | placed | does not fit: needs DP16KD 80/56 |" in md
    assert "25F P=4 was synthesised with `synth_ecp5 -dff`" in md and "P=1 was" not in md
    # each point names its worst register-to-register path (not the faster async one listed first)
    assert "- 25F P=4 (placed): `engine.l4` -> `engine.q`: 18.52 ns (54.0 MHz), 6 logic levels" in md
    points = json.loads((tmp_path / "builds.json").read_text())["points"]
    assert [p["status"] for p in points] == ["ok", "ok", "does not fit"]
    assert all(p["job"]["attempts"] == 1 and not p["job"]["cached"] and p["job"]["worker"] for p in points)
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="lanes must be among"):
        run_build_sweep(tmp_path, lanes=(3,), image=b"x")


def test_sweep_routes_the_chosen_points_and_places_the_rest(tmp_path, monkeypatch):
    """Issue #20: a mixed grid routes only the chosen points (sign-off Fmax), first, and places the rest, every
    row saying which; a routed point outside the lanes slice is added to the grid, in grid order."""
    import sparsegate.sw.flow.build as fb
    from sparsegate.sw.bench.builds import run_build_sweep
    from sparsegate.sw.jobs import RunnerOptions

    calls, seeded = [], []

    def fake_build(board, lanes, out, *, place_only, seeds=(1,), **kw):
        calls.append((board, lanes, place_only))
        seeded.append(tuple(seeds))
        tried = {str(s): 90.0 + lanes + s - 1 for s in seeds}
        return fb.BuildResult.from_dict({"digest": f"d{lanes}", "report": {
            "utilisation": {"TRELLIS_COMB": {"used": 100 * lanes, "available": 99999}}, "fmax_mhz": max(tried.values()),
            "timing_met": False, "elapsed_s": 3.0, "seed": max(seeds), "seed_fmax": tried}})

    monkeypatch.setattr(fb, "build_board", fake_build)
    sweep = run_build_sweep(tmp_path, routed=[("25F", 4), ("45f", 8)], routed_v1=(), lanes=(1, 4),
                            devices=("25f", "45f"), image=b"x", log=lambda s: None,
                            jobs=RunnerOptions(workers=1, processes=False))
    assert calls == [("ulx3s-25f", 4, False), ("ulx3s-45f", 8, False),   # routed first, the table in grid order
                     ("ulx3s-25f", 1, True), ("ulx3s-45f", 1, True), ("ulx3s-45f", 4, True)]
    assert [p["mode"] for p in sweep.data["points"]] == ["placed", "routed", "placed", "placed", "routed"]
    # routed points: one build per placer seed, the fastest kept, each seed's Fmax in the table; placed: seed 1
    assert seeded == [(1, 2, 3, 4), (1, 2, 3, 4), (1,), (1,), (1,)]
    assert "| 25F | 4 | v2 | routed | 400 | 0 | 0 | 0 | 97.0 | no | 1: 94.0, 2: 95.0, 3: 96.0, 4: 97.0 (mean 95.5) | 3 |" in \
        sweep.markdown
    assert "| 25F | 1 | v2 | placed | 100 | 0 | 0 | 0 | 91.0 (estimate) | no | 1 | 3 |" in sweep.markdown
    assert "seeds 1, 2, 3, 4, the fastest kept" in sweep.markdown
    assert "**mixed:" in sweep.markdown
    with pytest.raises(ValueError, match="routed point must be"):
        run_build_sweep(tmp_path, routed=[("25f", 5)], lanes=(1,), devices=("25f",), image=b"x")


def test_sweep_routes_old_engine_points_as_their_own_rows(tmp_path, monkeypatch):
    """Issue #16: the old engine's routed points are built with ``engine="v1"`` beside the grid's v2 points, into
    their own folders, each row and JSON point naming its engine; a quick sweep has none, and a sweep of one
    device routes no point of another."""
    import json

    import sparsegate.sw.flow.build as fb
    from sparsegate.sw.bench.builds import run_build_sweep
    from sparsegate.sw.jobs import RunnerOptions

    calls = []

    def fake_build(board, lanes, out, *, place_only, engine, **kw):
        calls.append((board, lanes, engine, place_only))
        out.mkdir(parents=True)
        (out / "report.md").write_text(engine)
        return fb.BuildResult.from_dict({"digest": f"d{lanes}{engine}", "report": {
            "utilisation": {"TRELLIS_COMB": {"used": 100 * lanes, "available": 99999}},
            "fmax_mhz": 90.0 + lanes + (engine == "v1"), "timing_met": False, "elapsed_s": 3.0, "seed": 1}})

    monkeypatch.setattr(fb, "build_board", fake_build)
    options = dict(lanes=(1, 4), devices=("25f",), image=b"x", log=lambda s: None, seeds=(1,),
                   jobs=RunnerOptions(workers=1, processes=False))
    sweep = run_build_sweep(tmp_path, routed=[("25f", 4)], routed_v1=[("25f", 4), ("45f", 16)], **options)
    assert calls == [("ulx3s-25f", 4, "v2", False), ("ulx3s-25f", 4, "v1", False), ("ulx3s-25f", 1, "v2", True)]
    assert [(p["device"], p["lanes"], p["engine"], p["mode"]) for p in sweep.data["points"]] == [
        ("25F", 1, "v2", "placed"), ("25F", 4, "v2", "routed"), ("25F", 4, "v1", "routed")]
    assert "| 25F | 4 | v2 | routed | 400 | 0 | 0 | 0 | 94.0 | no | 1 | 3 |" in sweep.markdown
    assert "| 25F | 4 | v1 | routed | 400 | 0 | 0 | 0 | 95.0 | no | 1 | 3 |" in sweep.markdown
    assert json.loads((tmp_path / "builds.json").read_text())["points"] == sweep.data["points"]
    for folder, engine in (("ulx3s-25f-p4", "v2"), ("ulx3s-25f-p4-v1", "v1")):
        assert (tmp_path / folder / "report.md").read_text() == engine
    assert not (tmp_path / "ulx3s-45f-p16-v1").exists()
    calls.clear()
    quick = run_build_sweep(tmp_path / "quick", quick=True, **options)
    assert {engine for _, _, engine, _ in calls} == {"v2"} and len(quick.data["points"]) == 2


def test_the_v2_jobs_keep_their_runner_cache_keys(tmp_path, monkeypatch):
    """The sweep's single-seed v2 jobs have the arguments they had before the engine variants and the placer seeds
    (so the runner's cache still serves every point built then); a v1 job at the same point, or a routed point
    with several seeds, has a key of its own."""
    import sparsegate.sw.bench.builds as builds
    from sparsegate.sw.jobs import SweepResult
    from sparsegate.sw.jobs.digest import job_digest

    jobs = []

    def capture(todo, options, on_result):
        jobs.extend(todo)
        return SweepResult([], None, None, 0.0)

    monkeypatch.setattr(builds, "run_jobs", capture)
    sweep = dict(routed=[("25f", 4)], routed_v1=[("25f", 4)], lanes=(4,), devices=("25f",), image=b"x",
                 log=lambda s: None)
    builds.run_build_sweep(tmp_path, seeds=(1,), **sweep)
    by_key = {job.key: job for job in jobs}
    assert set(by_key) == {"ulx3s-25f-p4", "ulx3s-25f-p4-v1"}
    before = {"image": b"x", "clock_mhz": 100.0, "place_only": False, "sources": builds.gateware_sources_digest(),
              "build_cache": None}
    v2, v1 = by_key["ulx3s-25f-p4"], by_key["ulx3s-25f-p4-v1"]
    assert v2.fn is builds.sweep_point and v2.args == ("ulx3s-25f", "25f", 4) and v2.kwargs == before
    assert job_digest(v2.fn, v2.args, v2.kwargs) == job_digest(builds.sweep_point, ("ulx3s-25f", "25f", 4), before)
    assert v1.kwargs == {**before, "engine": "v1"}
    assert job_digest(v1.fn, v1.args, v1.kwargs) != job_digest(v2.fn, v2.args, v2.kwargs)
    jobs.clear()
    builds.run_build_sweep(tmp_path, **sweep)       # the default: three placer seeds on routed points
    seeded = {job.key: job for job in jobs}["ulx3s-25f-p4"]
    assert seeded.kwargs == {**before, "seeds": builds.ROUTED_SEEDS} and builds.ROUTED_SEEDS == (1, 2, 3, 4)
    assert job_digest(seeded.fn, seeded.args, seeded.kwargs) != job_digest(v2.fn, v2.args, v2.kwargs)
    with pytest.raises(ValueError, match="placer seeds"):
        builds.run_build_sweep(tmp_path, seeds=(), **sweep)


def test_largest_fitting_lanes_is_the_last_that_the_estimate_lets_through():
    """The sweep's 'largest P that fits' is the build's own block-RAM/DSP estimate at its limit: that P fits
    the device, the next one in the grid does not."""
    from sparsegate.hw.platform.boards import DEVICE_RESOURCES, device_size, make_platform
    from sparsegate.sw.bench.builds import LANES, largest_fitting_lanes
    from sparsegate.sw.flow.build import ENGINE, board_program

    avail = DEVICE_RESOURCES[device_size(str(make_platform("ulx3s-25f").device))]
    p = largest_fitting_lanes("25f", None)
    est = lambda lanes: ENGINE.estimate(board_program(ENGINE, None, lanes=lanes))  # noqa: E731
    assert est(p).dp16kd <= avail["DP16KD"] and est(p).mult18x18d <= avail["MULT18X18D"]
    nxt = est(LANES[LANES.index(p) + 1])
    assert nxt.dp16kd > avail["DP16KD"] or nxt.mult18x18d > avail["MULT18X18D"]


@pytest.mark.parametrize("count", ["-1", "1001"])
def test_netlist_sim_refuses_a_bad_count_before_any_tool(tmp_path, image, capsys, count):
    """Issue #21: a --netlist-sim count outside the held-out digits is one line and exit 2, nothing built."""
    img = tmp_path / "net.bin"
    img.write_bytes(image)
    code = main(["build", "--board", "ulx3s-25f", "--lanes", "1", "--image", str(img), "--out", str(tmp_path / "o"),
                 "--cache", str(tmp_path / "cache"), "--netlist-sim", count])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--netlist-sim must be in 0..1000" in err[0], err
    assert not (tmp_path / "o" / "top.bit").exists()
