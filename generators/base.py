"""The base every generator shares: fit on a table, sample rows (optionally under conditions), save and load.

Generators follow scikit-learn's estimator contract (`sklearn.base.BaseEstimator`): hyper-parameters are
`__init__` arguments stored as given (`_store_params(locals())`), so `get_params` / `set_params` / `clone` work;
each has one rule in the class's `_parameter_constraints` (as scikit-learn's estimators declare theirs; rules from
`generators.params`), which `_check_params` checks at the start of `fit` and when `load` reads config.json (a
TabtwinError naming the parameter); learned state ends in `_` (`encoder_`, `history_`, `best_epoch_`,
`stop_reason_`, the networks).

`fit` is one skeleton for every model, each step a hook a model fills:

1. `_begin_fit`: refuse an empty table or a bad parameter, pick the device, seed torch, numpy and random;
2. `_encode(df, schema)`: fit `encoder_` and return the encoded training rows, a tensor on `device_`;
3. `_build()`: create the torch modules (`load` runs it too, on the meta device first: `_meta_weights`);
4. `_data_summary(data)` and `_init_from_summary(summary)`: optional state read from every encoded row before
   training, through a sum over the rows (so the ranks of a data-parallel fit add theirs up);
5. `_split_validation`: hold out VALIDATION_FRACTION of the rows (at most VALIDATION_ROWS) when early stopping
   is on;
6. `_training(train, generator)`: the `training.Training` to run (optimiser groups, batches, one step), which
   `training.train` runs with early stopping on `_validation_metric`, the time budget `max_seconds` (where the
   model has that parameter), the weights average, the subnormal flush and progress;
7. `_after_training(train)`: optional learned state from the weights kept.

`fit_codes(encoder, codes)` runs steps 3-7 on a code matrix already encoded (a partitioned table streamed into
codes, or one rank's rows of a data-parallel fit: `generators.sharded`), for a model whose `codes_encoder` says
which encoder; the flagship's.

`sample` resolves conditions once for every model (`_plan_conditions`, `generators.conditions`), draws
`_sample_batch(n, plan, generator)` in batches of `memory.sample_rows` and decodes them with the encoder.
`_modules()` names the modules whose state_dicts make up weights.pt; model files are `generators.persistence`'s.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator

from tabtwin.generators.conditions import ConditionPlan, plan_conditions, write_values
from tabtwin.generators.memory import sample_rows, sampling_width
from tabtwin.generators.params import check
from tabtwin.generators.sharded import EPOCH_STEPS, Rows, data_parallel, rank_seed, rows_of, weights_digest
from tabtwin.generators.training import Budget, OneProcess, Training, Validation, permutation, progress_bar, train
from tabtwin.pipeline.categories import MAX_CATEGORIES
from tabtwin.pipeline.device import resolve_device
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.rules import Int, Rule, check_fields
from tabtwin.pipeline.schema import Schema, infer_schema
from tabtwin.pipeline.validation import MAX_CODES

# The model-file format `generators.persistence` writes; a file of any other format is refused in one line.
FORMAT_VERSION = 8
VALIDATION_FRACTION = 0.1  # rows held out for early stopping
MIN_VALIDATION_ROWS = 10  # held out at least; a table of fewer than twice this many rows is not split
VALIDATION_ROWS = 100_000  # held out at most: a validation pass stays seconds long at any table size
# Settings set on an instance before `fit` rather than passed to `__init__` (CTGAN's and TVAE's max_categories),
# checked with the parameters.
SETTING_CONSTRAINTS = {"max_categories": Int(1, MAX_CODES)}
ONLY_IDS = "the table has only id columns; there is nothing to model"


class ModelError(TabtwinError):
    """A model directory is missing, corrupt or does not match this version."""


def seed_everything(seed: int | None) -> None:
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class SyntheticGenerator(BaseEstimator):
    """Base class. Subclasses define `model_name`, `__init__` params (stored as given), `_parameter_constraints`,
    and the hooks (see the module docstring).

    `get_params` / `set_params` come from scikit-learn's BaseEstimator, which reads the parameter names from
    the subclass's `__init__` signature; `save` writes them to config.json and `load` passes them back.
    """

    model_name: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[SyntheticGenerator]]] = {}
    # One rule per `__init__` parameter (`generators.params`): exactly those, checked at class creation.
    _parameter_constraints: ClassVar[dict[str, Rule]] = {}
    # Optional, set on an instance before `fit` to follow training: called once per epoch as
    # `progress_callback(epoch, epochs, record)`, epoch counting from 1, `epochs` the cap, `record` the epoch's
    # entry of `history_`. Not a hyper-parameter: it is not saved, and `clone` drops it.
    progress_callback: ClassVar = None
    # Whether `fit_codes` trains the model on `codes_encoder`'s codes (partitioned and data-parallel fits).
    fits_codes: ClassVar[bool] = False
    # Codes per discrete column of the one-hot encoding (CTGAN, TVAE): past it the rarest values share one
    # (`pipeline.categories`). Not a hyper-parameter (set it on an instance before `fit`): the fitted encoder
    # saves its own. The flagship takes it as a parameter of its encoder.
    max_categories: ClassVar[int] = MAX_CATEGORIES
    sampling_modules: ClassVar[tuple[str, ...]] = ()  # names in `_modules()` that sampling runs (memory.sampling_width)
    # The early-stopping metric: its name in `history_`, and how much lower than the best it must be to count.
    validation_name: ClassVar[str] = "validation_distance"
    validation_tolerance: ClassVar[float] = 0.0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.model_name:
            declared, params = sorted(cls._parameter_constraints), sorted(cls._get_param_names())
            if declared != params:
                raise TypeError(f"{cls.__name__}._parameter_constraints must name exactly its __init__ parameters "
                                f"{params}, not {declared}")
            SyntheticGenerator.registry[cls.model_name] = cls

    def _store_params(self, arguments: dict) -> None:
        """Store `__init__`'s arguments (its `locals()`) as attributes of the same names, unchanged (scikit-learn's
        contract: no validation here, so `set_params` and `clone` see exactly what the caller passed)."""
        for name in self._get_param_names():
            setattr(self, name, arguments[name])

    def _check_params(self) -> None:
        """Refuse (TabtwinError naming it) any parameter or setting that breaks its rule; a model adds checks of
        several parameters together by overriding this and calling super. Runs at the start of `fit` and in
        `load`, never in `__init__`."""
        for name, rule in {**SETTING_CONSTRAINTS, **self._parameter_constraints}.items():
            check(name, getattr(self, name), rule)

    # ------------------------------------------------------------------------------------------ fit

    def fit(self, df: pd.DataFrame, schema: Schema | None = None) -> SyntheticGenerator:
        """Fit the encoder and train the networks on `df` (rows, columns) with `schema` (inferred when None);
        returns self. Raises TabtwinError for an empty table, a table of only id columns, an invalid parameter, or
        a training that would not fit in memory."""
        start = time.perf_counter()
        schema = self._begin_fit(df, schema)
        data = self._encode(df, schema)
        self._build()
        self._train(data, Budget(getattr(self, "max_seconds", None), start), OneProcess())
        return self

    def to(self, device: str | torch.device) -> SyntheticGenerator:
        """The fitted networks moved to `device` (a model leaving a GPU worker for a process without one); returns
        self."""
        self._check_fitted()
        self.device_ = torch.device(device)
        for module in self._modules().values():
            module.to(self.device_)
        return self

    def weights_sha256(self) -> str:
        """SHA-256 of the fitted networks' weights (`sharded.weights_digest`): equal for equal weights."""
        self._check_fitted()
        return weights_digest(self._modules())

    def codes_encoder(self, schema: Schema):
        """The encoder, not yet fitted, whose code matrix `fit_codes` trains on (a `BinnedEncoder` with this
        model's settings), for a model that `fits_codes`."""
        raise NotImplementedError

    def fit_codes(self, encoder, codes, ranks: OneProcess | None = None, start: float | None = None,
                  clock=None) -> SyntheticGenerator:
        """Train on `codes`, the (rows, columns) code matrix (numpy or torch, any integer type: int16 keeps 2
        bytes a value) of `encoder`, fitted (`codes_encoder`, then e.g. `pipeline.streaming.fit_on_parts`); returns
        self. Alone, the same model `fit` gives on the table those codes encode, except that an epoch is at most
        `sharded.EPOCH_STEPS` steps. As one of the `ranks`
        (`sharded.TorchRanks`; `codes` this rank's rows) it is one process of a data-parallel fit: every rank
        trains on as many rows, draws its own split, batches and orders (`sharded.rank_seed`), and takes the
        same steps, its modules in DistributedDataParallel; the validation metric and the time budget are agreed
        by all. `start` and `clock` time the budget (default: `time.perf_counter` from now). Raises TabtwinError
        for an encoder without modelled columns, or a budget spent before the first step."""
        ranks = ranks or OneProcess()
        self._check_params()
        if not encoder.columns:
            raise TabtwinError(ONLY_IDS)
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        self.encoder_ = encoder
        codes = torch.as_tensor(codes).to(self.device_)
        self._build()
        budget = Budget(getattr(self, "max_seconds", None), time.perf_counter() if start is None else start,
                        ranks, clock)
        if budget.spent():  # else one step's model would be saved and sampled as if trained
            raise TabtwinError(f"the time budget of {budget.max_seconds:g} s was spent before training began (reading "
                               f"and encoding the table took {budget.elapsed():.0f} s); raise --max-seconds")
        self._train(Rows(codes), budget, ranks)
        return self

    def _train(self, data, budget: Budget, ranks: OneProcess) -> None:
        """Steps 4-7 of the module docstring on the encoded rows `data` (a tensor, or `sharded.Rows`), the modules
        built."""
        summary = self._data_summary(data.codes if isinstance(data, Rows) else data)
        if summary is not None:
            self._init_from_summary(ranks.sum(summary))
        generator = self._training_generator()
        if ranks.world > 1:
            seed = rank_seed(torch.initial_seed(), ranks.rank, ranks.world)
            torch.manual_seed(seed)
            if generator is not None:
                generator.manual_seed(seed)
        data, validation_rows = self._split_validation(data, generator, ranks)
        self.history_ = []
        validation = None
        if validation_rows is not None:
            validation_rows = rows_of(validation_rows)
            measure = lambda budget: self._validation_metric(validation_rows, budget)  # noqa: E731
            validation = Validation(self.validation_name, measure, self.early_stopping, self.validation_tolerance)
        run = self._training(data, generator)
        if isinstance(data, Rows):
            run = self._from_codes(run, ranks)
        self.best_epoch_, self.stop_reason_ = train(run, self._modules(), self._progress(), self.history_, validation,
                                                    budget, ranks)
        self._after_training(data)

    def _from_codes(self, run: Training, ranks: OneProcess) -> Training:
        """`run` on `sharded.Rows`: each batch gathered, an epoch cut at EPOCH_STEPS (the warm-up too), the
        modules in DistributedDataParallel across several ranks."""
        batches = run.batches
        wrap = run.wrap
        if ranks.world > 1:
            if wrap is not None:
                raise TabtwinError(f"the {self.model_name} model's training wraps its modules (DP-SGD) and cannot "
                                   "also be data-parallel; fit it in one process")
            wrap = partial(data_parallel, self, list(self._modules().values()), self.device_)
        return replace(run, batches=lambda: map(rows_of, islice(batches(), EPOCH_STEPS)), wrap=wrap,
                       warmup_steps=min(run.warmup_steps, EPOCH_STEPS))

    def _begin_fit(self, df: pd.DataFrame, schema: Schema | None) -> Schema:
        """What every fit does first: refuse an empty table or bad parameters, pick the device, seed, and return
        `schema` (inferred from `df` when None)."""
        if not isinstance(df, pd.DataFrame) or len(df) == 0:
            raise TabtwinError("fit needs a non-empty table (a pandas DataFrame)")
        self._check_params()
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        return schema or infer_schema(df)

    def _split_validation(self, data: torch.Tensor, generator: torch.Generator | None, ranks: OneProcess):
        """(training rows, held-out rows or None): VALIDATION_FRACTION of the rows, at least MIN_VALIDATION_ROWS and
        at most VALIDATION_ROWS in all, in the order of `training.permutation`, when early stopping is on (the
        split stays on the device). Every rank holds out and trains on as many rows, those of the fewest."""
        rows = ranks.min(len(data))
        if not self.early_stopping or rows < 2 * MIN_VALIDATION_ROWS:
            return (data if rows == len(data) else data[:rows]), None
        order = permutation(len(data), data.device, generator)
        cut = min(max(int(rows * VALIDATION_FRACTION), MIN_VALIDATION_ROWS), VALIDATION_ROWS // ranks.world)
        return data[order[cut:rows]], data[order[:cut]]

    def _progress(self):
        return progress_bar(self.epochs, f"{self.model_name} epochs", self.verbose, self.progress_callback,
                            self.history_)

    # ------------------------------------------------------------------------------------------ sample

    def sample(self, n: int, conditions: dict | None = None, seed: int | None = None,
               id_offset: int = 0) -> pd.DataFrame:
        """Exactly `n` rows (a DataFrame with the source columns and dtypes); every row satisfies `conditions`
        ({column: value} on discrete and boolean columns, `generators.conditions`). Regenerated ids are numbered
        from `id_offset` (a part of a partitioned sample starts where the parts before it end). Raises
        TabtwinError for a bad `n` or `id_offset`, an unknown column or value, or a model whose weights produce
        NaN."""
        self._check_fitted()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise TabtwinError(f"number of rows must be a non-negative integer, got {n!r}")
        if isinstance(id_offset, bool) or not isinstance(id_offset, (int, np.integer)) or id_offset < 0:
            raise TabtwinError(f"id_offset must be a non-negative integer, got {id_offset!r}")
        plan = self._plan_conditions(conditions)
        seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        frames, batch = [], sample_rows(self.device_, sampling_width(self))
        for start in range(0, max(n, 1), batch):
            with torch.no_grad():
                rows = self._sample_batch(min(batch, n - start), plan, generator)
            frame = self.encoder_.inverse_transform(rows, id_offset=id_offset + start, seed=seed + start)
            frames.append(write_values(frame, plan.shared if plan else {}, self.encoder_.forms_))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _plan_conditions(self, conditions: dict | None) -> ConditionPlan | None:
        return plan_conditions(self.encoder_, conditions)

    # ------------------------------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write config.json, encoder.json and weights.pt into `path`, replacing it only once all are written;
        config.json records every file's SHA-256 (`generators.persistence`). An existing `path` is replaced only
        when it is a model folder (nothing in it but `persistence.MODEL_FILES`) or empty, unless `overwrite`;
        otherwise a TabtwinError before anything is written (`pipeline.outputs`)."""
        from tabtwin.generators.persistence import save_model

        self._check_fitted()
        return save_model(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> SyntheticGenerator:
        """The model saved in folder `path`, its networks on `device`. Every file's checksum and every value are
        checked before use, and the networks' shapes before any is allocated (`generators.persistence`); a
        ModelError (one line naming the file and the field) refuses a folder that is missing, damaged, edited or
        from another format."""
        from tabtwin.generators.persistence import load_model_dir

        return load_model_dir(cls, path, device)

    def _meta_weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """The state_dicts the networks would have, built on torch's meta device: names, shapes and dtypes of every
        tensor, with no memory allocated whatever the sizes (checked against weights.pt, counted before training)."""
        device, self.device_ = self.device_, torch.device("meta")
        try:
            with torch.device("meta"):
                self._build()
            return {name: module.state_dict() for name, module in self._modules().items()}
        finally:
            self.device_ = device

    # ------------------------------------------------------------------------------------------ hooks

    def _encode(self, df: pd.DataFrame, schema: Schema) -> torch.Tensor:
        """Fit `encoder_` on `df` and return its encoded rows on `device_`."""
        raise NotImplementedError

    @classmethod
    def _load_encoder(cls, path: Path):
        """Read the fitted encoder saved beside the weights."""
        raise NotImplementedError

    def _prepare_loaded(self) -> None:
        """What the networks of a loaded model are built from, derived from its encoder (default: nothing)."""

    def _build(self) -> None:
        """Create the modules on `device_` from the parameters and the fitted encoder."""
        raise NotImplementedError

    def _data_summary(self, data: torch.Tensor) -> torch.Tensor | None:
        """What fit-time state is read from, summed over the encoded rows `data` (a tensor that adds up across
        the ranks of a data-parallel fit, e.g. counts), after `_build` and before the split; None (the default):
        nothing."""
        return None

    def _init_from_summary(self, summary: torch.Tensor) -> None:
        """Fit-time state from `_data_summary` over every row of the table."""

    def _training_generator(self) -> torch.Generator | None:
        """The generator the validation split and the model's training draws come from (None: the global RNG)."""
        return None

    def _training(self, data: torch.Tensor, generator: torch.Generator | None) -> Training:
        """What `training.train` runs on the training rows `data`."""
        raise NotImplementedError

    def _validation_metric(self, rows: torch.Tensor, budget: Budget) -> float | None:
        """The early-stopping metric on held-out `rows` (lower is better), or None when `budget` ran out during
        the pass."""
        raise NotImplementedError

    def _after_training(self, data: torch.Tensor) -> None:
        """Learned state computed from the final weights (the best epoch's under early stopping), on the
        training rows `data`. Default: nothing."""

    def _sample_batch(self, n: int, plan: ConditionPlan | None, generator: torch.Generator) -> np.ndarray:
        """n encoded rows (as `encoder_.inverse_transform` reads them) drawn under `plan`."""
        raise NotImplementedError

    def _modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        """JSON-able learned state beyond the weights (e.g. category frequencies)."""
        return {}

    def _load_extra_state(self, state: dict) -> None:
        """Restore `_extra_state()` from config.json, refusing (TabtwinError naming the field) anything else."""
        check_fields(state, {}, "state")

    def _check_fitted(self) -> None:
        if not hasattr(self, "encoder_"):
            raise TabtwinError(f"the {self.model_name} model is not fitted yet; call fit(df) first")


def check_finite(output: torch.Tensor, model_name: str) -> torch.Tensor:
    """`output` (a network's sampled rows or probabilities), or a one-line TabtwinError when any value is NaN or
    infinite: weights that load (finite, the right shapes) can still overflow float32, and a NaN would otherwise
    end in a traceback (torch.multinomial) or decode to silent nulls."""
    if not bool(torch.isfinite(output).all()):
        raise TabtwinError(f"the {model_name} model produced NaN or infinite values while sampling; its weights are "
                           "damaged or were edited: refit the model")
    return output
