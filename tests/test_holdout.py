"""The holdout design on real tables: a verbatim copy of the training rows fails the DCR share and the
membership-inference check by a wide margin, and an independent sample of the same population (rows of a third
split, never in train) passes by a wide margin, at the 80/20 split that used to dilute a copy to 0.625.

Tables from ../shared/data (skipped when absent), shuffled with a seed and cut into 4,000 training, 1,000
holdout and 2,000 independent rows, so each case takes a second or two."""

from pathlib import Path

import pandas as pd
import pytest

from tabtwin.evaluation.gate import GateConfig
from tabtwin.evaluation.privacy import privacy_metrics
from tabtwin.pipeline.schema import infer_schema

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GATE = GateConfig()
# The margins the tests assert, against the gate's defaults (0.60 for both figures).
COPY_MARGIN = 0.35  # a copy scores at least threshold + 0.35 (0.95): about 1 on both tables
FRESH_MARGIN = 0.05  # an independent sample scores at most threshold - 0.05 (0.55): about 0.50 +- 0.01


def split(name: str, seed: int = 0):
    path = DATA / f"{name}.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    frame = pd.read_csv(path).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame.iloc[:4000], frame.iloc[4000:5000], frame.iloc[5000:7000]


@pytest.fixture(scope="module", params=["adult", "wa_churn"])
def results(request):
    train, holdout, independent = split(request.param)
    schema = infer_schema(train)
    return {
        "copy": privacy_metrics(train, holdout, train.copy(), schema),
        "independent": privacy_metrics(train, holdout, independent, schema),
    }


def test_sizes_are_stated(results):
    for result in results.values():
        assert (result["n_train"], result["n_holdout"], result["n_compared"]) == (4000, 1000, 1000)


def test_a_verbatim_copy_fails_by_a_wide_margin(results):
    copy = results["copy"]
    assert copy["dcr_share"] >= GATE.max_dcr_share + COPY_MARGIN
    assert copy["mia_auc"] >= GATE.max_mia_auc + COPY_MARGIN


def test_an_independent_sample_passes_by_a_wide_margin(results):
    independent = results["independent"]
    assert independent["dcr_share"] <= GATE.max_dcr_share - FRESH_MARGIN
    assert independent["mia_auc"] <= GATE.max_mia_auc - FRESH_MARGIN
    assert abs(independent["dcr_share"] - 0.5) < 0.04 and abs(independent["mia_auc"] - 0.5) < 0.04
