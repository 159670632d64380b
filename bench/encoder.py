"""Benchmark tabtwin's TableEncoder against ctgan's DataTransformer (issue #2).

Runs in OUR venv. ctgan (BSL-licensed) is never imported here: its side runs in
bench/.peer-venv through bench/peer_encoder.py, and we only read its JSON line.

    .venv/bin/python bench/encoder.py [--data ../shared/data/adult.csv] [--repeats 3]
        [--peer/--no-peer] [--threads N] [--max-rows N]

Protocol, same for both sides: best of --repeats wall-clock times (perf_counter)
for fit / transform / inverse_transform, a fresh encoder fitted each repeat.
Schema inference is not timed; the peer is given the discrete columns it found.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # run from a checkout even if tabtwin is not installed

from bench.threads import pin_threads  # noqa: E402
PEER_PY = BENCH / ".peer-venv" / "bin" / "python"
PEER_SCRIPT = BENCH / "peer_encoder.py"
RESULTS_MD = BENCH / "RESULTS.md"
RESULTS_JSON = BENCH / "results" / "encoder.json"
SECTION = "## Encoder (issue #2)"
STEPS = ("fit_s", "transform_s", "inverse_s")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "adult.csv"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=None,
                    help="pin OMP/MKL/OpenBLAS and torch threads to N on BOTH sides "
                         "(default: both left at library defaults)")
    ap.add_argument("--max-rows", type=int, default=None)
    return ap.parse_args()


ARGS = parse_args()
pin_threads(ARGS.threads)  # before numpy/torch load; the peer subprocess inherits it

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from tabtwin.pipeline.encoding import TableEncoder  # noqa: E402
from tabtwin.pipeline.ingest import read_table  # noqa: E402
from tabtwin.pipeline.schema import infer_schema  # noqa: E402

if ARGS.threads:
    torch.set_num_threads(ARGS.threads)


def time_ours(df, schema, repeats):
    best = dict.fromkeys(STEPS, float("inf"))
    for _ in range(repeats):
        t0 = time.perf_counter()
        enc = TableEncoder(schema, random_state=0).fit(df)
        t1 = time.perf_counter()
        X = enc.transform(df)
        t2 = time.perf_counter()
        back = enc.inverse_transform(X)
        t3 = time.perf_counter()
        for key, dur in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2)):
            best[key] = min(best[key], dur)
    return {**best, "output_dim": int(enc.output_dim), "dtype": str(X.dtype)}, back


def round_trip(df, back, schema):
    """Per column: continuous -> max |error| / column range; discrete -> exact-match share."""
    out = {}
    for col in schema.columns:
        if col.name not in df.columns:
            continue
        orig, got = df[col.name], back[col.name].reindex(df.index)
        if col.kind == "continuous":
            o = pd.to_numeric(orig, errors="coerce").to_numpy(float)
            g = pd.to_numeric(got, errors="coerce").to_numpy(float)
            both = ~np.isnan(o) & ~np.isnan(g)
            span = np.ptp(o[both]) if both.any() else 0.0
            err = np.abs(g[both] - o[both]).max() if both.any() else 0.0
            out[col.name] = {"kind": col.kind,
                             "max_rel_err": float(err / span) if span else float(err),
                             "nan_mismatch": int((np.isnan(o) != np.isnan(g)).sum())}
        elif col.kind in ("discrete", "boolean"):
            o, g = orig.astype(object), got.astype(object)
            same = (o == g) | (o.isna() & g.isna())
            out[col.name] = {"kind": col.kind, "match_share": float(same.mean())}
    return out


def run_peer(csv, discrete, drop, repeats, max_rows, threads):
    cmd = [str(PEER_PY), str(PEER_SCRIPT), str(csv), "--discrete", *discrete,
           "--repeats", str(repeats)]
    if drop:
        cmd += ["--drop", *drop]
    if max_rows:
        cmd += ["--max-rows", str(max_rows)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"peer failed (exit {proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_info():
    def grep(path, key):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "unknown"

    mem_kb = grep("/proc/meminfo", "MemTotal").split()[0]
    ram = f"{int(mem_kb) / 2**20:.1f} GiB" if mem_kb.isdigit() else "unknown"
    return {"platform": platform.platform(), "cores": os.cpu_count(),
            "cpu": grep("/proc/cpuinfo", "model name"), "ram": ram}


def ours_version():
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        sha = ""
    return version("tabtwin") + (f" ({sha})" if sha else "")


def fmt_ratio(peer, ours):
    return f"{peer / ours:.1f}x" if peer is not None and ours > 0 else "n/a"


def render(res):
    ours, peer = res["ours"], res["peer"]
    v, m = res["versions"], res["machine"]
    threads = (f"pinned to {res['threads']} on both sides (OMP/MKL/OpenBLAS env + torch)"
               if res["threads"] else "library defaults on both sides (nothing pinned)")
    lines = [
        SECTION, "",
        f"- Date (UTC): {res['date_utc']}",
        f"- Machine: {m['platform']}, {m['cores']} cores, {m['cpu']}, {m['ram']} RAM",
        f"- Data: `{res['data']}`, {res['rows']} rows x {res['cols']} cols "
        f"({len(res['discrete'])} discrete/boolean, {len(res['dropped_id_columns'])} id dropped)",
        f"- Versions: tabtwin {v['tabtwin']}, ctgan {v['ctgan']}, rdt {v['rdt']}, "
        f"torch {v['torch']}, scikit-learn {v['sklearn']}, numpy {v['numpy']}",
        f"- Threads: {threads}; torch threads ours={res['torch_threads']['ours']}, "
        f"peer={res['torch_threads']['peer']}",
        f"- Protocol: best of {res['repeats']}, fresh encoder fitted per repeat; "
        "schema inference not timed; ctgan's transform uses its own joblib process "
        "pool (n_jobs=-1) for >= 500 rows, as shipped.",
        "",
        "| step | ours (s) | ctgan (s) | peer/ours |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key in STEPS:
        p = peer[key] if peer else None
        lines.append(f"| {key[:-2]} | {ours[key]:.3f} | "
                     f"{f'{p:.3f}' if p is not None else 'n/a'} | {fmt_ratio(p, ours[key])} |")
    lines.append(f"| output width | {ours['output_dim']} | "
                 f"{peer['output_dim'] if peer else 'n/a'} | |")
    rt = res["round_trip"]
    cont = [c["max_rel_err"] for c in rt.values() if "max_rel_err" in c]
    disc = [c["match_share"] for c in rt.values() if "match_share" in c]
    lines += ["", "Round trip (ours): "
              f"worst continuous max |err|/range = {max(cont) if cont else float('nan'):.3g}, "
              f"worst discrete exact-match share = {min(disc) if disc else float('nan'):.4f}."]
    if not peer:
        lines += ["", f"Peer not run: {res['peer_note']}."]
    return "\n".join(lines) + "\n"


def write_section(text):
    """Replace only our section in RESULTS.md; other sections belong to other benches."""
    old = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == SECTION), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    RESULTS_MD.write_text(new)


def main():
    data = Path(ARGS.data).resolve()
    df = read_table(str(data))
    if ARGS.max_rows:
        df = df.head(ARGS.max_rows)
    schema = infer_schema(df)
    ids = [c.name for c in schema.columns if c.kind == "id"]
    if ids:  # ctgan has no id notion: drop them from both frames and from our schema
        df = df.drop(columns=ids)
        schema = type(schema)(columns=[c for c in schema.columns if c.kind != "id"])
    discrete = [c.name for c in schema.columns if c.kind in ("discrete", "boolean")]

    ours, back = time_ours(df, schema, ARGS.repeats)
    rt = round_trip(df, back, schema)

    peer, note = None, None
    if not ARGS.peer:
        note = "skipped with --no-peer"
    elif not PEER_PY.exists():
        note = "peer venv missing; create it with `bash bench/peer_setup.sh`"
        print(f"{PEER_PY} not found; create it with: bash bench/peer_setup.sh "
              "(running ours only)", file=sys.stderr)
    else:
        peer = run_peer(data, discrete, ids, ARGS.repeats, ARGS.max_rows, ARGS.threads)
        if peer["rows"] != len(df):
            print(f"warning: peer read {peer['rows']} rows, ours {len(df)}", file=sys.stderr)

    res = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": machine_info(),
        "data": data.name, "rows": len(df), "cols": df.shape[1],
        "discrete": discrete, "dropped_id_columns": ids,
        "repeats": ARGS.repeats, "threads": ARGS.threads,
        "torch_threads": {"ours": torch.get_num_threads(),
                          "peer": peer["torch_threads"] if peer else None},
        "versions": {"tabtwin": ours_version(),
                     "ctgan": peer["ctgan_version"] if peer else "n/a",
                     "rdt": peer["rdt_version"] if peer else "n/a",
                     "torch": torch.__version__, "sklearn": version("scikit-learn"),
                     "numpy": np.__version__},
        "ours": ours, "peer": peer, "peer_note": note, "round_trip": rt,
    }
    if peer:
        res["ratio_peer_over_ours"] = {k: peer[k] / ours[k] for k in STEPS if ours[k] > 0}

    text = render(res)
    print(text)
    for name, c in rt.items():
        metric = (f"max |err|/range {c['max_rel_err']:.3g}" if "max_rel_err" in c
                  else f"exact-match {c['match_share']:.4f}")
        print(f"  round trip {name:<20} {c['kind']:<11} {metric}")
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(res, indent=2) + "\n")
    write_section(text)
    print(f"\nwrote {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
