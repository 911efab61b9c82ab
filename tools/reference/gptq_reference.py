#!/usr/bin/env python3
"""GPTQ reference numbers for tests/unit/executor_quant_gptq.cpp (dev-time only).

A numpy transcription of the reference implementation's GPTQ.fasterquant
(github.com/IST-DASLab/gptq, gptq.py) with the choices bitplan documents in
executor/quant/gptq.hpp: static groups (scales from the fp32 weights), act-order,
damping 0.01 * mean(diag H), lazy blocks. It prints the C++ initialiser of the expected
levels for the small case the test builds the same way.

  .venv-zoo/bin/python tools/reference/gptq_reference.py   (any Python with numpy)
"""
import numpy as np


def case():
    # W [rows=4, K=8] (a Gemm with transB), X [16 vectors, 8]: exact in float32.
    w = np.array([[((r * 8 + c) * 37 % 23 - 11) / 16.0 for c in range(8)] for r in range(4)],
                 dtype=np.float32)
    x = np.array([[((n * 8 + c) * 13 % 17 - 8) / 8.0 + (c % 3) * ((n * 5) % 7 - 3) / 4.0
                   for c in range(8)] for n in range(16)], dtype=np.float32)
    return w, x


def int4_symmetric_levels(w):
    # bitplan's int4/channel/sym: scale = max|w| / 7 in float32, q = clamp(rint(w / s), -8, 7)
    scale = (np.abs(w).max(axis=1) / np.float32(7)).astype(np.float32)
    return scale


def quantize(x, scale):
    q = np.clip(np.rint(np.float32(x) / scale), -8, 7)
    return np.float32(q * scale)


def gptq(w, h, scale, blocksize=128, percdamp=0.01, act_order=True):
    w = w.astype(np.float64).copy()
    h = h.astype(np.float64).copy()
    cols = w.shape[1]
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(cols)
    w = w[:, perm]
    h = h[perm][:, perm]
    h += percdamp * np.mean(np.diag(h)) * np.eye(cols)
    hinv = np.linalg.inv(h)
    u = np.linalg.cholesky(hinv).T  # upper: hinv = u.T @ u
    q = np.zeros_like(w)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].copy()
        err1 = np.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, i]
            d = u1[i, i]
            qc = np.array([quantize(col[r], scale[r]) for r in range(len(col))], dtype=np.float64)
            q[:, i1 + i] = qc
            e = (col - qc) / d
            w1[:, i:] -= np.outer(e, u1[i, i:])
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    inv = np.argsort(perm)
    return q[:, inv]


def main():
    w, x = case()
    h = x.T.astype(np.float64) @ x.astype(np.float64)
    scale = int4_symmetric_levels(w)
    for blocksize in (128, 3):
        q = gptq(w, h, scale, blocksize=blocksize)
        codes = np.rint(q / scale[:, None]).astype(int)
        print(f"// blocksize {blocksize}: codes")
        print("{" + ", ".join(str(v) for v in codes.flatten()) + "}")
    rtn = np.array([[quantize(w[r, c], scale[r]) for c in range(8)] for r in range(4)])
    def err(qq):
        d = (w - qq).astype(np.float64)
        return float(np.einsum("rk,kl,rl->", d, h, d))
    print(f"// output error: rtn {err(rtn):.6f} gptq {err(gptq(w, h, scale)):.6f}")


if __name__ == "__main__":
    main()
