"""The flagship's network (`ColumnAR`): one head per column over the embedded codes of the columns before it.

The model and its sources are described in `generators.autoregressive`, which trains it and samples from it.
Shapes: codes (B, D) int64, D columns of cardinalities K_j; embedded inputs (B, n_in), n_in = sum of the
columns' embedding widths e_i; hidden states (B, H) per head.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def embedding_width(cardinality: int) -> int:
    """Embedding size of a column with this many codes: grows like sqrt, between 4 and 24."""
    return int(min(24, max(4, round(1.6 * cardinality**0.5))))


class ColumnAR(nn.Module):
    """The per-column heads over embedded codes. Shapes: codes (B, D) int64 -> list of D logits (B, K_j)."""

    def __init__(self, cardinalities: list[int], hidden: int, depth: int, dropout: float):
        super().__init__()
        self.cardinalities = list(cardinalities)
        d = len(cardinalities)
        widths = [embedding_width(k) for k in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(k, w) for k, w in zip(cardinalities, widths))
        # Ordered codes (numbers, bins) also enter through their position in the column's distribution, in
        # [-1, 1] (0 for unordered codes), times a learned vector: neighbouring values start out alike instead of
        # each code learning its embedding from its own rows alone.
        self.register_buffer("positions", torch.zeros(sum(cardinalities)))
        # Index buffers follow from the cardinalities: not saved, so a model file cannot point them outside the tables.
        self.register_buffer("offsets", torch.tensor([0] + list(cardinalities[:-1])).cumsum(0), persistent=False)
        self.ordinal = nn.ParameterList(nn.Parameter(torch.zeros(w)) for w in widths)
        column = torch.repeat_interleave(torch.arange(d), torch.tensor(widths), output_size=sum(widths))
        self.register_buffer("input_column", column, persistent=False)
        slot = torch.cat([torch.arange(w) for w in widths])
        self.register_buffer("input_gather", column * max(widths) + slot, persistent=False)  # in the padded tables
        ends = np.cumsum(widths).tolist()
        self.input_spans = [(end - w, end) for end, w in zip(ends, widths)]  # column i's inputs: [start, end)
        self.hidden = hidden
        n_in = sum(widths)
        self.w1 = nn.Parameter(torch.randn(n_in, d, hidden) / math.sqrt(n_in / 2))
        self.b1 = nn.Parameter(torch.zeros(d, hidden))
        self.visible = nn.Parameter(torch.zeros(d, d, hidden))  # u: head j sees column i
        self.blocks = nn.ModuleList(_Block(d, hidden, dropout) for _ in range(depth - 1))
        self.out = nn.ModuleList(nn.Linear(hidden, k) for k in cardinalities)
        # ... and leave through it: logits also get (h . a_j) pos + (h . c_j) pos^2, a discretised Gaussian over
        # the column's ordered codes whose centre and spread follow h, so a shift with the context is one
        # direction to learn instead of one logit per value.
        self.shape = nn.Parameter(torch.zeros(d, hidden, 2))
        self.dropout = nn.Dropout(dropout)

    def embedded_tables(self) -> list[torch.Tensor]:
        """Per column i, (K_i, e_i): each code's value embedding plus its position times the column's ordinal
        vector, the vector z_i that code enters the heads as."""
        return [
            e.weight + self.positions[o : o + k, None] * p
            for e, p, o, k in zip(self.embeddings, self.ordinal, self.offsets.tolist(), self.cardinalities)
        ]

    def embed_codes(self, codes: torch.Tensor, permutation: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) codes -> (B, n_in) concatenated value embeddings (inputs permuted by `permutation`, when given),
        gathered at once from the columns' tables padded to the widest."""
        tables = self.embedded_tables()
        widest = max(t.shape[1] for t in tables)
        padded = torch.cat([F.pad(t, (0, widest - t.shape[1])) for t in tables])
        gather = self.input_gather if permutation is None else self.input_gather[permutation]
        return F.embedding(codes + self.offsets, padded).view(-1, len(tables) * widest)[:, gather]

    def set_positions(self, representatives: list[np.ndarray], code_counts: torch.Tensor) -> None:
        """Each ordered code's mid-CDF position among the training codes, scaled to [-1, 1], from `code_counts`:
        (sum of cardinalities,) how many rows hold each code, column after column."""
        parts = []
        for values, counts in zip(representatives, code_counts.double().split(self.cardinalities)):
            counts = counts.cpu().numpy()
            position = np.zeros(len(values))
            ordered = np.flatnonzero(~np.isnan(values))
            if len(ordered) > 1 and counts[ordered].sum() > 0:
                ranked = ordered[np.argsort(values[ordered], kind="stable")]
                cdf = np.cumsum(counts[ranked]) - counts[ranked] / 2
                position[ranked] = 2 * cdf / counts[ranked].sum() - 1
            parts.append(torch.from_numpy(position).float())
        self.positions.copy_(torch.cat(parts).to(self.positions.device))

    def hidden_states(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, D) codes, mask (D, D) float: mask[j, i] = 1 when head j sees column i -> (B, D, H), every head in
        one matmul whose inputs a head may not see are 0 (any mask: `embed` lets each head see every other
        column)."""
        d, h = self.b1.shape
        weight = self.w1 * mask.T[self.input_column][:, :, None]  # (n_in, D, H)
        pre = (self.embed_codes(codes) @ weight.view(len(weight), d * h)).view(-1, d, h)
        x = self.dropout(F.gelu(pre + self.b1 + torch.einsum("ji,jih->jh", mask, self.visible)))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, codes: torch.Tensor, order: list[int]) -> list[torch.Tensor]:
        """(B, D) codes and a column order -> D logits (B, K_j) in column order, head j's from the columns before
        j in `order`. With the embedded inputs permuted into the order, the inputs head j sees are a prefix: each
        head multiplies only those (half the arithmetic of the masked matmul, on average), and the heads run one
        by one on (B, H) states, so no backward pass scatters into a (B, D, H) tensor."""
        order = [int(j) for j in order]
        mask = order_mask(order, len(order), codes.device)
        spans = self.input_spans
        permutation = torch.tensor([k for j in order for k in range(*spans[j])], device=codes.device)
        z = self.embed_codes(codes, permutation)
        weights = self.w1[permutation].unbind(1)  # per head (n_in, H), rows in the order
        biases = (self.b1 + torch.einsum("ji,jih->jh", mask, self.visible)).unbind(0)
        blocks = [block.heads() for block in self.blocks]
        logits, seen = [None] * len(order), 0
        for j, out, weight in zip(order, (self.out[j] for j in order), self.output_weights(order)):
            if seen:
                pre = torch.addmm(biases[j], z[:, :seen], weights[j][:seen])
            else:  # the first head sees no column: without dropout its state is the same for every row
                pre = biases[j].expand(len(codes) if self.training and self.dropout.p else 1, -1)
            x = self.dropout(F.gelu(pre))
            for block, heads in zip(self.blocks, blocks):
                x = block.step(x, *heads[j])
            logits[j] = torch.addmm(out.bias, x, weight).expand(len(codes), -1)
            seen += spans[j][1] - spans[j][0]
        return logits

    def output_weights(self, heads: list[int] | None = None) -> list[torch.Tensor]:
        """Per head j of `heads` (default: all), (H, K_j): the output weight with the ordered-codes shape folded
        in, out_j.weight^T + a_j pos_j + c_j pos_j^2, so head j's logits are h W + out_j.bias (`logits`, in one
        matmul)."""
        positions = self.positions.split(self.cardinalities)
        shapes = self.shape.unbind(0)
        return [
            torch.addcmul(torch.addcmul(self.out[j].weight.T, shapes[j][:, :1], positions[j]), shapes[j][:, 1:],
                          positions[j].square())
            for j in (range(len(self.out)) if heads is None else heads)
        ]

    def logits(self, h: torch.Tensor, j: int) -> torch.Tensor:
        """(B, H) hidden state of head j -> (B, K_j) logits: free logits plus the ordered-codes shape."""
        position = self.positions[self.offsets[j] : self.offsets[j] + self.cardinalities[j]]
        a, c = (h @ self.shape[j]).unbind(1)
        return self.out[j](h) + a[:, None] * position + c[:, None] * position.square()

    def head_logits(self, codes: torch.Tensor, mask: torch.Tensor, j: int) -> torch.Tensor:
        """Logits of column j alone (sampling): (B, K_j). Runs only head j's weights."""
        z = self.embed_codes(codes)
        pre = z @ (self.w1[:, j] * mask[j][self.input_column][:, None]) + self.b1[j] + mask[j] @ self.visible[j]
        x = F.gelu(pre)
        for block in self.blocks:
            x = block.one(x, j)
        return self.logits(x, j)


