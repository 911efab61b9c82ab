#!/usr/bin/env python3
"""A third implementation of an exported QDQ model, with correctly rounded float sums.

  exact_reference.py EXPORTED.onnx INPUTS.npy OUT_PREDICTIONS.npy [--batch 100]
      [--labels LABELS.npy --bitplan BITPLAN_PREDICTIONS.npy]

Runs the ops of bitplan's onnx-qdq exports of CNNs (QuantizeLinear, DequantizeLinear, Conv,
Gemm, Relu, Add, Slice, Pad, GlobalAveragePool, Flatten, Constant) in numpy as ONNX defines
them, except that every sum of Conv, Gemm and GlobalAveragePool is taken in float64 (the
products of float32 values are exact there) and rounded to float32 once: the float32 result
closest to the exact one. bitplan (oneDNN) and ONNX Runtime (MLAS) both round each partial
sum in float32, in different orders; comparing each with this reference shows whether
either is closer to the definition (docs/export.md, "Where the CIFAR ResNets differ").
Writes the top-1 class per sample. With --labels and --bitplan (the files ort_interop.py
leaves in its work folder) it also runs ONNX Runtime on the model, optimizations off and on,
and prints each one's top-1 and, per pair, the samples whose top-1 differs.
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def attribute(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def conv(x, w, b, node):
    pads = attribute(node, "pads", [0, 0, 0, 0])
    strides = attribute(node, "strides", [1, 1])
    if attribute(node, "group", 1) != 1 or attribute(node, "dilations", [1, 1]) != [1, 1]:
        raise ValueError(f"{node.name}: only group 1 and dilation 1 are implemented")
    n, c, h, width = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (h + pads[0] + pads[2] - kh) // strides[0] + 1
    ow = (width + pads[1] + pads[3] - kw) // strides[1] + 1
    cols = np.empty((n, oh, ow, c, kh, kw))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, :, i, j] = xp[:, :, i:i + strides[0] * oh:strides[0],
                                        j:j + strides[1] * ow:strides[1]].transpose(0, 2, 3, 1)
    y = cols.reshape(n * oh * ow, -1) @ w.astype(np.float64).reshape(m, -1).T
    if b is not None:
        y += b.astype(np.float64)
    return y.reshape(n, oh, ow, m).transpose(0, 3, 1, 2).astype(np.float32)


def run(model, inits, x):
    values = dict(inits)
    values[model.graph.input[0].name] = x
    for node in model.graph.node:
        ins = [values[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Constant":
            out = numpy_helper.to_array(node.attribute[0].t)
        elif op in ("QuantizeLinear", "DequantizeLinear"):
            scale, zp = ins[1], ins[2]
            axis = attribute(node, "axis", 1)
            shape = [1] * ins[0].ndim
            if scale.ndim == 1:
                shape[axis] = scale.size
            scale = scale.reshape(shape).astype(np.float32)
            zpf = zp.reshape(shape).astype(np.float32)
            if op == "QuantizeLinear":
                info = np.iinfo(zp.dtype)
                out = np.clip(np.rint(ins[0] / scale) + zpf, info.min, info.max).astype(zp.dtype)
            else:
                out = (ins[0].astype(np.float32) - zpf) * scale
        elif op == "Conv":
            out = conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, node)
        elif op == "Gemm":
            a, bm = ins[0].astype(np.float64), ins[1].astype(np.float64)
            if attribute(node, "transA", 0):
                a = a.T
            if attribute(node, "transB", 0):
                bm = bm.T
            y = a @ bm
            if len(ins) > 2 and ins[2] is not None:
                y += ins[2].astype(np.float64)
            out = y.astype(np.float32)
        elif op == "Relu":
            out = np.maximum(ins[0], np.float32(0))
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Slice":
            starts, ends = ins[1], ins[2]
            axes = ins[3] if len(ins) > 3 else np.arange(len(starts))
            steps = ins[4] if len(ins) > 4 else np.ones(len(starts), np.int64)
            index = [slice(None)] * ins[0].ndim
            for s, e, a, st in zip(starts, ends, axes, steps):
                index[int(a)] = slice(int(s), int(min(e, ins[0].shape[int(a)])), int(st))
            out = ins[0][tuple(index)]
        elif op == "Pad":
            pads = ins[1]
            half = len(pads) // 2
            value = ins[2] if len(ins) > 2 and ins[2] is not None else np.float32(0)
            out = np.pad(ins[0], list(zip(pads[:half], pads[half:])), constant_values=value)
        elif op == "GlobalAveragePool":
            out = ins[0].astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(np.float32)
        elif op == "Flatten":
            out = ins[0].reshape(ins[0].shape[0], -1)
        else:
            raise ValueError(f"{node.name}: op {op} is not implemented here")
        values[node.output[0]] = out
    return values[model.graph.output[0].name]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("output")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--labels", default=None)
    parser.add_argument("--bitplan", default=None, help="bitplan evaluate --predictions output")
    args = parser.parse_args()
    model = onnx.load(args.model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = np.load(args.inputs)
    top1 = [run(model, inits, x[i:i + args.batch]).argmax(axis=1) for i in range(0, len(x), args.batch)]
    exact = np.concatenate(top1).astype(np.int64)
    np.save(args.output, exact)
    if args.labels and args.bitplan:
        import onnxruntime as ort
        labels = np.load(args.labels)
        runs = {"bitplan": np.load(args.bitplan), "exact": exact}
        for name, level in (("ort_unoptimized", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                            ("ort_optimized", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            options.graph_optimization_level = level
            session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
            feed = session.get_inputs()[0].name
            runs[name] = np.concatenate([session.run(None, {feed: x[i:i + args.batch]})[0].argmax(axis=1)
                                         for i in range(0, len(x), args.batch)])
        for name, predicted in runs.items():
            print(f"{name:16s} top-1 {(predicted == labels).mean() * 100:.2f} %")
        names = list(runs)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                differ = runs[a] != runs[b]
                gap = ((runs[a] == labels).mean() - (runs[b] == labels).mean()) * 100
                print(f"{a} vs {b}: {int(differ.sum())} samples differ, top-1 gap {gap:+.2f} pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
