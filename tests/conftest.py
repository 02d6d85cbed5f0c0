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
