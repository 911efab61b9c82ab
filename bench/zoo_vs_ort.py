#!/usr/bin/env python3
"""bitplan's fp32 executor vs ONNX Runtime on the zoo models (tools/fetch_models.py): parity
of the outputs and speed, same threads, same batch and sequence, in one run.

Parity: the inputs tools/fetch_models.py recorded under models/zoo/ref/ go through
bench_fp32 --output and through ONNX Runtime here; printed: the largest absolute error, the
largest error relative to the output's largest magnitude, and the model's own check (CNNs:
top-1 agreement; sentence encoder: worst embedding cosine; LLM: perplexity of the recorded
windows from each runtime's logits).
Speed: batch 1 and 32 (sequence 128 for the transformers), ROUNDS rounds that alternate
bench_fp32 and ONNX Runtime for SECONDS each (so a busy machine slows both alike); the
figure is the median of each side's per-round medians, and the ratio bitplan / ORT
(< 1: bitplan faster).

  .venv-zoo/bin/python bench/zoo_vs_ort.py [--build build] [--threads 2] [--seconds 3]
      [--rounds 2] [--models mobilenet_v2,...] [--batches 1,32] [--json out.json]
(.venv-zoo is the venv tools/fetch_models.py makes; it has onnxruntime and numpy.)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "models" / "zoo"
# model -> (kind, sequence length for the speed runs or None)
MODELS = {
    "mobilenet_v2": ("cnn", None),
    "efficientnet_lite0": ("cnn", None),
    "minilm_l6": ("encoder", 128),
    "smollm2_135m": ("llm", 128),
}


def ort_session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ref_inputs(model):
    """The recorded parity inputs: {input name: array}, from <model>_inputs_<name>.npy."""
    prefix = f"{model}_inputs_"
    return {f.stem[len(prefix):]: np.load(f) for f in sorted((ZOO / "ref").glob(prefix + "*.npy"))}


def bitplan_run(build, model_path, batch, threads, seconds, input_files, output=None):
    cmd = [str(build / "bench" / "bench_fp32"), str(model_path), str(batch), str(threads), str(seconds)]
    for name, file in input_files.items():
        cmd += ["--input", f"{name}={file}"]
    if output:
        cmd += ["--output", str(output)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ort_median_ms(session, feed, seconds):
    for _ in range(2):
        session.run(None, feed)
    times = []
    end = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < end:
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def perplexity(logits, ids):
    """exp(mean NLL of token t+1 given the logits at t), over every window."""
    lp = log_softmax(logits[:, :-1].astype(np.float64))
    nll = -np.take_along_axis(lp, ids[:, 1:, None], axis=-1)
    return float(np.exp(nll.mean()))


def parity(kind, ours, theirs, inputs):
    ours, theirs = ours.astype(np.float64), theirs.astype(np.float64)
    result = {"max_abs_err": float(np.abs(ours - theirs).max()),
              "max_rel_err": float(np.abs(ours - theirs).max() / np.abs(theirs).max())}
    if kind == "cnn":
        result["top1_agreement"] = float((ours.argmax(1) == theirs.argmax(1)).mean())
    elif kind == "encoder":
        cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
        result["worst_cosine"] = float(cos.min())
    else:
        ids = inputs["input_ids"]
        result["perplexity_bitplan"] = perplexity(ours, ids)
        result["perplexity_ort"] = perplexity(theirs, ids)
    return result


def speed_inputs(kind, session, batch, seq, recorded, work):
    """Inputs for the speed runs: float images are noise; token inputs repeat the recorded
    rows (tiled to `seq` tokens) so the attention mask and ids are real ones."""
    feed, files = {}, {}
    for meta in session.get_inputs():
        if kind == "cnn":
            shape = [batch] + [d for d in meta.shape[1:]]
            feed[meta.name] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        else:
            rows = recorded[meta.name]
            reps = -(-seq // rows.shape[1])
            tiled = np.tile(rows, (-(-batch // rows.shape[0]), reps))[:batch, :seq]
            if meta.name == "attention_mask":
                tiled = np.ones_like(tiled)
            feed[meta.name] = np.ascontiguousarray(tiled)
        files[meta.name] = work / f"{meta.name}_{batch}.npy"
        np.save(files[meta.name], feed[meta.name])
    return feed, files


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=str(REPO / "build"))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()
    build = Path(args.build)
    results = []
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, {args.rounds} interleaved rounds of {args.seconds} s")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model in args.models.split(","):
            kind, seq = MODELS[model]
            path = ZOO / f"{model}.onnx"
            if not path.exists():
                print(f"{model}: skipped, {path} absent (run tools/fetch_models.py)")
                continue
            session = ort_session(path, args.threads)
            recorded = ref_inputs(model)
            files = {}
            for name, array in recorded.items():
                files[name] = work / f"ref_{name}.npy"
                np.save(files[name], array)
            rows = next(iter(recorded.values())).shape[0]
            ours_file = work / "ours.npy"
            bitplan_run(build, path, rows, args.threads, 0, files, ours_file)
            theirs = session.run(None, recorded)[0]
            row = {"model": model, "parity": parity(kind, np.load(ours_file), theirs, recorded), "speed": []}
            print(f"{model}: parity on {rows} recorded samples: " +
                  ", ".join(f"{k} {v:.3g}" for k, v in row["parity"].items()))
            for batch in (int(b) for b in args.batches.split(",")):
                feed, feed_files = speed_inputs(kind, session, batch, seq, recorded, work)
                ours_ms, theirs_ms = [], []
                for _ in range(args.rounds):
                    ours_ms.append(bitplan_run(build, path, batch, args.threads, args.seconds, feed_files)["median_ms"])
                    theirs_ms.append(ort_median_ms(session, feed, args.seconds))
                entry = {"batch": batch, "seq": seq, "bitplan_ms": float(np.median(ours_ms)),
                         "ort_ms": float(np.median(theirs_ms))}
                entry["ratio"] = entry["bitplan_ms"] / entry["ort_ms"]
                row["speed"].append(entry)
                print(f"  batch {batch:>3}{f' seq {seq}' if seq else ''}: bitplan {entry['bitplan_ms']:9.2f} ms, "
                      f"ORT {entry['ort_ms']:9.2f} ms, ratio {entry['ratio']:.2f}")
            results.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
