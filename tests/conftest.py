"""Shared pytest fixtures.

vis4mer is installed editable by scripts/setup.sh (`make test` runs it first), so
tests simply `import vis4mer`.
"""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_rngs():
    """Seed Python, NumPy and torch RNGs with 0 before every test, so tests that
    draw random inputs or initialise models are reproducible in isolation."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
