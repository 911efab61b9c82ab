#!/usr/bin/env python3
"""ONNX Runtime interop test for `bitplan export --format onnx-qdq`.

For each fixture model (whose dataset is present) and plan (uniform W8A8, W4A16 with groups
of 128 (16 for the MLP, whose 784 inputs 128 does not divide), W3:gptq+bc (3-bit per-channel
weights placed by GPTQ, whose codes are not the fp32 weights' nearest levels, and the
Conv/Gemm biases corrected for the rounding's mean shift), on the MLP and the ViT W4g16:awq
(4-bit weights of AWQ's scaled layers, each reading its input through a Mul by 1/s), a mixed
plan of int8, int4, fp16 and fp32 layers, and on the models with equalizable Conv pairs
W8A8t-cle: per-tensor W8A8 (one layer fp32) run with quantization: {equalize: true, relu6_to_relu: true}, whose
export carries cross-layer equalization's rescaled weights and biases and ReLU6 -> ReLU), the test exports the QDQ model, checks it with the ONNX
checker, runs it in ONNX Runtime (CPU, 2 threads) on the same preprocessed samples bitplan
evaluates, and compares with bitplan's simulated predictions per sample:
  target |top-1(ORT) - top-1(bitplan)| <= 0.05 pt and per-sample top-1 agreement >= 99.9 %
  (reported; where ONNX Runtime's float kernels round differently it is missed by a few
  samples, see docs/export.md), failing below 99.0 % agreement, or beyond 0.5 pt where the
  flipped samples lean one way by more than chance (a sign test, p < 0.01).
ONNX Runtime runs twice: with its default graph optimizations (QDQ fused into integer
kernels where it can) and with them off (every QuantizeLinear/DequantizeLinear as the ONNX
definition) to tell rounding in fused kernels from export mistakes.

With --dump-tensors (ctest passes it) the ResNets' W8A8 exports are also compared layer by
layer on --layer-samples samples (compare_layers.py): every activation quantization must be
ONNX QuantizeLinear of its own input on both sides and every data-movement or elementwise op
run alone must give bitplan's bits; only float sums (Conv, pooling, Gemm) may differ.

It makes its own virtual environment (python3 -m venv; pip install of the PINNED versions)
and exits 77 (ctest SKIP_RETURN_CODE) with the reason when python3's venv or PyPI is not
available. --latency also times fp32 vs the exported W8A8 model at batch 1 and 64.

CI:      ctest --test-dir build -L interop          (1,000 samples per model: CI time)
Manual:  python3 tests/interop/ort_interop.py --bitplan build/cli/bitplan \\
           --dump build/tests/bitplan_interop_dump_samples --count 10000 --latency
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SKIP = 77
SOURCE = Path(__file__).resolve().parents[2]
FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
MODELS = {  # model -> (config, dataset file that must exist, W4A16 group)
    "fmnist_mlp": ("configs/fmnist_mlp.yaml", FASHION, 16),
    "fmnist_resnet": ("configs/fmnist_resnet.yaml", FASHION, 128),
    "fmnist_mobilenetv2": ("configs/fmnist_mobilenetv2.yaml", FASHION, 128),
    "fmnist_vit": ("configs/fmnist_vit.yaml", FASHION, 128),
    "cifar10_resnet20": ("configs/cifar10_resnet20.yaml", str(SOURCE.parent / "shared/data/cifar10/test"), 128),
    "cifar10_resnet32": ("configs/cifar10_resnet32.yaml", str(SOURCE.parent / "shared/data/cifar10/test"), 128),
}
# Models whose W8A8 export is also compared layer by layer (compare_layers.py) on a few
# samples: the ResNets, whose residual Adds and option-A shortcuts (strided Slice + Pad)
# must stay bit-identical to the simulation, so only the float sums of Conv and
# GlobalAveragePool may differ (docs/export.md, "Where the CIFAR ResNets differ").
LAYER_CHECKED = ("fmnist_resnet", "cifar10_resnet20", "cifar10_resnet32")
# Ops that round once per element (or only move data): ONNX Runtime must give bitplan's bits.
EXACT_OPS = ("Add", "Sub", "Mul", "Relu", "Clip", "Slice", "Pad", "Concat", "Flatten", "Reshape",
             "Transpose", "MaxPool")
# The target (docs/export.md reports where ONNX Runtime's kernels miss it, and why) and the
# floor below which the test fails: an export mistake moves far more than one sample in 200.
# A gap in top-1 is only the samples whose prediction flipped, counted by direction: on the
# CIFAR ResNets, where float sums in another order flip 2-4 of 500 samples (99.2-99.6 %
# agreement, docs/export.md), three flips the same way are already 0.6 pt. So a gap beyond the
# floor fails only when the flips lean one way by more than chance: a two-sided sign test
# below FLOOR_SIGN_P (three of three flips: p = 0.25; ten of ten: 0.002).
TARGET_GAP_PT, TARGET_AGREEMENT = 0.05, 99.9
FLOOR_GAP_PT, FLOOR_AGREEMENT, FLOOR_SIGN_P = 0.5, 99.0, 0.01


def sign_test_p(better, worse):
    """Two-sided sign test: the chance that flips split at least this unevenly by a fair coin."""
    flips = better + worse
    if flips == 0:
        return 1.0
    tail = sum(math.comb(flips, i) for i in range(min(better, worse) + 1))
    return min(1.0, 2 * tail / 2 ** flips)



# Exact versions the figures in docs/export.md were measured with (the venv is remade if
# they differ).
PINNED = ["onnxruntime==1.32.0", "onnx==1.23.2", "numpy==2.4.6"]

def skip(reason):
    print(f"SKIPPED: {reason}")
    sys.exit(SKIP)


def prepare_venv(venv: Path) -> Path:
    """Makes `venv` hold the PINNED onnxruntime, numpy and onnx; returns its python."""
    python = venv / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if made.returncode != 0:
            skip(f"python3 cannot create a virtual environment (python3-venv missing?): {made.stderr.strip()}")
    check = "; ".join(f"import {name}; assert {name}.__version__ == '{version}'"
                      for name, version in (p.split("==") for p in PINNED))
    have = subprocess.run([str(python), "-c", check], capture_output=True)
    if have.returncode != 0:
        pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PINNED],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            detail = pip.stderr.strip().splitlines()[-1] if pip.stderr.strip() else "no output"
            skip(f"pip could not install onnxruntime, numpy and onnx from PyPI (offline?): {detail}")
    return python


def ensure_venv(venv: Path):
    """Re-runs this script inside a venv with onnxruntime, numpy and onnx."""
    if os.environ.get("BITPLAN_INTEROP_IN_VENV") == "1":
        return
    python = prepare_venv(venv)
    env = dict(os.environ, BITPLAN_INTEROP_IN_VENV="1")
    sys.exit(subprocess.run([str(python), __file__] + sys.argv[1:], env=env).returncode)


def run(cmd):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def mixed_plan(bitplan, config, work, cache):
    """int8 first and last layers; the others cycle W4A8, W8A16 (fp16 inputs) and fp32."""
    layers_json = work / "layers.json"
    run([bitplan, "export", "--config", config, "--plan", "W8A8", "--format", "json", "--output", layers_json,
         "--force", "--cache-dir", cache])
    layers = json.loads(layers_json.read_text())["layers"]
    lines = ["bitplan_plan: 1", "layers:"]
    cycle = [("int4/channel/sym", "uint8/tensor/asym"), ("int8/channel/sym", "fp16"), None]
    for i, layer in enumerate(layers):
        spec = ("int8/channel/sym", "uint8/tensor/asym") if i in (0, len(layers) - 1) else cycle[(i - 1) % 3]
        name = json.dumps(layer["name"])
        lines.append(f"  {name}: fp32" if spec is None else f"  {name}: {{weights: {spec[0]}, activations: {spec[1]}}}")
    path = work / "mixed.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# Models with Conv/Gemm pairs that cross-layer equalization rescales (MobileNetV2 through
# relu6_to_relu): the "cle" plan exports and evaluates them with an equalizing config.
CLE_MODELS = ("fmnist_mobilenetv2", "fmnist_resnet")
AWQ_MODELS = ("fmnist_mlp", "fmnist_vit")  # Gemm/MatMul models: AWQ scales those


def cle_config(config, work):
    """A copy of `config` in `work` with quantization: {equalize: true, relu6_to_relu: true}
    and its relative paths (resolved against the config's folder) made absolute."""
    text = re.sub(r"(?<=[\s:\[,])\.\./", str(config.parent) + "/../", config.read_text())
    path = work / "cle.yaml"
    path.write_text(text + "\nquantization: {equalize: true, relu6_to_relu: true}\n")
    return path


def cle_plan(bitplan, config, work, cache):
    """Per-tensor W8A8 (the weights CLE helps most) with the second layer in fp32, so the export
    also writes a rescaled fp32 layer's weights."""
    layers_json = work / "cle_layers.json"
    run([bitplan, "export", "--config", config, "--plan", "W8A8", "--format", "json", "--output", layers_json,
         "--force", "--cache-dir", cache])
    second = json.loads(layers_json.read_text())["layers"][1]["name"]
    path = work / "cle_plan.yaml"
    path.write_text("bitplan_plan: 1\n"
                    "defaults: {weights: int8/tensor/sym, activations: uint8/tensor/asym}\n"
                    f"layers:\n  {json.dumps(second)}: fp32\n")
    return path


def ort_session(path, optimized):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_predictions(session, inputs, batch=100):
    import numpy as np
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: inputs[i:i + batch]})[0].argmax(axis=1) for i in range(0, len(inputs), batch)]
    return np.concatenate(out)


