"""The reference workloads' cache files name their settings and the code they came from, so a network trained
or pruned by other code (an older checkout's cache folder) is never read back as this code's."""
from __future__ import annotations

from sparsegate.sw.flow.lenet import cache_file


def test_a_cache_file_names_its_settings_and_changes_with_the_model_code(tmp_path, monkeypatch):
    package = tmp_path / "src" / "model_code"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("LR = 1e-3\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr("sparsegate.sw.prune.MODEL_CODE", ("model_code",))

    first = cache_file(tmp_path, "lenet5_sra_nrp", ".bin", target_sparsity=0.97, rounds=16)
    assert first.parent == tmp_path and first.name.startswith("lenet5_sra_nrp-0.97-16-") and first.suffix == ".bin"
    assert cache_file(tmp_path, "lenet5_sra_nrp", ".bin", target_sparsity=0.97, rounds=16) == first
    assert cache_file(tmp_path, "lenet5_sra_nrp", ".bin", target_sparsity=0.97, rounds=8) != first
    (package / "__init__.py").write_text("LR = 2e-3\n")     # the training code changed: another file
    assert cache_file(tmp_path, "lenet5_sra_nrp", ".bin", target_sparsity=0.97, rounds=16) != first
    assert cache_file(None, "lenet5_sra_nrp", ".bin", rounds=16) is None
