#!/usr/bin/env python3
"""Neural-tangents 0.6.5 reference values for the analytic kernels and predictors (run once; outputs committed).

Needs the peers harness (../shared/peers: setup.sh makes a venv with neural-tangents 0.6.5, jax 0.4.25):
    PEERS=/path/to/peers python3 make_nt_fixtures.py
    PEERS=/path/to/peers ONLY=diag_reg python3 make_nt_fixtures.py     # only the outputs named so
Writes nt/*.npz: each holds the inputs (x1, x2 / x_train, x_test, y_train, fx_*_0, kernels) and NT's outputs,
as produced by `reference.py analytic|predict` in float64.

Inputs are float32-representable (the harness stores inputs as float32), drawn from a fixed numpy seed.
"""
import os
import subprocess
import sys

import numpy as np

PEERS = os.environ.get("PEERS", "/work/peers")
PY = os.path.join(PEERS, ".venv/bin/python")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nt")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20190215)


def f32(a):
    return np.asarray(a, dtype=np.float32)


ONLY = os.environ.get("ONLY")  # regenerate only the outputs whose name contains this (the inputs are drawn anyway)


def run(cmd, inp, out, args):
    if ONLY and ONLY not in out:
        return
    np.savez(os.path.join(OUT, "_in.npz"), **inp)
    subprocess.run([PY, os.path.join(PEERS, "reference.py"), cmd, "--in", os.path.join(OUT, "_in.npz"),
                    "--out", os.path.join(OUT, out)] + args, check=True)
    os.remove(os.path.join(OUT, "_in.npz"))
    # keep the inputs beside the outputs in one file
    z = {k: v for k, v in np.load(os.path.join(OUT, out)).items() if v.dtype.kind in "fiub"}  # numbers only
    z.update({"in_" + k: v for k, v in inp.items()})
    np.savez_compressed(os.path.join(OUT, out), **z)


# Analytic kernels: relu and erf, depths 1-3, x1 vs itself and x1 vs x2 (one input parallel to a training input).
x1 = f32(rng.normal(size=(7, 5)))
x2 = f32(np.concatenate([rng.normal(size=(3, 5)), 2 * x1[:1]], axis=0))
for act, w, b in (("relu", 1.5, 0.2), ("erf", 1.3, 0.1)):
    for depth in (1, 2, 3):
        args = ["--depth", str(depth), "--activation", act, "--W_std", str(w), "--b_std", str(b), "--by-depth"]
        run("analytic", {"x1": x1}, f"analytic_{act}_L{depth}_sym.npz", args)
        run("analytic", {"x1": x1, "x2": x2}, f"analytic_{act}_L{depth}_x2.npz", args)

# Parallel inputs without bias (c = 1 exactly between x1[0] and x2[0] = x1[0], x2[1] = 2·x1[1]):
# where arccos's infinite slope at 1 meets rounding.
x2p = f32(np.concatenate([x1[:1], 2 * x1[1:2], rng.normal(size=(2, 5))], axis=0))
for depth in (1, 3):
    run("analytic", {"x1": x1, "x2": x2p}, f"analytic_relu_L{depth}_parallel.npz",
        ["--depth", str(depth), "--activation", "relu", "--W_std", "1.5", "--b_std", "0", "--by-depth"])

# Predictors: gradient_descent_mse (traced kernel) and gradient_descent_mse_ensemble on analytic relu kernels.
xtr, xte = f32(rng.normal(size=(9, 4))), f32(rng.normal(size=(5, 4)))
ytr = f32(rng.normal(size=(9, 2)))
inp = {"x_train": xtr, "x_test": xte, "y_train": ytr,
       "fx_train_0": f32(0.3 * rng.normal(size=(9, 2))), "fx_test_0": f32(0.3 * rng.normal(size=(5, 2)))}
run("predict", inp, "predict_relu.npz",
    ["--depth", "2", "--activation", "relu", "--W_std", "1.4", "--b_std", "0.3", "--learning_rate", "0.5",
     "--t", "0,1,10,100,1000"])
# The same with diag_reg = 0.1 (of the mean diagonal): the solves are regularised, the NTK-GP covariance's K_dd is not.
run("predict", inp, "predict_relu_diag_reg.npz",
    ["--depth", "2", "--activation", "relu", "--W_std", "1.4", "--b_std", "0.3", "--learning_rate", "0.5",
     "--t", "0,1,10,100,1000", "--diag_reg", "0.1"])
# Training: full-batch GD on MSE of the finite network (and nt.linearize of it), 100 steps, float64, from
# given weights W0, b0, ... (standard normal, the NTK-parameterization trainables), relu and erf.
for act in ("relu", "erf"):
    dims = [6, 32, 32, 3]
    w = {}
    for l in range(3):
        w[f"W{l}"] = f32(rng.normal(size=(dims[l], dims[l + 1])))
        w[f"b{l}"] = f32(rng.normal(size=(dims[l + 1],)))
    inp = {"x_train": f32(rng.normal(size=(10, 6))), "y_train": f32(rng.normal(size=(10, 3))),
           "x_test": f32(rng.normal(size=(4, 6))), "y_test": f32(rng.normal(size=(4, 3))), **w}
    run("train", inp, f"train_{act}.npz", ["--activation", act, "--W_std", "1.3", "--b_std", "0.2",
                                           "--learning_rate", "0.5", "--steps", "100", "--record_steps", "0,1,10,100"])
# Empirical NTK (nt.empirical_ntk_fn, traced and trace_axes=()) on given weights, x vs x2.
for act in ("relu", "erf"):
    dims = [5, 24, 16, 3]
    w = {}
    for l in range(3):
        w[f"W{l}"] = f32(rng.normal(size=(dims[l], dims[l + 1])))
        w[f"b{l}"] = f32(rng.normal(size=(dims[l + 1],)))
    inp = {"x": f32(rng.normal(size=(6, 5))), "x2": f32(rng.normal(size=(4, 5))), **w}
    run("empirical", inp, f"empirical_{act}.npz", ["--activation", act, "--W_std", "1.4", "--b_std", "0.3"])
print("wrote", sorted(os.listdir(OUT)))
