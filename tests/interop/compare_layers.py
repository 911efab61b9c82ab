#!/usr/bin/env python3
"""Layer-by-layer comparison of bitplan's simulation with ONNX Runtime on an exported model.

  compare_layers.py EXPORTED.onnx DUMP_DIR [--optimized] [--json OUT.json] [--isolate]

DUMP_DIR is what bitplan_interop_dump_tensors wrote (input.npy, tensors.txt, t<N>.npy).
Every tensor of the exported model becomes a graph output; ONNX Runtime (CPU, optimizations
off unless --optimized) runs on input.npy, and each tensor bitplan dumped is compared with
ORT's tensor of the same name (a FakeQuant output "<input>@q@<layer>" with the export's
"<layer>/input_quant_dequantized"). Per tensor, in execution order: elements that differ,
the largest difference in ulps of the float32 value, and, for quantized tensors, how many
codes differ and whether each side's codes are exactly ONNX QuantizeLinear (float32 x /
scale, round half to even, + zero point, saturate) of that side's own float input.
--isolate then replays every float op of the export alone in ONNX Runtime on bitplan's own
inputs (a Conv whose output bitplan fused with its Relu is compared after the Relu), so an
op that computes differently from bitplan shows up even where its inputs already differed.
Run it in the interop venv (tests/interop/ort_interop.py makes one; docs/export.md).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def ulps(a, b):
    """|a - b| in units of the last place of float32 at max(|a|, |b|)."""
    scale = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32))
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / np.maximum(scale, np.float32(1e-45))


def quantize_linear(x, scale, zero_point, lo=0, hi=255):
    """ONNX QuantizeLinear in float32: saturate(round_half_even(x / scale) + zero_point)."""
    q = np.rint(x.astype(np.float32) / np.float32(scale)).astype(np.float64) + zero_point
    return np.clip(q, lo, hi)


# Ops whose float sums ONNX Runtime and oneDNN take in different orders; every other op of
# the export must give bitplan's bits when run alone on bitplan's inputs.
SUM_ORDER_OPS = ("Conv", "Conv+Relu", "GlobalAveragePool")


def compare(model_path, dump, optimized=False, isolate_ops=False, verbose=True):
    """Rows per tensor (execution order) and, with isolate_ops, rows per op run alone."""
    dump = Path(dump)
    model = onnx.load(str(model_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # The scale, zero point and clip bounds of every activation QuantizeLinear.
    quant = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.name.endswith("/input_quant/QuantizeLinear"):
            layer = n.name[: -len("/input_quant/QuantizeLinear")]
            zp = inits[n.input[2]]
            lo, hi = (0, 255) if zp.dtype == np.uint8 else (-128, 127)
            quant[layer] = (float(inits[n.input[1]]), float(zp), lo, hi, n.input[0])
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name for v in model.graph.output}
    for v in inferred.graph.value_info:
        if v.name not in known and v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            model.graph.output.append(v)
            known.add(v.name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.load(dump / "input.npy")
    names = [o.name for o in session.get_outputs()]
    ort_out = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))

    rows = []
    bitplan = {}
    for line in (dump / "tensors.txt").read_text().splitlines():
        file, name = line.split("\t")
        bitplan[name] = np.load(dump / file)
    for name, ours in bitplan.items():
        layer = name.split("@q@")[1] if "@q@" in name else None
        theirs_name = f"{layer}/input_quant_dequantized" if layer else name
        if theirs_name not in ort_out:
            continue
        theirs = ort_out[theirs_name]
        if theirs.shape != ours.shape:
            rows.append({"tensor": name, "shape_mismatch": [list(ours.shape), list(theirs.shape)]})
            continue
        differ = ours != theirs
        row = {"tensor": name, "elements": int(ours.size), "differ": int(differ.sum()),
               "max_ulps": float(ulps(ours, theirs).max()) if differ.any() else 0.0,
               "max_abs": float(np.abs(ours - theirs).max())}
        if layer:
            scale, zp, lo, hi, source = quant[layer]
            ours_in = bitplan[name.split("@q@")[0]] if name.split("@q@")[0] in bitplan else x
            theirs_in = ort_out.get(source, x)
            ours_codes = np.rint(ours / np.float32(scale)) + zp
            theirs_codes = np.rint(theirs / np.float32(scale)) + zp
            row.update({
                "codes_differ": int((ours_codes != theirs_codes).sum()),
                "max_code_step": float(np.abs(ours_codes - theirs_codes).max()),
                "input_differ": int((ours_in != theirs_in).sum()),
                "bitplan_is_quantize_linear": bool(
                    (quantize_linear(ours_in, scale, zp, lo, hi) == ours_codes).all()),
                "ort_is_quantize_linear": bool(
                    (quantize_linear(theirs_in, scale, zp, lo, hi) == theirs_codes).all()),
                # codes that differ although both sides quantized the same float
                "codes_differ_same_input": int(((ours_codes != theirs_codes) & (ours_in == theirs_in)).sum()),
            })
        rows.append(row)
    for r in rows if verbose else []:
        extra = ""
        if "codes_differ" in r:
            extra = (f"  codes differ {r['codes_differ']} (of which same float input "
                     f"{r['codes_differ_same_input']}), input differs {r['input_differ']}, "
                     f"ONNX QuantizeLinear: bitplan {r['bitplan_is_quantize_linear']} "
                     f"ORT {r['ort_is_quantize_linear']}")
        if "shape_mismatch" in r:
            print(f"{r['tensor']}: shapes {r['shape_mismatch']}")
        else:
            print(f"{r['tensor'][:60]:60s} differ {r['differ']:8d}/{r['elements']:<9d} "
                  f"max {r['max_ulps']:.3g} ulp ({r['max_abs']:.3g}){extra}")
    isolated = isolate(model, inits, bitplan, x, verbose) if isolate_ops else []
    return rows, isolated


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("dump")
    parser.add_argument("--optimized", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--isolate", action="store_true")
    args = parser.parse_args()
    rows, isolated = compare(args.model, args.dump, args.optimized, args.isolate)
    if args.json:
        Path(args.json).write_text(json.dumps({"tensors": rows, "isolated": isolated}, indent=1) + "\n")
    return 0


def isolate(model, inits, bitplan, x, verbose=True):
    """Each float op alone in ONNX Runtime on bitplan's inputs, against bitplan's output."""
    from onnx import helper
    def constant_value(node):
        value = helper.get_attribute_value(node.attribute[0])
        return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.array(value)

    constants = {n.output[0]: constant_value(n) for n in model.graph.node if n.op_type == "Constant"}
    quantized_input = {}  # "<layer>/input_quant_dequantized" -> bitplan's FakeQuant output
    for name in bitplan:
        if "@q@" in name:
            quantized_input[f"{name.split('@q@')[1]}/input_quant_dequantized"] = name
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = 2
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    weights = {}  # weight DequantizeLinear outputs, computed by ORT on the stored codes
    results = []
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and "/weight/" in n.name:
            g = helper.make_graph([n], "dq", [], [helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None)],
                                  [numpy_helper.from_array(inits[i], i) for i in n.input])
            m = helper.make_model(g, opset_imports=model.opset_import)
            weights[n.output[0]] = ort.InferenceSession(m.SerializeToString(), session_options).run(None, {})[0]
            continue
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        feeds, inputs, initializers = {}, [], []
        for i in n.input:
            if i == "":
                continue
            if i in inits or i in constants or i in weights:
                value = inits.get(i, constants.get(i, weights.get(i)))
                initializers.append(numpy_helper.from_array(value, i))
                continue
            source = quantized_input.get(i, i)
            if source not in bitplan and i != "input":
                break
            feeds[i] = bitplan[source] if source in bitplan else x
            inputs.append(helper.make_tensor_value_info(i, onnx.TensorProto.FLOAT, feeds[i].shape))
        else:
            out = n.output[0]
            relu_after = out not in bitplan and len(consumers.get(out, [])) == 1 and consumers[out][0].op_type == "Relu"
            expected = bitplan.get(consumers[out][0].output[0] if relu_after else out)
            if expected is None:
                continue
            g = helper.make_graph([n], "one", inputs, [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)],
                                  initializers)
            m = helper.make_model(g, opset_imports=model.opset_import)
            got = ort.InferenceSession(m.SerializeToString(), session_options).run(None, feeds)[0]
            if relu_after:
                got = np.maximum(got, np.float32(0))
            differ = got != expected
            results.append({"node": n.name, "op": n.op_type + ("+Relu" if relu_after else ""),
                            "elements": int(got.size), "differ": int(differ.sum()),
                            "max_abs": float(np.abs(got - expected).max()),
                            "max_rel": float((np.abs(got - expected) / np.maximum(np.abs(expected), 1e-30)).max())})
            r = results[-1]
            if verbose:
                print(f"isolated {r['op']:18s} {r['node'][:45]:45s} differ {r['differ']:8d}/{r['elements']:<9d} "
                      f"max abs {r['max_abs']:.3g} rel {r['max_rel']:.3g}")
    return results


if __name__ == "__main__":
    sys.exit(main())
