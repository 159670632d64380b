from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ADULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "adult.csv"


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    if not ADULT.is_file():
        pytest.skip(f"{ADULT} not present")
    return pd.read_csv(ADULT)


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    """Every column kind, with nulls, in a few hundred rows."""
    rng = np.random.default_rng(7)
    n = 400
    bimodal = np.where(rng.random(n) < 0.4, rng.normal(-5, 1, n), rng.normal(20, 3, n))
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + n),
            "amount": bimodal,
            "count": rng.poisson(30, n),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2.0, 10.0, n)),
            "colour": rng.choice(["red", "green", "blue"], n),
            "grade": rng.choice([1, 2, 3, 4], n),
            "city": pd.Series(rng.choice(["Zürich", "東京", "Paris"], n)).where(rng.random(n) >= 0.15),
            "active": rng.random(n) < 0.3,
            "joined": pd.to_datetime("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D"),
            "seen_at": np.where(
                rng.random(n) < 0.2,
                pd.NaT,
                pd.to_datetime("2024-03-01") + pd.to_timedelta(rng.integers(0, 86_400 * 30, n), unit="s"),
            ),
            "born": (pd.to_datetime("1950-01-01") + pd.to_timedelta(rng.integers(0, 20000, n), unit="D")).strftime(
                "%Y-%m-%d"
            ),
        }
    )
    frame["seen_at"] = pd.to_datetime(frame["seen_at"])
    return frame
