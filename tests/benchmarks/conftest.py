"""Shared by the benchmark tests, which run peers' own training code in this process."""

import os

import pytest


@pytest.fixture(autouse=True)
def _restore_environment():
    """Peers write into os.environ: pythae's BaseTrainerConfig sets MASTER_ADDR/MASTER_PORT, which would make every
    later test's Accelerator look like a multi-process launch that came up as one process (hfgen's launch guard), and
    the Trainers' set-up adds torch's TORCHINDUCTOR_CACHE_DIR. Every benchmark test leaves the environment as it found it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