class _Block(nn.Module):
    """Per-head residual MLP block: x + GELU(LN(x) W_j + b_j), batched over heads. (B, D, H) -> (B, D, H)."""

    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.weight = nn.Parameter(torch.randn(d, hidden, hidden) / math.sqrt(hidden / 2))
        self.bias = nn.Parameter(torch.zeros(d, hidden))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("bdh,dhk->bdk", self.norm(x), self.weight) + self.bias
        return x + self.dropout(F.gelu(y))

    def one(self, x: torch.Tensor, j: int) -> torch.Tensor:
        """Head j alone: (B, H) -> (B, H)."""
        return self.step(x, self.weight[j], self.bias[j])

    def heads(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per head, its (weight, bias), split at once (a backward pass then stacks their gradients once)."""
        return list(zip(self.weight.unbind(0), self.bias.unbind(0)))

    def step(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(F.gelu(torch.addmm(bias, self.norm(x), weight)))


def order_mask(order: list[int] | torch.Tensor, d: int, device=None) -> torch.Tensor:
    """(D, D) float mask for a column order: mask[j, i] = 1 when column i comes before column j."""
    rank = torch.empty(d, dtype=torch.long)
    rank[torch.as_tensor(order)] = torch.arange(d)
    return (rank[None, :] < rank[:, None]).float().to(device)
