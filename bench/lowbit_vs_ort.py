#!/usr/bin/env python3
"""bitplan's low-bit CPU kernels next to ONNX Runtime's, same machine, same threads, one run.

Runs bench_lowbit (bitplan: fp32, int8, W4A32, W4A8 one-node graphs through the executor)
and then times ONNX Runtime on the same shapes:
  fp32       MatMul with an fp32 initializer
  int8 dyn   that model through onnxruntime.quantization.quantize_dynamic (per-channel int8
             weights, activations quantized per call: DynamicQuantizeLinear + MatMulInteger,
             or the fused DynamicQuantizeMatMul ORT's optimizer makes of them)
  nbits b32 / b128   com.microsoft MatMulNBits, 4-bit weights with a scale per 32 / 128 k,
             accuracy_level 0 (weights dequantized to fp32 in the kernel) and 4 (activations
             quantized to int8 per block, int8 dot products: ORT's counterpart of W4A8)
Each ORT model runs in a session with intra_op_num_threads = THREADS (sequential execution,
all graph optimizations), inputs and outputs bound once (IOBinding), timed like bench_lowbit:
calls in blocks of >= 10 ms, blocks of all models interleaved, median per call.

  .venv-peers/bin/python bench/lowbit_vs_ort.py --bench build/bench/bench_lowbit --threads 2

(.venv-peers: bench/peers_requirements.txt pins onnxruntime 1.32.0 and onnx 1.23.2.)
Prints bench_lowbit's table, then one table of ORT's times and the ratios ORT / bitplan
(above 1: bitplan faster).
"""
import argparse
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

SHAPES = [(576, 1536), (1536, 576), (49152, 576), (1536, 384)]  # (N, K), as bench_lowbit
ROWS = [1, 8, 32]


def matmul_model(m, k, n, rng, path):
    w = rng.standard_normal((k, n), dtype=np.float32) * 0.05
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def matmul_nbits_model(m, k, n, block, accuracy_level, rng, path):
    blocks = (k + block - 1) // block
    packed = rng.integers(0, 256, (n, blocks, block // 2), dtype=np.uint8)
    scales = (rng.random(n * blocks, dtype=np.float32) * 0.01 + 0.001).astype(np.float32)
    node = helper.make_node("MatMulNBits", ["x", "b", "scales"], ["y"], domain="com.microsoft",
                            K=k, N=n, bits=4, block_size=block, accuracy_level=accuracy_level)
    graph = helper.make_graph(
        [node], "matmul_nbits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(packed, "b"), numpy_helper.from_array(scales, "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, path)


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Without this, each session's idle workers spin after its block and take the cores from
    # the next session's block (the models' blocks are interleaved): every ORT time doubled
    # or worse on the 2-vCPU VM. bitplan's own OpenMP threads are limited the same way.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def bound_call(sess, x):
    binding = sess.io_binding()
    x_value = ort.OrtValue.ortvalue_from_numpy(x)
    binding.bind_ortvalue_input("x", x_value)
    binding.bind_output("y")
    sess.run_with_iobinding(binding)  # allocates the output once
    y_value = binding.get_outputs()[0]
    binding.bind_ortvalue_output("y", y_value)
    return lambda: sess.run_with_iobinding(binding)


def interleaved_medians(calls, budget):
    """Median seconds per call of each, in interleaved blocks of >= 10 ms (bench_lowbit's rule)."""
    reps = []
    for call in calls:
        call()
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            if time.perf_counter() - t0 >= 0.01:
                break
            n *= 2
        reps.append(n)
    samples = [[] for _ in calls]
    spent = 0.0
    while spent < budget * len(calls) or min(len(s) for s in samples) < 5:
        for i, call in enumerate(calls):
            t0 = time.perf_counter()
            for _ in range(reps[i]):
                call()
            elapsed = time.perf_counter() - t0
            spent += elapsed
            samples[i].append(elapsed / reps[i])
    return [statistics.median(s) for s in samples]


def parse_bitplan_table(text):
    """{(n, k, m): {column: ms}} from bench_lowbit's markdown rows."""
    header, rows = None, {}
    for line in text.splitlines():
        if line.startswith("| N x K"):
            header = [c.strip() for c in line.strip("|").split("|")]
        elif header and re.match(r"\| \d+ x \d+ \|", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            n, k = (int(v) for v in cells[0].split(" x "))
            m = int(cells[1])
            rows[(n, k, m)] = {h[:-3]: float(c) for h, c in zip(header, cells) if h.endswith(" ms")}
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", required=True, help="bitplan's bench_lowbit executable")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per case")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice on pre-processing

    bitplan_out = subprocess.run([args.bench, str(args.threads), str(args.seconds)],
                                 check=True, capture_output=True, text=True).stdout
    print(bitplan_out)
    bitplan = parse_bitplan_table(bitplan_out)

    rng = np.random.default_rng(1)
    kinds = ["fp32", "int8 dyn", "nbits b32 acc0", "nbits b128 acc0", "nbits b32 acc4", "nbits b128 acc4"]
    print(f"# ONNX Runtime {ort.__version__}, {args.threads} threads, same shapes; ratio = ORT / bitplan")
    print("| N x K | M | " + " | ".join(f"ORT {k} ms" for k in kinds) +
          " | fp32 ORT/bitplan | int8 ORT dyn / bitplan int8 | ORT nbits b32 acc0 / bitplan w4g32"
          " | ORT nbits b32 acc4 / bitplan w4a8g32 | ORT nbits b128 acc4 / bitplan w4a8g128 |")
    print("|---|---:|" + "---:|" * (len(kinds) + 5))
    with tempfile.TemporaryDirectory() as tmp:
        for n, k in SHAPES:
            for m in ROWS:
                paths = {}
                paths["fp32"] = os.path.join(tmp, "fp32.onnx")
                matmul_model(m, k, n, rng, paths["fp32"])
                paths["int8 dyn"] = os.path.join(tmp, "int8.onnx")
                quantize_dynamic(paths["fp32"], paths["int8 dyn"], per_channel=True,
                                 weight_type=QuantType.QInt8)
                for block in (32, 128):
                    for level in (0, 4):
                        kind = f"nbits b{block} acc{level}"
                        paths[kind] = os.path.join(tmp, f"nbits_{block}_{level}.onnx")
                        matmul_nbits_model(m, k, n, block, level, rng, paths[kind])
                x = rng.standard_normal((m, k), dtype=np.float32)
                sessions = [session(paths[kind], args.threads) for kind in kinds]
                calls = [bound_call(s, x) for s in sessions]
                ms = dict(zip(kinds, (t * 1e3 for t in interleaved_medians(calls, args.seconds))))
                b = bitplan.get((n, k, m), {})

                def ratio(ort_kind, bitplan_kind):
                    return f"{ms[ort_kind] / b[bitplan_kind]:.2f}x" if bitplan_kind in b else "–"

                print(f"| {n} x {k} | {m} | " + " | ".join(f"{ms[kind]:.4f}" for kind in kinds) + " | " +
                      " | ".join([ratio("fp32", "fp32"), ratio("int8 dyn", "int8"),
                                  ratio("nbits b32 acc0", "w4g32"), ratio("nbits b32 acc4", "w4a8g32"),
                                  ratio("nbits b128 acc4", "w4a8g128")]) + " |", flush=True)
                del sessions, calls


if __name__ == "__main__":
    sys.exit(main())
