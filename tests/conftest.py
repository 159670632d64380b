from pathlib import Path

import pandas as pd
import pytest

from pipeline.sample_data import make_sample_table

ADULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "adult.csv"


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    if not ADULT.is_file():
        pytest.skip(f"{ADULT} not present")
    return pd.read_csv(ADULT)


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    """Every column kind, with nulls, in a few hundred rows."""
    return make_sample_table(400, seed=7)
