import os
from pathlib import Path

import pandas as pd
import pytest

from tabtwin.pipeline.device import DEVICE_ENV, default_device, resolve_device
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.sample_data import make_sample_table

# Prefect in the test process as the CLI runs it: quiet (its INFO lines would go to a stderr an earlier test's capture
# closed) and without analytics. Set before any test imports Prefect; a level set by whoever runs the tests wins.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

ADULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "adult.csv"


def pytest_configure(config):
    """TABTWIN_DEVICE=cuda runs the suite on the GPU; where there is none, stop at once with one clear line."""
    try:
        resolve_device(default_device())
    except TabtwinError as err:
        raise pytest.UsageError(f"{DEVICE_ENV}: {err}") from None


def pytest_report_header(config):
    return f"tabtwin device: {default_device()} -> {resolve_device(default_device())}"


@pytest.fixture(scope="session")
def device() -> str:
    """The device tests train and search on: $TABTWIN_DEVICE (bench/gpu_check.sh sets cuda), else "auto"."""
    return default_device()


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    if not ADULT.is_file():
        pytest.skip(f"{ADULT} not present")
    return pd.read_csv(ADULT)


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    """Every column kind, with nulls, in a few hundred rows."""
    return make_sample_table(400, seed=7)


def make_correlated_table(n: int, seed: int) -> pd.DataFrame:
    """Columns that depend on each other, so that breaking the dependence is detectable."""
    import numpy as np

    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.5, n)
    age = np.clip(20 + (np.log(income) - 9) * 15 + rng.normal(0, 5, n), 18, 90).round()
    segment = np.where(income > np.median(income), "high", "low")
    flip = rng.random(n) < 0.1
    segment = np.where(flip, np.where(segment == "high", "low", "high"), segment)
    region = np.where(age > 45, rng.choice(["north", "east"], n), rng.choice(["south", "west"], n))
    return pd.DataFrame(
        {
            "row_id": np.arange(n),
            "income": income.round(2),
            "age": age.astype(int),
            "segment": segment,
            "region": region,
            "member": (income > np.quantile(income, 0.7)) ^ (rng.random(n) < 0.05),
        }
    )


@pytest.fixture(scope="session")
def correlated_split():
    """(train, holdout, a fresh draw from the same distribution) of the correlated table."""
    table = make_correlated_table(3000, seed=11)
    fresh = make_correlated_table(1500, seed=12)
    return table.iloc[:1500].reset_index(drop=True), table.iloc[1500:].reset_index(drop=True), fresh
