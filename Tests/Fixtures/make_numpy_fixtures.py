#!/usr/bin/env python3
"""Writes the numpy-made fixtures the Swift tests read (run once; outputs committed):
numpy_compressed.npz (np.savez_compressed) and numpy_stored.npz (np.savez), each with
x_train = arange(24)/8 as float64 [6, 4], y_train = [0,1,2,0,1,2] (int64), x_test float32 [3, 4],
y_test int64 [3]; and with_nan.npz, the same with one NaN in x_train."""
import numpy as np

x = (np.arange(24) / 8).reshape(6, 4)
y = np.array([0, 1, 2, 0, 1, 2])
xt = (np.arange(12, dtype=np.float32) / 4).reshape(3, 4)
yt = np.array([2, 1, 0])
np.savez_compressed("numpy_compressed.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
np.savez("numpy_stored.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
bad = x.copy()
bad[4, 2] = np.nan
np.savez_compressed("with_nan.npz", x_train=bad, y_train=y, x_test=xt, y_test=yt)
