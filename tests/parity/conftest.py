"""Parity tests build tiny random transformers models in the test; nothing is downloaded."""

import pytest
from transformers.utils import logging as hf_logging


@pytest.fixture(autouse=True, scope="session")
def quiet_transformers():
    """Silences transformers' progress bars and info logs, which would bury test output."""
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
