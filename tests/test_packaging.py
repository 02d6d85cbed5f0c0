"""The built wheel ships the npe2 manifest and the sample data, and napari finds the plugin."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_manifest_and_samples_and_is_discovered(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("napari_promptseg-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "promptseg/napari.yaml" in names
    assert "promptseg/sample_data/brain/classes.json" in names
    assert sum(n.startswith("promptseg/sample_data/nuclei/images/") for n in names) == 4
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    # With the wheel first on sys.path, npe2 must resolve the plugin from the wheel install.
    code = ("import npe2, promptseg, promptseg.io as io; "
            "m = npe2.PluginManifest.from_distribution('napari-promptseg'); "
            "print(m.name, promptseg.__file__, io.sample_data_dir(), len(io.load_sample('nuclei').items))")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    name, module, samples, n = out.stdout.split()
    assert name == "napari-promptseg" and module.startswith(str(target)) and samples.startswith(str(target))
    assert n == "4"
