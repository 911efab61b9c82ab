#!/usr/bin/env python3
"""Whole-model validation of the CUDA cost model: predicted against measured latency.

Measured: `bitplan-cuda-profile --model-chain W.json --precisions P --chain-out M.json` on the
GPU (backends/cuda/standalone/run_on_gpu.sh, stage `models`): each workloads file's layers and
other ops (attention's products, softmax, norms, residual adds, ...) back to back on one
stream, every layer at one precision, replayed as one CUDA graph (a deployment's steady
state; chain results from before graphs were timed have the eager time only, used then). The
eager time (each step launched by the host) is printed beside it. Predicted: `bitplan cost --json` of the same model, batch
and uniform plan against a hardware profile holding the layers' and the ops' entries. Also
printed: the prediction of the layers (and conversions) alone, the model's time as profiles
without op entries saw it.

    python3 bench/cuda_model_validation.py --chains hw_profiles/h100_models.json \
        --profile hw_profiles/h100.yaml [--markdown]

Dev-time tool; the standard library only, and the bitplan binary.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The uniform plan (bitplan's shorthand) whose layers all run at a CUDA precision.
PLAN_OF_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8": "W8A8", "fp8_e4m3": "fp8"}


def input_shapes(model, workloads_path):
    """The --input-shape flags the workloads file was emitted with (docs/cuda_backend.md)."""
    if model.startswith("minilm"):
        return ["input_ids=N,128", "attention_mask=N,128"]
    if model.startswith("smollm2"):
        return ["input_ids=N,1" if "decode" in Path(workloads_path).name else "input_ids=N,128"]
    return []


def predicted_ms(bitplan, model_path, profile, batch, plan, shapes):
    command = [str(bitplan), "cost", "--model", str(model_path), "--target", str(profile),
               "--batch", str(batch), "--plan", plan, "--json"]
    for shape in shapes:
        command += ["--input-shape", shape]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cuda_model_validation: {' '.join(command)} failed: {done.stderr.strip()}")
    cost = json.loads(done.stdout)
    return cost["latency_ms"], cost["estimated_layers"]


def layers_only_profile(profile, folder):
    """The profile without op entries: what the cost model predicted before ops were profiled.
    (The CUDA profiler writes profiles as JSON text, which bitplan reads as YAML.)"""
    doc = json.loads(Path(profile).read_text())
    op_kinds = ("eltwise:", "reduce:", "rownorm:", "copy:", "bmm:")
    doc["entries"] = [e for e in doc["entries"] if not e["key"].startswith(op_kinds)]
    path = Path(folder) / "layers_only.yaml"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", required=True, help="--model-chain results JSON")
    parser.add_argument("--profile", required=True, help="hardware profile with op entries")
    parser.add_argument("--bitplan", default=ROOT / "build" / "cli" / "bitplan")
    parser.add_argument("--models", default=ROOT / "models" / "zoo", help="folder of the ONNX models")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()

    chains = json.loads(Path(args.chains).read_text())
    with tempfile.TemporaryDirectory() as folder:
        layers_only = layers_only_profile(args.profile, folder)
        rows = []
        for r in chains["results"]:
            if "model" not in r:
                continue  # a --chain plan, not a whole model
            name = f"{Path(r['workloads']).stem} {r['precision']}"
            if "unsupported" in r:
                rows.append((name, r["batch"], None, None, None, None, r["unsupported"], None))
                continue
            plan = PLAN_OF_PRECISION.get(r["precision"])
            if plan is None:
                continue
            shapes = input_shapes(r["model"], r["workloads"])
            model_path = Path(args.models) / r["model"]
            whole, estimated = predicted_ms(args.bitplan, model_path, args.profile, r["batch"], plan, shapes)
            alone, _ = predicted_ms(args.bitplan, model_path, layers_only, r["batch"], plan, shapes)
            eager = r["median_us"] / 1e3
            measured = r.get("graph_median_us", r["median_us"]) / 1e3
            note = f"{estimated} layers estimated" if estimated else ""
            if "graph_median_us" not in r:
                note += " eager (no graph time)"
            if r.get("ops_without_kernel"):
                note += f" {r['ops_without_kernel']} ops without a kernel (not run)"
            rows.append((name, r["batch"], measured, whole, alone, (whole / measured - 1) * 100, note,
                         eager))

    if args.markdown:
        print("| workload, precision | measured ms (graph) | predicted ms | error | eager ms | "
              "layers alone ms | note |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for name, _, measured, whole, alone, error, note, eager in rows:
            if measured is None:
                print(f"| {name} | | | | | | unsupported: {note} |")
            else:
                print(f"| {name} | {measured:.3f} | {whole:.3f} | {error:+.1f} % | {eager:.3f} | "
                      f"{alone:.3f} | {note} |")
    else:
        for name, _, measured, whole, alone, error, note, eager in rows:
            if measured is None:
                print(f"{name:45s} unsupported: {note}")
            else:
                print(f"{name:45s} measured {measured:8.3f} ms  predicted {whole:8.3f} ms  "
                      f"error {error:+6.1f} %  eager {eager:8.3f} ms  layers alone {alone:8.3f} ms  "
                      f"{note}")
    by_batch = {}
    for _, batch, measured, _, _, error, _, _ in rows:
        if measured is not None:
            by_batch.setdefault(batch, []).append(abs(error))
    for batch in sorted(by_batch):
        errors = by_batch[batch]
        print(f"batch {batch}: median |error| {statistics.median(errors):.1f} % over {len(errors)} "
              f"(model, precision) pairs, largest {max(errors):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
