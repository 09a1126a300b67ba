#!/usr/bin/env python3
"""Strong scaling of a distributed run (issue 13): the same kernel regression — infinite-width NNGP and NTK of a
3-hidden-layer relu network on N Fashion-MNIST training images, t = ∞ NTK-GP and NNGP means and variances on M test
images — in one process without MPI, then on P = 1, 2, 4 processes (`ntk run --ranks P`), all in one run on this
machine. Reports per run: the kernels' and predict's wall time, every process's peak RSS, test accuracy, and the
largest relative difference of the predictions from the single-process run; writes the BENCHMARKS.md section
between its markers.

    python3 bench/distributed_scaling.py                 # N = 20,000, M = 1,000 (needs dataset-fashion-mnist)
    N=2000 M=200 RANKS=1,2 python3 bench/distributed_scaling.py --no-write
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NTK = os.path.join(ROOT, ".build/release/ntk")
DATA = os.environ.get("DATA", "/usr/share/datasets/fashion-mnist")
N = int(os.environ.get("N", "20000"))
M = int(os.environ.get("M", "1000"))
RANKS = [int(r) for r in os.environ.get("RANKS", "1,2,4").split(",")]
BEGIN, END = "<!-- distributed-scaling:begin -->", "<!-- distributed-scaling:end -->"

PIPELINE = """schema: 1
params:
  seed: 0
  data: {{format: idx, path: {data}, n_train: {n}, n_test: {m}, scale: true, standardize: global,
         targets: centered_one_hot}}
  model: {{depth: 3, width: 2048, activation: relu, w_std: 1.41421356, b_std: 0.1}}
  kernel: {{test_test: true}}
  predict: {{times: [inf], diag_reg: 1e-4}}
stages:
  load: {{deps: [{data}], params: [seed, data], outs: [artifacts/dataset.npz]}}
  kernels: {{kind: analytic_kernels, deps: [artifacts/dataset.npz], params: [model, kernel],
            outs: [artifacts/kernels.npz]}}
  predict: {{deps: [artifacts/dataset.npz, artifacts/kernels.npz], params: [predict],
            outs: [artifacts/predictions.npz]}}
"""


def run(project, ranks):
    args = [NTK, "run"] + (["--ranks", str(ranks)] if ranks else [])
    t0 = time.time()
    p = subprocess.run(args, cwd=project, text=True, capture_output=True)
    wall = time.time() - t0
    if p.returncode != 0:  # recorded, not fatal: one process may not hold what P processes do
        why = "killed (out of memory?)" if p.returncode < 0 or p.returncode == 137 else p.stderr.strip()[-300:]
        print(f"ntk run {'--ranks ' + str(ranks) if ranks else ''} failed ({p.returncode}): {why}", flush=True)
        return {"ranks": ranks, "failed": f"failed after {wall:.0f} s: {why}"}
    times = {s: float(v) for s, v in re.findall(r"^(\w+): done in ([0-9.]+) s", p.stderr, re.M)}
    peaks = re.search(r"peak memory(?: per process)? (.*)$", p.stderr, re.M).group(1)
    pred = np.load(os.path.join(project, "artifacts/predictions.npz"))
    meta = json.loads(pred["metadata.json"])
    return {"ranks": ranks, "wall": wall, "kernels": times.get("kernels"), "predict": times.get("predict"),
            "peaks": peaks, "summary": meta["summary"],
            "arrays": {k: pred[k] for k in ("ntk_mean_test", "nngp_mean_test", "ntk_var_test", "nngp_var_test")}}


def main():
    if not os.path.exists(NTK):
        sys.exit("build first: swift build -c release")
    cpu = subprocess.run([NTK, "info"], text=True, capture_output=True).stdout
    blas = re.search(r"blas: (.*)", cpu).group(1)
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    results = []
    with tempfile.TemporaryDirectory(prefix="ntk-scaling-") as tmp:
        project = os.path.join(tmp, "p")
        os.makedirs(project)
        with open(os.path.join(project, "pipeline.yaml"), "w") as f:
            f.write(PIPELINE.format(data=DATA, n=N, m=M))
        subprocess.run([NTK, "run", "load"], cwd=project, check=True, capture_output=True)
        for ranks in [None] + RANKS:
            r = run(project, ranks)
            results.append(r)
            if "failed" in r:
                continue
            print(f"{'single process' if ranks is None else str(ranks) + ' process(es)'}: kernels {r['kernels']} s, "
                  f"predict {r['predict']} s, peak RSS {r['peaks']}", flush=True)
    ok = [r for r in results if "failed" not in r]
    base = ok[0]["arrays"]
    rows = []
    for r in results:
        if "failed" in r:
            rows.append(f"| {'1, no MPI' if r['ranks'] is None else r['ranks']} | {r['failed']} | | | | |")
            continue
        diff = max(float(np.abs(r["arrays"][k] - base[k]).max() / np.abs(base[k]).max()) for k in base)
        s = r["summary"]
        rows.append(f"| {'1, no MPI' if r['ranks'] is None else r['ranks']} | {r['kernels']:.1f} s | "
                    f"{r['predict']:.1f} s | {r['peaks']} | {100 * s['ntkgp_infinite_test_accuracy']:.2f} % / "
                    f"{100 * s['nngp_infinite_test_accuracy']:.2f} % | {diff:.1e} |")
    section = "\n".join([
        BEGIN, "## Distributed kernel regression: strong scaling (Open MPI + ScaLAPACK)", "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores ({model}; {blas}), "
        f"one run of `bench/distributed_scaling.py`: NNGP and NTK of a 3 × 2048 relu network (σ_w² = 2, σ_b = 0.1) "
        f"on N = {N:,} Fashion-MNIST training images, t = ∞ NTK-GP and NNGP means and variances on M = {M:,} test "
        f"images (diag_reg 1e-4), in one process without MPI and on P processes of this machine "
        f"(`ntk run --ranks P`; P > cores shares them). Time per stage; peak RSS of each process; the largest "
        f"relative difference of the four prediction arrays from the "
        f"{'single-process' if ok[0]['ranks'] is None else str(ok[0]['ranks']) + '-process'} run.", "",
        "| P | analytic_kernels | predict (t = ∞) | peak RSS per process | test accuracy NTK-GP / NNGP | "
        "vs single process |",
        "|---|---|---|---|---|---|", *rows, "", END])
    print(section)
    if "--no-write" not in sys.argv:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        text = open(path).read()
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        open(path, "w").write(text)


if __name__ == "__main__":
    main()
