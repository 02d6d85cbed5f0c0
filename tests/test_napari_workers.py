"""Thread workers run below the GUI thread's scheduling priority, and so do torch's threads
started from them."""
import os
import sys
import threading

import pytest

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_a_job_and_the_threads_it_starts_run_below_the_gui_thread(make_napari_viewer, qtbot):
    from promptseg.napari.workers import BACKGROUND_NICE, start_worker

    make_napari_viewer()
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: dict = {}

    def job():
        import torch

        seen["job"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        mine = set(os.listdir("/proc/self/task"))
        with torch.no_grad():                    # torch's intra-op threads start here if they have not
            a = torch.ones(512, 512)
            for _ in range(3):
                a = a @ a / 512
        seen["threads"] = {t: os.getpriority(os.PRIO_PROCESS, int(t)) for t in set(os.listdir("/proc/self/task")) - mine}
        return True

    done = []
    start_worker(job, lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=60_000)
    assert gui < BACKGROUND_NICE and seen["job"] >= BACKGROUND_NICE
    assert all(n >= BACKGROUND_NICE for n in seen["threads"].values())
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == gui     # the GUI thread is untouched
