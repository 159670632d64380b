"""How much of a TVAE training step is matrix multiplication (issue #3): the floor under any implementation.

    .venv/bin/python bench/tvae_floor.py [--data ../shared/data/adult.csv] [--rounds 100]

Builds our TVAE for Adult's 80 % split (seed 0, batch 500, the published sizes), then times, alternating in one
process so both see the same machine: (a) our whole training step (noise, autograd forward and backward, Adam),
and (b) only its 17 matrix products at the same shapes and on the same weights (6 forward, 6 weight gradients,
5 input gradients), which any implementation of this network must compute. The ratio bounds how much faster a
step can get on this CPU; together with the peer's epoch time (bench/generators.py) it bounds the possible
peer/ours ratio. Results go to bench/results/tvae_floor.json and the "TVAE step floor" section of RESULTS.md.
"""

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from bench.generators import machine, replace_section  # noqa: E402
from tabtwin.generators.training import adam  # noqa: E402
from tabtwin.generators.tvae import LOG_SIGMA_MAX, LOG_SIGMA_MIN, TVAE  # noqa: E402
from tabtwin.pipeline.ingest import read_table  # noqa: E402
from tabtwin.pipeline.schema import infer_schema  # noqa: E402

SECTION = "## TVAE step floor (issue #10, autograd)"
BATCH = 500


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "adult.csv"))
    ap.add_argument("--rounds", type=int, default=100, help="alternations of 5 steps of each")
    args = ap.parse_args()

    train, _ = train_test_split(read_table(args.data), test_size=0.2, random_state=0)
    model = TVAE(epochs=0, batch_size=BATCH, random_state=0, verbose=False, device="cpu").fit(train, infer_schema(train))
    data = torch.from_numpy(model.encoder_.transform(train))[:, model.layout_.grouped].contiguous()
    params = [*model.encoder_net_.parameters(), *model.decoder_net_.parameters()]
    optimizer = adam(params, lr=model.lr, weight_decay=model.l2scale)
    for param in params:
        param.grad = torch.zeros_like(param)  # the matmul-only step writes weight gradients here
    model.encoder_net_.train()
    model.decoder_net_.train()

    def full_step(x):
        with torch.enable_grad():
            reconstruction, kl = model._batch_loss(x, torch.randn(BATCH, model.embedding_dim))
            optimizer.zero_grad(set_to_none=False)
            (reconstruction + kl).backward()
        optimizer.step()
        model.decoder_net_.log_sigma.clamp_(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

    encoder, decoder = model.encoder_net_, model.decoder_net_
    linears = [m for m in encoder.net if isinstance(m, torch.nn.Linear)] + [encoder.head]
    linears += [m for m in decoder.net if isinstance(m, torch.nn.Linear)] + [decoder.out]
    head = encoder.head

    def matmuls_only(x):
        inputs, h = [], x
        for linear in linears:
            inputs.append(h)
            h = torch.addmm(linear.bias, h, linear.weight.t())
            if linear is head:
                h = h[:, : model.embedding_dim]  # z has the latent width
        grad = h
        for i in reversed(range(len(linears))):
            linear = linears[i]
            if linear is head:
                grad = torch.cat([grad, grad], dim=1)  # d(mu, logvar)
            torch.mm(grad.t(), inputs[i], out=linear.weight.grad)
            if i:
                grad = grad @ linear.weight

    times = {"full": [], "matmuls": []}
    steps = len(data) // BATCH
    with torch.no_grad():
        for r in range(args.rounds):
            for name, step in (("full", full_step), ("matmuls", matmuls_only)):
                start = time.perf_counter()
                for s in range(5):
                    i = (r * 5 + s) % steps
                    step(data[i * BATCH : (i + 1) * BATCH])
                times[name].append((time.perf_counter() - start) / 5)
    full, floor = (statistics.median(times[k][5:]) for k in ("full", "matmuls"))  # the first rounds warm up
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "threads": torch.get_num_threads(), "full_step_ms": 1e3 * full, "matmuls_ms": 1e3 * floor,
              "matmul_share": floor / full, "steps_per_epoch": steps}
    print(json.dumps(result, indent=2))
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "tvae_floor.json").write_text(json.dumps(result, indent=2))
    lines = [SECTION, "", f"- Date: {result['date']}", f"- Machine: {result['machine']}, torch threads {result['threads']}",
             f"- Protocol: our TVAE on Adult's 80 % split, batch {BATCH}; {args.rounds} alternations of 5 whole training "
             "steps and 5 steps of only the step's 17 matrix products (same shapes, same weights); medians", "",
             "| what | ms per step | s per epoch |", "| --- | ---: | ---: |",
             f"| whole step (noise, autograd forward and backward, Adam) | {1e3 * full:.2f} | {full * steps:.3f} |",
             f"| its matrix products alone | {1e3 * floor:.2f} | {floor * steps:.3f} |", "",
             f"- Matrix products are {100 * floor / full:.0f} % of our step: with the matrix library torch uses here, an "
             f"epoch of this network cannot take less than {floor * steps:.3f} s on this CPU, whatever the rest costs.",
             ""]
    replace_section(BENCH / "RESULTS.md", SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
