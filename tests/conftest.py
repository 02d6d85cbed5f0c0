import os

import numpy as np
import pytest

# Never reach a model hub from tests: everything must load from installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def default_predictor():
    from promptseg import Predictor

    return Predictor.load(None, device="cpu")


@pytest.fixture(scope="session")
def nuclei():
    from promptseg.io import load_sample

    return load_sample("nuclei")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny_round_project(tmp_path):
    """The nuclei sample with 3 gold labels and a tiny active model: training rounds in seconds."""
    from promptseg.io import load_sample
    from promptseg.model.checkpoint import save_checkpoint
    from promptseg.model.segmenter import ModelConfig, PromptSegModel
    from promptseg.project import Project

    s = load_sample("nuclei")
    with Project.create(tmp_path / "p") as p:
        for it in s.items:
            p.add_image(it.image, name=it.name)
        for it in s.items[:3]:
            p.save_label(it.name, it.mask, ["nucleus"], "gold")
        save_checkpoint(PromptSegModel(ModelConfig.tiny()), tmp_path / "tiny")
        p.register_model(tmp_path / "tiny", config={"seed": "tiny"})
    return tmp_path / "p"
