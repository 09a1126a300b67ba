#!/usr/bin/env python3
"""Neural-tangents 0.6.5 reference values for networks built from `layers` (conv, pooling, residual, layer norm).

Needs the peers harness (../shared/peers: setup.sh makes a venv with neural-tangents 0.6.5, jax 0.4.25):
    PEERS=/path/to/peers python3 make_layer_fixtures.py [CASE ...]     (default: every case)
Writes nt_layers/<case>_{empirical,train}.npz: the inputs (prefixed in_) and NT's outputs of
`reference.py empirical|train` in float64 — forward outputs, the empirical NTK (traced, full, per parameter
tensor) and 100 heavy-ball steps of the network and of nt.linearize. Inputs are float32-representable, drawn from
a numpy seed of its own per case (so one case can be remade alone); images are NHWC and deliberately not square.
"""
import json
import os
import subprocess
import sys

import numpy as np

PEERS = os.environ.get("PEERS", "/work/peers")
PY = os.path.join(PEERS, ".venv/bin/python")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nt_layers")
os.makedirs(OUT, exist_ok=True)
rng = None


def f32(*shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def run(cmd, inp, out, args=()):
    tmp = os.path.join(OUT, "_in.npz")
    np.savez(tmp, **inp)
    subprocess.run([PY, os.path.join(PEERS, "reference.py"), cmd, "--in", tmp, "--out", os.path.join(OUT, out), *args],
                   check=True)
    os.remove(tmp)
    z = dict(np.load(os.path.join(OUT, out)))
    keep = {k: v for k, v in z.items() if v.dtype.kind in "fiub"}
    keep.update({"in_" + k: v for k, v in inp.items() if v.dtype.kind in "fiub"})
    # strings as UTF-8 bytes (uint8), which every npy reader takes
    for k in ("cfg_layers_resolved", "cfg_param_shapes"):
        keep[k] = np.frombuffer(str(z[k]).encode(), dtype=np.uint8)
    keep["in_parameterization"] = np.frombuffer(str(inp["parameterization"]).encode(), dtype=np.uint8)
    np.savez_compressed(os.path.join(OUT, out), **keep)


def conv(c, f, s=1, p="VALID", **kw):
    return {"conv": {"channels": c, "filter": [f, f] if isinstance(f, int) else f,
                     "strides": [s, s] if isinstance(s, int) else s, "padding": p, **kw}}


def pool(w, s, p="VALID", normalize=False):
    return {"avg_pool": {"window": [w, w], "strides": [s, s], "padding": p, "normalize_edges": normalize}}


CASES = {
    # SAME / VALID convs with strides, avg_pool, flatten, dense; relu and erf
    "cnn_flatten": dict(shape=(6, 5, 2), param="ntk", layers=[
        conv(4, 3, 1, "SAME"), "relu", pool(2, 2, "VALID"), conv(3, [2, 1], [1, 2], "VALID", W_std=1.2, b_std=0.3),
        "erf", "flatten", {"dense": {"out": 3}}]),
    # CIRCULAR conv with stride 2, SAME pooling with normalize_edges, gelu and tanh, global average pooling
    "cnn_circular_gap": dict(shape=(7, 6, 3), param="ntk", layers=[
        conv(5, 3, 2, "CIRCULAR"), "gelu", pool(3, 1, "SAME", True), conv(4, 2, 1, "SAME"), "tanh", pool(2, 2, "SAME"),
        "global_avg_pool", {"dense": {"out": 2, "W_std": 0.9}}]),
    # a pre-activation residual block with layer norm, then a dense layer on the flattened image
    "resnet_layer_norm": dict(shape=(5, 6, 2), param="ntk", layers=[
        conv(4, 3, 1, "SAME"),
        {"residual": [ "relu", conv(4, 3, 1, "SAME"), "layer_norm", "gelu", conv(4, [1, 3], 1, "SAME")]},
        {"residual": ["erf", conv(4, 1)]}, "layer_norm", "relu", "flatten", {"dense": {"out": 3}}]),
    # standard parameterization with strided VALID convs
    # (a smaller step: the linearization's largest stable learning rate here is 0.127)
    "standard_valid": dict(shape=(8, 7, 2), param="standard", lr=0.05, layers=[
        conv(6, 3, 2, "VALID"), "relu", conv(5, 2, 1, "VALID"), "erf", "flatten", {"dense": {"out": 2}}]),
}

W_STD, B_STD = 1.4, 0.2
for index, (name, c) in enumerate(CASES.items()):
    if len(sys.argv) > 1 and name not in sys.argv[1:]:
        continue
    rng = np.random.default_rng(20191204 + index)
    layers = json.dumps(c["layers"])
    # the parameter shapes this network needs (an `analytic` run needs no weights; tanh has no analytic kernel,
    # so ask with a copy where tanh is erf — the shapes do not depend on the activation)
    probe = os.path.join(OUT, "_probe.npz")
    np.savez(os.path.join(OUT, "_probe_in.npz"), x1=f32(1, *c["shape"]),
             layers=np.asarray(layers.replace('"tanh"', '"erf"')), W_std=np.asarray(W_STD), b_std=np.asarray(B_STD),
             parameterization=np.asarray(c["param"]))
    subprocess.run([PY, os.path.join(PEERS, "reference.py"), "analytic", "--in", os.path.join(OUT, "_probe_in.npz"),
                    "--out", probe, "--no-checks"], check=True)
    shapes = json.loads(str(np.load(probe)["cfg_param_shapes"]))
    os.remove(probe)
    os.remove(os.path.join(OUT, "_probe_in.npz"))
    weights = {}
    for pname, shape in shapes:
        w = f32(*shape)
        if c["param"] == "standard":  # give W ~ N(0, W_std²/fan_in), b ~ N(0, b_std²) as the parameterization says
            w = (w * (W_STD / np.sqrt(np.prod(shape[:-1])) if pname.startswith("W") else w * B_STD)).astype(np.float32)
        weights[pname] = w
    common = dict(layers=np.asarray(layers), W_std=np.asarray(W_STD), b_std=np.asarray(B_STD),
                  parameterization=np.asarray(c["param"]), **weights)
    run("empirical", dict(x=f32(4, *c["shape"]), x2=f32(3, *c["shape"]), **common), f"{name}_empirical.npz")
    k = shapes[-1][1][-1]
    run("train", dict(x_train=f32(6, *c["shape"]), y_train=f32(6, k), x_test=f32(3, *c["shape"]), y_test=f32(3, k),
                      learning_rate=np.asarray(c.get("lr", 0.3)), steps=np.asarray(100), momentum=np.asarray(0.9),
                      record_steps=np.asarray([0, 1, 10, 100]), **common), f"{name}_train.npz")

# Infinite-width kernels (`reference.py analytic` with layers): NNGP and NTK of x1 [4, ...] with x2 [3, ...], and of
# x1 with itself (x2 absent: NT's x2 = None), in float64, per logit; and x1 with x2 in float32 (`_f32`). The
# grammar's four kinds of network: conv + flatten (NT's diagonal_spatial), pooling (the full spatial covariance), a
# pre-activation residual network with layer_norm and gelu, standard parameterization with strided VALID convs (a
# 1×1 conv in the first).
ANALYTIC = {
    "analytic_conv_flatten": dict(shape=(7, 6, 2), param="ntk", layers=[
        conv(4, 3, 1, "SAME"), "relu", conv(3, [2, 3], [2, 1], "CIRCULAR", b_std=0.5), "erf",
        conv(5, 1, W_std=1.1), "relu", "flatten", {"dense": {"out": 2}}]),
    "analytic_conv_pool_gap": dict(shape=(7, 6, 3), param="ntk", layers=[
        conv(5, 3, 2, "CIRCULAR"), "gelu", pool(3, 1, "SAME", True), conv(4, 2, 1, "SAME"), "relu",
        pool(2, 2, "SAME"), conv(3, 2, 1, "VALID"), "erf", "global_avg_pool", {"dense": {"out": 2, "W_std": 0.9}}]),
    "analytic_resnet_layer_norm": dict(shape=(5, 6, 2), param="ntk", layers=CASES["resnet_layer_norm"]["layers"]),
    "analytic_standard_valid": dict(shape=(8, 7, 2), param="standard", layers=[
        conv(6, 3, 2, "VALID"), "relu", conv(5, 2, 1, "VALID", b_std=0.1), "erf", pool(2, 1, "VALID"),
        "flatten", {"dense": {"out": 2}}]),
    "analytic_standard_flatten": dict(shape=(8, 7, 2), param="standard", layers=[
        conv(6, 3, 2, "VALID"), "relu", conv(5, 2, 1, "VALID", b_std=0.1), "erf", "flatten", {"dense": {"out": 2}}]),
}
for index, (name, c) in enumerate(ANALYTIC.items()):
    if len(sys.argv) > 1 and name not in sys.argv[1:]:
        continue
    rng = np.random.default_rng(20191300 + index)
    common = dict(layers=np.asarray(json.dumps(c["layers"])), W_std=np.asarray(W_STD), b_std=np.asarray(B_STD),
                  parameterization=np.asarray(c["param"]))
    x1, x2 = f32(4, *c["shape"]), f32(3, *c["shape"])
    run("analytic", dict(x1=x1, x2=x2, **common), f"{name}.npz")
    run("analytic", dict(x1=x1, **common), f"{name}_sym.npz")
    run("analytic", dict(x1=x1, x2=x2, **common), f"{name}_f32.npz", args=("--dtype", "float32"))
print("wrote", sorted(os.listdir(OUT)))
