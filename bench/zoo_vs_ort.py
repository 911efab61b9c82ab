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
--int8: the quantized paths, interleaved the same way; each side's int8 time is also given over
its own fp32 time.
  CNNs: bitplan's real integer path (bench_quant with configs/zoo_<model>_imagenet20.yaml,
  W8A8 where the CPU has VNNI, else W7A8) against ONNX Runtime's quantize_static model (QDQ,
  per-channel int8 weights, uint8 activations, MinMax calibrated on the 20 ImageNet images),
  batch 1 and 32.
  Transformers: on the config's own samples at sequence 128 (configs/zoo_<model>.yaml:
  SmolLM2's enwiki windows hold 128 tokens; MiniLM's polarity sentences 65, zero-padded to 128
  on both sides as a tokenizer pads to a fixed length, bench_quant --sequence 128; four
  rotating batches on both sides, as bench_quant takes them), bitplan's static W8A8 (W7A8
  without VNNI: oneDNN int8, activations calibrated per tensor), W8A8t (its W8A8 kernel: int8
  weights, activations quantized per token at run time; AVX-512 VNNI only) and W4g32A8t (its
  4-bit kernel with the same activations) against ONNX Runtime's quantize_dynamic (per-channel int8 weights, uint8
  activations quantized per call: the INT8 recipe ORT documents for transformers) and its
  quantize_static QDQ of the MatMuls with a constant weight (per channel, MinMax on the
  config's calibration samples). LLM batches are capped at the 16 windows' 4.
--baseline-build DIR: a second build's bench_fp32 (say, of the commit before a change) runs in
the same rounds, between bitplan and ORT, for a before/after comparison on a shared machine.

  .venv-zoo/bin/python bench/zoo_vs_ort.py [--build build] [--threads 2] [--seconds 3]
      [--rounds 2] [--models mobilenet_v2,...] [--batches 1,32] [--int8] [--json out.json]
      [--baseline-build DIR]
(.venv-zoo is the venv tools/fetch_models.py makes; it has onnxruntime and numpy.)
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ort.set_default_logger_severity(3)  # errors only: quantize_static's graph warnings are noise here

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


def bench_json(cmd):
    """Runs a bench/ program and returns the JSON object of its last stdout line."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bitplan_run(build, model_path, batch, threads, seconds, input_files, output=None):
    cmd = [str(build / "bench" / "bench_fp32"), str(model_path), str(batch), str(threads), str(seconds)]
    for name, file in input_files.items():
        cmd += ["--input", f"{name}={file}"]
    if output:
        cmd += ["--output", str(output)]
    return bench_json(cmd)


def ort_median_ms(session, feeds, seconds):
    """Median ms of `session` over `seconds` of runs (at least 5), rotating `feeds` (a feed or
    a list of them), after two warm runs."""
    feeds = feeds if isinstance(feeds, list) else [feeds]
    for feed in (feeds * 2)[:2]:
        session.run(None, feed)
    times = []
    end = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < end:
        start = time.perf_counter()
        session.run(None, feeds[len(times) % len(feeds)])
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


def cpu_has_vnni():
    flags = Path("/proc/cpuinfo").read_text()
    return " avx512_vnni" in flags or " avx_vnni" in flags


def ort_int8_model(path, work):
    """ONNX Runtime's static INT8 of `path`: QDQ, per-channel weights, MinMax on imagenet20."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    images = np.load(ZOO / "data" / "imagenet20_images.npy").astype(np.float32) / 255.0
    mean, std = ((0.498,) * 3, (0.502,) * 3) if "efficientnet" in path.name else (
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    images = (images - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(images[i:i + 1] for i in range(len(images)))

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {"input": row}

    out = work / f"{path.stem}_ort_int8.onnx"
    quantize_static(str(path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def bench_quant_row(build, config, plan, batch, threads, seconds, sequence=None):
    cmd = [str(build / "bench" / "bench_quant"), str(config), plan, str(batch), str(threads), str(seconds)]
    if sequence:
        cmd += ["--sequence", str(sequence)]
    return bench_json(cmd)


def config_arrays(config, section):
    """The named input arrays of a zoo config's dataset (section "inputs") or its calibration."""
    import yaml

    text = yaml.safe_load(config.read_text())["dataset"]
    files = text["inputs"] if section == "inputs" else text["calibration"]["inputs"]
    return {name: np.load((config.parent / file).resolve()) for name, file in files.items()}


def ort_transformer_int8_models(path, config, work):
    """ONNX Runtime's quantize_dynamic and quantize_static (QDQ) models of a transformer, both
    restricted to the MatMuls with a constant weight (bitplan's quantized layers)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    logging.getLogger().setLevel(logging.ERROR)  # quantize_*'s advice on pre-processing
    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    matmuls = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in constants]
    dynamic = work / f"{path.stem}_ort_dynamic.onnx"
    quantize_dynamic(str(path), str(dynamic), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_quantize=matmuls)
    calibration = config_arrays(config, "calibration")
    rows = next(iter(calibration.values())).shape[0]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(range(min(rows, 32)))

        def get_next(self):
            i = next(self.rows, None)
            return None if i is None else {k: v[i:i + 1] for k, v in calibration.items()}

    static = work / f"{path.stem}_ort_static.onnx"
    quantize_static(str(path), str(static), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=matmuls,
                    extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]})
    return {"ORT dynamic": dynamic, "ORT static QDQ": static}


def transformer_int8_rows(build, model, path, threads, seconds, rounds, batches, work):
    config = REPO / "configs" / f"zoo_{model}.yaml"
    plans = ["W8A8", "W8A8t", "W4g32A8t"] if cpu_has_vnni() else ["W7A8", "W4g32A8t"]
    fp32_session = ort_session(path, threads)
    sessions = {name: ort_session(file, threads)
                for name, file in ort_transformer_int8_models(path, config, work).items()}
    seq = MODELS[model][1]
    samples = {k: np.pad(v[:, :seq], ((0, 0), (0, seq - min(seq, v.shape[1]))))
               for k, v in config_arrays(config, "inputs").items()}
    count = next(iter(samples.values())).shape[0]
    rows = []
    for batch in batches:
        if MODELS[model][0] == "llm":
            batch = min(batch, 4)
        feeds = [{k: v[[(s * batch + i) % count for i in range(batch)]] for k, v in samples.items()}
                 for s in range(4)]
        ours = {plan: [] for plan in plans}
        theirs = {name: [] for name in ["ORT fp32", *sessions]}
        for _ in range(rounds):
            for plan in plans:
                ours[plan].append(bench_quant_row(build, config, plan, batch, threads, seconds, seq))
            for name, session in [("ORT fp32", fp32_session), *sessions.items()]:
                theirs[name].append(ort_median_ms(session, feeds, seconds))
        entry = {"batch": batch, "sequence": int(next(iter(samples.values())).shape[1]),
                 "bitplan_fp32_ms": float(np.median([o["fp32_ms"] for o in ours[plans[0]]]))}
        for plan in plans:
            entry[f"bitplan {plan}_ms"] = float(np.median([o["int8_ms"] for o in ours[plan]]))
            entry[f"bitplan {plan}_simulated_layers"] = ours[plan][-1]["simulated_layers"]
        for name, times in theirs.items():
            entry[f"{name}_ms"] = float(np.median(times))
        best_ort = min(entry["ORT dynamic_ms"], entry["ORT static QDQ_ms"])
        rows.append(entry)
        print(f"  int8 batch {batch:>3} seq {entry['sequence']}: bitplan fp32 {entry['bitplan_fp32_ms']:.2f}, " +
              ", ".join(f"{plan} {entry[f'bitplan {plan}_ms']:.2f} ms ({entry['bitplan_fp32_ms'] / entry[f'bitplan {plan}_ms']:.2f}x; "
                        f"{entry[f'bitplan {plan}_simulated_layers']} layers simulated; "
                        f"ratio to ORT's best int8 {entry[f'bitplan {plan}_ms'] / best_ort:.2f})" for plan in plans) +
              "; " + ", ".join(f"{name} {entry[f'{name}_ms']:.2f} ms" for name in theirs))
    return rows


def int8_rows(build, model, path, threads, seconds, rounds, batches, work):
    config = REPO / "configs" / f"zoo_{model}_imagenet20.yaml"
    plan = "W8A8" if cpu_has_vnni() else "W7A8"
    fp32_session = ort_session(path, threads)
    int8_session = ort_session(ort_int8_model(path, work), threads)
    rows = []
    for batch in batches:
        feed = {"input": np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)}
        ours, theirs, theirs_fp32 = [], [], []
        for _ in range(rounds):
            ours.append(bench_quant_row(build, config, plan, batch, threads, seconds))
            theirs.append(ort_median_ms(int8_session, feed, seconds))
            theirs_fp32.append(ort_median_ms(fp32_session, feed, seconds))
        entry = {"batch": batch, "plan": plan,
                 "bitplan_int8_ms": float(np.median([o["int8_ms"] for o in ours])),
                 "bitplan_fp32_ms": float(np.median([o["fp32_ms"] for o in ours])),
                 "ort_int8_ms": float(np.median(theirs)), "ort_fp32_ms": float(np.median(theirs_fp32))}
        entry["ratio"] = entry["bitplan_int8_ms"] / entry["ort_int8_ms"]
        rows.append(entry)
        print(f"  int8 batch {batch:>3}: bitplan {plan} {entry['bitplan_int8_ms']:9.2f} ms "
              f"({entry['bitplan_fp32_ms'] / entry['bitplan_int8_ms']:.2f}x its fp32), ORT QDQ "
              f"{entry['ort_int8_ms']:9.2f} ms ({entry['ort_fp32_ms'] / entry['ort_int8_ms']:.2f}x its fp32), "
              f"ratio {entry['ratio']:.2f}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=str(REPO / "build"))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--int8", action="store_true", help="also the INT8 paths (see above)")
    parser.add_argument("--json", default=None, help="write the results here too")
    parser.add_argument("--baseline-build", default=None,
                        help="another build whose bench_fp32 runs in the same rounds (before/after)")
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
                ours_ms, theirs_ms, baseline_ms = [], [], []
                for _ in range(args.rounds):
                    ours_ms.append(bitplan_run(build, path, batch, args.threads, args.seconds, feed_files)["median_ms"])
                    if args.baseline_build:
                        baseline_ms.append(bitplan_run(Path(args.baseline_build), path, batch, args.threads,
                                                       args.seconds, feed_files)["median_ms"])
                    theirs_ms.append(ort_median_ms(session, feed, args.seconds))
                entry = {"batch": batch, "seq": seq, "bitplan_ms": float(np.median(ours_ms)),
                         "ort_ms": float(np.median(theirs_ms))}
                entry["ratio"] = entry["bitplan_ms"] / entry["ort_ms"]
                baseline = ""
                if baseline_ms:
                    entry["baseline_ms"] = float(np.median(baseline_ms))
                    entry["baseline_ratio"] = entry["baseline_ms"] / entry["ort_ms"]
                    baseline = f" (baseline {entry['baseline_ms']:9.2f} ms, ratio {entry['baseline_ratio']:.2f})"
                row["speed"].append(entry)
                print(f"  batch {batch:>3}{f' seq {seq}' if seq else ''}: bitplan {entry['bitplan_ms']:9.2f} ms, "
                      f"ORT {entry['ort_ms']:9.2f} ms, ratio {entry['ratio']:.2f}{baseline}")
            if args.int8:
                rows_of = int8_rows if kind == "cnn" else transformer_int8_rows
                row["int8"] = rows_of(build, model, path, args.threads, args.seconds, args.rounds,
                                      [int(b) for b in args.batches.split(",")], work)
            results.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
