"""Personal data columns: detected, never modelled, replaced by realistic fakes; no real e-mail address, phone,
national id or IP address reaches a synthetic table, repeated in the source or not (a fake person's name may equal
a real one, as names do)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabtwin.generators.autoregressive import AutoregressiveGenerator
from tabtwin.pipeline.columns.personal import detect_pii, mask, pii_profile
from tabtwin.pipeline.schema import infer_schema

FIRST = ["Anna", "Jonas", "Lea", "Lukas", "Mia", "Felix", "Emma", "Paul", "Lina", "Noah"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"]


def customers(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Swiss customers whose e-mail addresses and phone numbers repeat (households share them)."""
    rng = np.random.default_rng(seed)
    household = rng.integers(0, n // 4, n)  # about 4 people a household
    names = [f"{FIRST[i % 10]} {LAST[(i // 10) % 8]}" for i in rng.integers(0, 80, n)]
    return pd.DataFrame({
        "customer_name": names,
        "email": [f"family{h}@bluewin.ch" for h in household],
        "phone": [f"+41 44 {100 + h:03d} {h % 100:02d} {(7 * h) % 100:02d}" for h in household],
        "ssn": [f"{h:03d}-{h % 90 + 10:02d}-{1000 + h:04d}" for h in household],
        "ip": [f"10.{h % 250}.{h // 250}.{h % 200 + 1}" for h in household],
        "segment": rng.choice(["retail", "premium", "business"], n),
        "spend": rng.gamma(2.0, 150.0, n).round(2),
    })


def test_pii_columns_are_detected_by_value_and_by_name():
    kinds = {spec.name: (spec.kind, spec.pii) for spec in infer_schema(customers()).columns}
    assert kinds == {"customer_name": ("id", "name"), "email": ("id", "email"), "phone": ("id", "phone_number"),
                     "ssn": ("id", "ssn"), "ip": ("id", "ipv4_address"), "segment": ("discrete", None),
                     "spend": ("continuous", None)}
    products = pd.Series(["Blue Widget", "Red Gadget"] * 30, name="product_name")
    assert detect_pii(products) is None  # a name column, but not a person's
    assert detect_pii(pd.Series(["A-123-44", "B-999-01"] * 30, name="code")) is None


def test_metadata_declares_and_overrides_pii():
    df = customers()
    schema = infer_schema(df, {"columns": {"segment": {"sdtype": "first_name"}, "email": {"sdtype": "categorical"}}})
    assert schema["segment"].pii == "first_name" and schema["email"].kind == "discrete" and schema["email"].pii is None
    metadata = infer_schema(df).to_metadata()
    assert metadata["columns"]["phone"] == {"sdtype": "phone_number", "pii": True}
    assert "primary_key" not in metadata  # personal data is no key


def test_the_locale_and_formats_are_learned_without_real_digits():
    phones = ["+41 44 668 18 00", "+41 79 123 45 67"] * 3  # a format 5 values share
    assert mask(phones[0], "phone_number") == "+41 ## ### ## ##"
    locale, masks, shares = pii_profile("phone_number", phones)
    assert locale == "de_CH" and masks == ["+41 ## ### ## ##"] and shares == [1.0]
    assert pii_profile("email", ["a@b.de", "c@d.de", "e@f.com"])[0] == "de_DE"


def test_no_real_personal_value_reaches_a_synthetic_table(tmp_path):
    df = customers()
    model = AutoregressiveGenerator(epochs=2, random_state=0, verbose=False).fit(df)
    synthetic = model.sample(1_000, seed=1)
    for column in ("email", "phone", "ssn", "ip"):
        assert not set(synthetic[column]) & set(df[column]), column
    assert synthetic["email"].is_unique and synthetic["email"].str.fullmatch(r"[a-z0-9.]+@example\.(com|org|net)").all()
    assert synthetic["phone"].str.fullmatch(r"\+41 \d\d \d{3} \d\d \d\d").all()  # the real numbers' format
    assert synthetic["ssn"].str.fullmatch(r"\d{3}-\d{2}-\d{4}").all()
    first = synthetic["customer_name"].str.split().str[0].str.lower()
    assert (synthetic["email"].str.split(".").str[0] == first.map(lambda s: s.encode("ascii", "ignore").decode())).mean() > 0.9
    assert synthetic["segment"].isin(df["segment"]).all()  # the other columns are modelled as before
    model.save(tmp_path / "m")
    again = AutoregressiveGenerator.load(tmp_path / "m").sample(1_000, seed=1)
    pd.testing.assert_frame_equal(again, synthetic)  # seeded fakes repeat, also after a reload


@pytest.mark.parametrize("model", ["ctgan", "tvae"])
def test_the_other_generators_fake_pii_too(model):
    from tabtwin.generators import model_class

    df = customers(200)
    fitted = model_class(model)(epochs=1, random_state=0, verbose=False).fit(df)
    synthetic = fitted.sample(300, seed=0)
    for column in ("email", "phone", "ssn"):
        assert not set(synthetic[column]) & set(df[column]), column


def test_a_note_beside_one_number_is_no_format():
    phones = ["+41 44 668 18 00"] * 20 + ["+41 79 123 45 67 (ask Maria Keller)"]
    locale, masks, shares = pii_profile("phone_number", phones)
    assert masks == ["+41 ## ### ## ##"] and not any("Maria" in m for m in masks)
    assert pii_profile("phone_number", ["call me", "+41 44 668 18 00"])[1] == []  # too few alike: Faker's own


def test_blank_personal_values_stay_blank_in_their_share():
    df = customers()
    df.loc[df.index % 4 == 0, "email"] = None
    model = AutoregressiveGenerator(epochs=1, random_state=0, verbose=False).fit(df)
    synthetic = model.sample(2_000, seed=3)
    assert abs(synthetic["email"].isna().mean() - 0.25) < 0.05
    assert synthetic["email"].dropna().str.fullmatch(r"[a-z0-9.]+@example\.(com|org|net)").all()