def latency_ms(session, sample, batch, repeats):
    import numpy as np
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(np.repeat(sample[:1], batch, axis=0))
    for _ in range(5):
        session.run(None, {name: x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def layer_check(args, config, cache, mwork, exported):
    """The first --layer-samples samples through bitplan_interop_dump_tensors and
    compare_layers.py: every activation quantization must be ONNX QuantizeLinear of its own
    input on both sides, every EXACT_OPS op run alone in ORT must give bitplan's bits."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_layers import compare
    dump = mwork / "W8A8.layers"
    run([args.dump_tensors, config, "W8A8", 0, args.layer_samples, cache, dump])
    tensors, isolated = compare(exported, dump, isolate_ops=True, verbose=False)
    problems = []
    quantized = [r for r in tensors if "codes_differ" in r]
    for r in quantized:
        if not (r["bitplan_is_quantize_linear"] and r["ort_is_quantize_linear"]) or r["codes_differ_same_input"]:
            problems.append(f"{r['tensor']}: not ONNX QuantizeLinear on both sides")
    exact = [r for r in isolated if r["op"] in EXACT_OPS]
    for r in exact:
        if r["differ"]:
            problems.append(f"{r['node']} ({r['op']}): {r['differ']} of {r['elements']} values differ alone")
    summed = [r for r in isolated if r["op"] not in EXACT_OPS]
    summary = {"quantized_inputs": len(quantized), "exact_ops": len(exact),
               "other_ops_differing": sum(1 for r in summed if r["differ"]),
               "other_ops_max_abs": max((r["max_abs"] for r in summed), default=0.0), "problems": problems}
    print(f"  layers ({args.layer_samples} samples): {len(quantized)} input quantizations are ONNX "
          f"QuantizeLinear on both sides, {len(exact)} data/elementwise ops bit-identical alone, "
          f"{summary['other_ops_differing']} of {len(summed)} summing ops (Conv, pooling, Gemm) differ "
          f"by <= {summary['other_ops_max_abs']:.2g}" + (f"; PROBLEMS: {problems[:3]}" if problems else ""))
    return summary


def main():
    # tools/test.sh installs the venv while the build compiles (pip is network-bound; the
    # build is CPU-bound), so the test itself starts with it in place.
    if len(sys.argv) == 3 and sys.argv[1] == "--prepare-venv":
        prepare_venv(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bitplan", required=True)
    parser.add_argument("--dump", required=True, help="bitplan_interop_dump_samples executable")
    parser.add_argument("--dump-tensors", default=None,
                        help="bitplan_interop_dump_tensors executable: compare the ResNets' W8A8 "
                             "exports layer by layer too")
    parser.add_argument("--layer-samples", type=int, default=8)
    parser.add_argument("--work", default=None, help="scratch folder (default: next to the venv)")
    parser.add_argument("--venv", default=str(SOURCE / "build" / "interop-venv"))
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--plans", default="W8A8,W4A16,gptq,awq,mixed,cle",
                        help="which of the six plans (W4A16 = the W4gNA16 plan of each model, "
                             "gptq = W3:gptq+bc, 3-bit per-channel weights placed by GPTQ, biases corrected, "
                             "awq = W4g16:awq on " + ", ".join(AWQ_MODELS) + ", "
                             "cle = per-tensor W8A8 with cross-layer equalization and relu6_to_relu, "
                             "on " + ", ".join(CLE_MODELS) + ")")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--report", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    venv = Path(args.venv)
    ensure_venv(venv)

    import numpy as np
    import onnx
    import onnxruntime as ort

    work = Path(args.work) if args.work else venv.parent / "interop-work"
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, {args.count} samples per model")
    failures, results, skipped = [], [], []
    for model in args.models.split(","):
        config, data, group = MODELS[model]
        if not Path(data).exists():
            skipped.append(f"{model}: {data} absent")
            continue
        config = SOURCE / config
        mwork = work / model
        mwork.mkdir(exist_ok=True)
        inputs_path, labels_path = mwork / "inputs.npy", mwork / "labels.npy"
        run([args.dump, config, args.count, inputs_path, labels_path])
        inputs, labels = np.load(inputs_path), np.load(labels_path)
        wanted = args.plans.split(",")
        plans = {}
        if "W8A8" in wanted:
            plans["W8A8"] = "W8A8"
        if "W4A16" in wanted:
            plans[f"W4g{group}A16"] = f"W4g{group}A16"
        if "gptq" in wanted:  # GPTQ's codes differ from round-to-nearest's: the export must carry them
            plans["W3-gptq-bc"] = "W3:gptq+bc"
        if "awq" in wanted and model in AWQ_MODELS:  # the export must carry the input scaling
            plans["W4g16-awq"] = "W4g16:awq"
        if "mixed" in wanted:
            plans["mixed"] = str(mixed_plan(args.bitplan, config, mwork, cache))
        plans = {name: (plan, config) for name, plan in plans.items()}
        if "cle" in wanted and model in CLE_MODELS:  # the export must carry CLE's rescaled model
            equalizing = cle_config(config, mwork)
            plans["W8A8t-cle"] = (str(cle_plan(args.bitplan, equalizing, mwork, cache)), equalizing)
        for plan_name, (plan, plan_config) in plans.items():
            exported = mwork / f"{plan_name}.onnx"
            exported_u8 = mwork / f"{plan_name}.u8.onnx"
            for path, extra in ((exported, []), (exported_u8, ["--uint8-weights"])):
                run([args.bitplan, "export", "--config", plan_config, "--plan", plan, "--format", "onnx-qdq",
                     "--output", path, "--force", "--cache-dir", cache] + extra)
                onnx.checker.check_model(onnx.load(str(path)), full_check=True)
            predictions_path = mwork / f"{plan_name}.bitplan.npy"
            run([args.bitplan, "evaluate", "--config", plan_config, "--plan", plan, "--count", args.count,
                 "--threads", 2, "--cache-dir", cache, "--predictions", predictions_path, "--json"])
            simulated = np.load(predictions_path)
            row = {"model": model, "plan": plan_name, "samples": len(labels),
                   "opset": onnx.load(str(exported)).opset_import[0].version,
                   "bitplan_top1": float((simulated == labels).mean() * 100)}
            # ort: default optimizations on the --uint8-weights export (what the targets are
            # for); ort_s8: the same on the int8-weight export, whose fused u8s8 kernels
            # saturate on x86 CPUs without VNNI; ort_reference: no optimizations, every
            # QuantizeLinear/DequantizeLinear as ONNX defines it (the export's own check).
            for mode, path, optimized in (("ort", exported_u8, True), ("ort_s8", exported, True),
                                          ("ort_reference", exported, False)):
                predicted = ort_predictions(ort_session(path, optimized), inputs)
                np.save(mwork / f"{plan_name}.{mode}.npy", predicted)
                row[f"{mode}_top1"] = float((predicted == labels).mean() * 100)
                row[f"{mode}_agreement"] = float((predicted == simulated).mean() * 100)
                row[f"{mode}_differing_samples"] = int((predicted != simulated).sum())
                better = int(((predicted == labels) & (simulated != labels)).sum())
                worse = int(((predicted != labels) & (simulated == labels)).sum())
                row[f"{mode}_flips_better_worse"] = [better, worse]
                row[f"{mode}_sign_test_p"] = sign_test_p(better, worse)
            if args.dump_tensors and plan_name == "W8A8" and model in LAYER_CHECKED:
                row["layers"] = layer_check(args, config, cache, mwork, exported)
                if row["layers"]["problems"]:
                    failures.append(f"{model} W8A8 layers: " + "; ".join(row["layers"]["problems"][:3]))
            results.append(row)
            verdict = "ok"
            for mode in ("ort", "ort_reference"):
                gap = abs(row[f"{mode}_top1"] - row["bitplan_top1"])
                lopsided = row[f"{mode}_sign_test_p"] < FLOOR_SIGN_P
                if (gap > FLOOR_GAP_PT + 1e-9 and lopsided) or row[f"{mode}_agreement"] < FLOOR_AGREEMENT:
                    verdict = "FAIL"
                    failures.append(f"{model} {plan_name} ({mode})")
                elif (gap > TARGET_GAP_PT + 1e-9 or row[f"{mode}_agreement"] < TARGET_AGREEMENT) and verdict == "ok":
                    verdict = "target missed (see docs/export.md)"
            print(f"{model:20s} {plan_name:10s} opset {row['opset']}: bitplan {row['bitplan_top1']:.2f}%  "
                  f"ORT {row['ort_top1']:.2f}% (agreement {row['ort_agreement']:.2f}%)  "
                  f"ORT int8 weights {row['ort_s8_top1']:.2f}% (agreement {row['ort_s8_agreement']:.2f}%)  "
                  f"ORT unoptimized {row['ort_reference_top1']:.2f}% "
                  f"(agreement {row['ort_reference_agreement']:.2f}%, "
                  f"{row['ort_reference_differing_samples']} samples differ)  {verdict}")
        if args.latency:
            row = {"model": model, "plan": "latency_ms"}
            for label, path in (("fp32", SOURCE / f"models/{model}.onnx"), ("int8", mwork / "W8A8.u8.onnx"),
                                ("int8_s8", mwork / "W8A8.onnx")):
                session = ort_session(path, True)
                for batch in (1, 64):
                    row[f"{label}_b{batch}"] = latency_ms(session, inputs, batch, 200 if batch == 1 else 30)
            results.append(row)
            print(f"{model:20s} latency (ms, 2 threads, median): fp32 b1 {row['fp32_b1']:.3f} b64 "
                  f"{row['fp32_b64']:.2f} | W8A8 u8 weights b1 {row['int8_b1']:.3f} b64 {row['int8_b64']:.2f}"
                  f" | W8A8 s8 weights b1 {row['int8_s8_b1']:.3f} b64 {row['int8_s8_b64']:.2f}")
    for s in skipped:
        print(f"skipped {s}")
    if args.report:
        Path(args.report).write_text(json.dumps(results, indent=2) + "\n")
    if not results:
        skip("no fixture dataset present: " + "; ".join(skipped))
    if failures:
        print("FAILED: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
