"""The flagship's sampler: each head's first layer as lookup tables, its draw by inverse CDF.

Sampling draws the columns one after another, each head once on a batch of rows; on the matmul path
(`ColumnAR.head_logits`) the first layer's matmul over all embedded inputs is most of the time. For one sampling
order (the conditioned columns first, the rest in table order) that layer is a sum of per-code vectors:

    pre_j = b1_j + u_j(order) + sum_{i before j} T_ij[x_i],     T_ij = Z_i W1_ij   (K_i, hidden)

with Z_i the column's embedded codes (value embedding plus position times the ordinal vector,
`ColumnAR.embedded_tables`). `OrderTables` computes the T_ij once per order, as one table per head whose first
row is the head's bias (the conditioned columns' fixed codes folded into it), so pre_j is one embedding bag
(`torch.nn.functional.embedding_bag`, mode "sum") of the codes drawn so far. The output layer's weight has the
ordered-codes shape folded in (`ColumnAR.output_weights`). Each row then draws its code by inverse CDF: the
softmax's running sum, searched (`torch.searchsorted`) for one uniform per row and column in (0, 1] times the
total, so a code of probability 0 is never drawn; all uniforms of a batch come first from the sampling
generator, so rows do not depend on how the batch is cut into chunks. The distribution is the model's, as the
matmul path's is, up to float rounding; the rows a seed gives differ from that path's (it draws with
`torch.multinomial`).

The tables hold hidden x sum over drawn heads of (1 + the cardinalities drawn before it) floats (Adult at hidden
256: 3.6 MB). Past TABLE_BYTES, or past it together with the orders cached already, the sampler is not built
and the flagship samples on the matmul path (`ColumnAR.head_logits`). Tables are cached on the model per set of
conditions (`TableCache`) and never saved.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tabtwin.generators.base import check_finite

# Bytes of the tables one order may hold, and all cached orders together.
TABLE_BYTES = 2**28
FLOAT_BYTES = 4
# Rows a head runs on at once on a CPU: a chunk's hidden states (rows x hidden floats) then stay in cache (of
# 512, 1,024 and 2,048 rows, 1,024 drew Adult fastest on one core). A GPU takes the whole batch.
CPU_CHUNK = 1024
# Output widths are padded to a multiple of this with logits of -inf (probability 0, never drawn): MKL's matmul
# with a narrow or odd output ran up to 4x slower per column than with a multiple of 16.
PAD = 16


class OrderTables:
    """Draws codes from a `ColumnAR` `net` for one order: the columns `fixed` ({column index: code}) first, at
    their codes, then `drawn`, each from its head given every column before it. Build it with `OrderTables.build`
    (None past TABLE_BYTES)."""

    def __init__(self, net, fixed: dict[int, int], drawn: list[int], mask: torch.Tensor):
        self.net, self.fixed, self.drawn = net, dict(fixed), list(drawn)
        embedded = net.embedded_tables()
        spans = net.input_spans
        self.tables, self.out = [], []
        self.offsets = [1]  # row of drawn column k's code 0 in the tables of later heads; row 0 is the bias
        for k, j in enumerate(self.drawn):
            weight = net.w1[:, j]  # (n_in, H)
            bias = net.b1[j] + mask[j] @ net.visible[j]
            for i, code in self.fixed.items():
                bias = bias + embedded[i][code] @ weight[slice(*spans[i])]
            parts = [embedded[i] @ weight[slice(*spans[i])] for i in self.drawn[:k]]
            self.tables.append(torch.cat([bias[None], *parts]).contiguous())
            self.offsets.append(self.offsets[-1] + net.cardinalities[j])
        weights = net.output_weights()
        for j in self.drawn:
            width = -(-net.cardinalities[j] // PAD) * PAD
            weight = F.pad(weights[j], (0, width - net.cardinalities[j]))
            bias = F.pad(net.out[j].bias, (0, width - net.cardinalities[j]), value=-torch.inf)
            self.out.append((weight.contiguous(), bias))

    @staticmethod
    def size(net, drawn: list[int]) -> int:
        """Bytes the tables of an order drawing the columns `drawn` (in that order) hold."""
        rows, before = 0, 0
        for j in drawn:
            rows += 1 + before
            before += net.cardinalities[j]
        return FLOAT_BYTES * net.hidden * rows

    @classmethod
    def build(cls, net, fixed: dict[int, int], drawn: list[int], mask: torch.Tensor,
              limit: int) -> OrderTables | None:
        """The tables for this order, or None when they would hold more than `limit` bytes."""
        if cls.size(net, drawn) > limit:
            return None
        with torch.no_grad():
            return cls(net, fixed, drawn, mask)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tables)

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator, model_name: str) -> torch.Tensor:
        """(n, D) int64 codes: the fixed columns at their codes, the drawn ones sampled. Raises TabtwinError
        (`base.check_finite`) when the weights give NaN or infinite probabilities."""
        device = self.net.b1.device
        codes = torch.empty(n, len(self.net.cardinalities), dtype=torch.long, device=device)
        for i, code in self.fixed.items():
            codes[:, i] = code
        if not self.drawn or not n:
            return codes
        # 1 - U[0, 1) lies in (0, 1]: searched on the left, it never lands on a code of probability 0.
        uniform = 1.0 - torch.rand(n, len(self.drawn), generator=generator, device=device)
        totals = torch.empty(n, len(self.drawn), device=device)  # each softmax's sum: NaN where the weights give NaN
        # The first drawn head sees no drawn column: its distribution is the same for every row.
        first = self._cdf(self.tables[0][:1], 0)[0]
        last = [self.net.cardinalities[j] - 1 for j in self.drawn]  # NaN sums search past the codes: kept in range
        codes[:, self.drawn[0]] = torch.searchsorted(first, uniform[:, 0].contiguous() * first[-1]).clamp_max_(last[0])
        totals[:, 0] = first[-1]
        chunk = CPU_CHUNK if device.type == "cpu" else n
        for begin in range(0, n if len(self.drawn) > 1 else 0, chunk):
            rows = slice(begin, min(begin + chunk, n))
            index = torch.zeros(rows.stop - begin, len(self.drawn), dtype=torch.long, device=device)
            index[:, 1] = codes[rows, self.drawn[0]] + self.offsets[0]
            for k in range(1, len(self.drawn)):
                cdf = self._cdf(F.embedding_bag(index[:, : k + 1], self.tables[k], mode="sum"), k)
                total = cdf[:, -1:]
                code = torch.searchsorted(cdf, uniform[rows, k, None] * total)[:, 0].clamp_max_(last[k])
                codes[rows, self.drawn[k]], totals[rows, k] = code, total[:, 0]
                if k + 1 < len(self.drawn):
                    index[:, k + 1] = code + self.offsets[k]
        check_finite(totals, model_name)
        return codes

    def _cdf(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        """(rows, H) first-layer pre-activations of drawn head k -> (rows, padded K) running sums of its
        probabilities."""
        x = F.gelu(pre)
        for block in self.net.blocks:
            x = block.one(x, self.drawn[k])
        weight, bias = self.out[k]
        return torch.softmax(torch.addmm(bias, x, weight), dim=1).cumsum_(dim=1)


class TableCache:
    """The `OrderTables` of a fitted net, one per set of conditions, holding at most TABLE_BYTES together (the
    oldest dropped first); None is cached for an order whose tables would not fit."""

    def __init__(self, limit: int | None = None):
        self.limit, self.orders = TABLE_BYTES if limit is None else limit, {}

    def get(self, net, fixed: dict[int, int], drawn: list[int], mask: torch.Tensor) -> OrderTables | None:
        key = tuple(sorted(fixed.items()))
        if key not in self.orders:
            tables = OrderTables.build(net, fixed, drawn, mask, self.limit)
            while tables is not None and self.orders and self.held() + tables.nbytes > self.limit:
                self.orders.pop(next(iter(self.orders)))
            self.orders[key] = tables
        return self.orders[key]

    def held(self) -> int:
        return sum(t.nbytes for t in self.orders.values() if t is not None)
