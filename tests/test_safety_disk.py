"""A full disk (a small tmpfs) gives a clear message and leaves the project as it was."""
import json
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from promptseg.project import Project
from promptseg.project.paths import SpaceError


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _leave_free(folder, free_bytes):
    """Fill the disk of ``folder`` until about ``free_bytes`` remain."""
    n = shutil.disk_usage(folder).free - free_bytes
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, n))


def _assert_intact(project):
    con = sqlite3.connect(project / "project.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with Project.open(project) as p:
        for lab in p.labels():
            p.read_label(lab)
        return p.summary()


def test_save_label_info_and_training_on_a_full_disk(tiny_round_project, small_disk):
    project = small_disk / "p"
    shutil.copytree(tiny_round_project, project)
    before = _assert_intact(project)
    _leave_free(small_disk, 40 << 10)
    with Project.open(project) as p, pytest.raises(SpaceError, match=r"no space left on the project's disk: \d+ MB needed"):
        p.save_label("nuclei_03", np.ones((256, 256), np.uint8), ["nucleus"], "corrected")
    assert _assert_intact(project) == before
    with open(small_disk / "filler", "ab", buffering=0) as fh:   # now to the last byte
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    info = subprocess.run([sys.executable, "-m", "promptseg.cli", "info", str(project)],
                          capture_output=True, text=True, timeout=300)
    assert info.returncode == 0 and "not readable" not in info.stderr, info.stderr
    assert json.loads(info.stdout)["labels_by_kind"] == before["labels_by_kind"]

    # Room for the round's up-front estimate, not for everything it writes: it fails on the way.
    (small_disk / "filler").unlink()
    weights = (project / "models" / "1" / "model.safetensors").stat().st_size
    _leave_free(small_disk, 5 * weights + (300 << 10))
    proc = subprocess.run([sys.executable, "-m", "promptseg.cli", "train", str(project), "--max-steps", "4",
                           "--save-every", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    last = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    assert last["event"] == "error"
    assert last["message"].startswith("no space left on the project's disk:") and "MB needed" in last["message"]
    (small_disk / "filler").unlink()
    after = _assert_intact(project)
    assert after["active_model"] == 1 and after["labels_by_kind"] == before["labels_by_kind"]
    with Project.open(project) as p:
        assert [r.status for r in p.rounds()] in (["failed"], ["interrupted"])
    assert not list((project / "models").glob("tmp*")) and not list((project / "models").glob(".tmp-*"))
