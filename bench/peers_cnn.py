#!/usr/bin/env python3
"""The peers' static INT8 post-training quantization on the zoo CNNs (ImageNet MobileNetV2 and
EfficientNet-Lite0), next to bitplan's (issue 13: "the same models through the peers'
methods where they run here, one table"; issue 12: "ONNX Runtime quantize_static (QDQ,
per-channel; MinMax/Entropy/Percentile), NNCF nncf.quantize").

What it measures. Each model of configs/zoo_<model>.yaml goes through:
  * ONNX Runtime quantize_static: QDQ, int8 per-channel weights, uint8 per-tensor activations,
    ORT's default op set, calibrated by MinMax, Entropy and Percentile (ORT's defaults for each);
  * NNCF nncf.quantize (ONNX backend, preset PERFORMANCE: int8 symmetric per-channel weights
    and symmetric 8-bit activations; preset MIXED: asymmetric activations), with and without
    its fast bias correction.
bitplan runs `bitplan evaluate --config configs/zoo_<model>.yaml --count 200 --plan P --json
--cache-dir DIR` for W8A8 (int8 per-channel weights, uint8 per-tensor activations) with its
minmax, percentile, entropy and mse calibrations, and W8A8:bc (empirical bias correction),
and reads quantized.top1_agreement / kl_divergence (judged against its own fp32 executor,
which agrees with ONNX Runtime's fp32 to 1e-6, docs/performance.md).
Data: the peers see exactly bitplan's floats. bitplan_interop_dump_samples (tests/interop)
writes the config's validation selection (CIFAR-10 test images resized to 224 px, 200 of them,
seed 7, as `--count 200`) and its calibration selection (256 images of the separate
calibration split, seed 1) after bitplan's own decoding and normalisation. The figures are
top-1 agreement with the fp32 model and mean KL(fp32 || q) over the 1000 classes (nats), the
peers' models run in ONNX Runtime against ONNX Runtime's fp32 model. "quant s" is the wall
time of the peer's quantization call. "ORT ms" is each model's latency in ONNX Runtime at
batch 1 (median over --seconds of runs on rotating evaluation images, after the fidelity run;
fp32 for reference), so accuracy and deployment speed sit side by side.
bitplan's plans are also exported (`bitplan export --format onnx-qdq`, the same calibration)
and run in ONNX Runtime: their agreement / KL there, against ORT's fp32, and their ORT latency
(the "exported" rows); the simulated figures are bitplan's own executor's.

Run (from the repository root, the venv of bench/peers_requirements.txt, the release build):
  .venv-peers/bin/python bench/peers_cnn.py --threads 2 [--models mobilenet_v2,efficientnet_lite0]
      [--json out.json] [--only ort,nncf,bitplan] [--cache-dir /work/bpcache-zoo] [--seconds 2]
Exit 77 (skip) when a model or the CIFAR-10 images (../shared/data/cifar10) are missing.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_common import ort_session, refusal  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "models" / "zoo"
COUNT = 200


def softmax_log(z):
    import numpy as np
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fidelity(ref_logits, logits):
    """(top-1 agreement, mean KL(ref || q)) as executor/metrics.cpp computes them."""
    import numpy as np
    agree = float((ref_logits.argmax(1) == logits.argmax(1)).mean())
    lp, lq = softmax_log(ref_logits), softmax_log(logits)
    kl = float((np.exp(lp) * (lp - lq)).sum(1).mean())
    return agree, kl


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    ap.add_argument("--json", help="write the rows here as JSON")
    ap.add_argument("--only", default="ort,nncf,bitplan")
    ap.add_argument("--bitplan", default="build/cli/bitplan")
    ap.add_argument("--dump", default="build/tests/interop/bitplan_interop_dump_samples")
    ap.add_argument("--cache-dir", default="/work/bpcache-zoo")
    ap.add_argument("--seconds", type=float, default=2.0, help="ORT timing per model")
    args = ap.parse_args()
    models = args.models.split(",")
    for m in models:
        for f in [ZOO / f"{m}.onnx", REPO / f"configs/zoo_{m}.yaml"]:
            if not f.is_file():
                print(f"peers_cnn: {f.relative_to(REPO)} is missing (tools/fetch_models.py); "
                      "skipped", file=sys.stderr)
                sys.exit(77)
    if not (REPO.parent / "shared" / "data" / "cifar10" / "test").is_dir():
        print("peers_cnn: ../shared/data/cifar10 is missing; skipped", file=sys.stderr)
        sys.exit(77)
    for exe in (args.dump, args.bitplan):
        if not (REPO / exe).is_file():
            sys.exit(f"peers_cnn: {exe} is not built (cmake --build --preset release)")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import numpy as np
    import onnx
    import onnxruntime as ort
    import yaml
    ort.set_default_logger_severity(3)
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="peers_cnn."))
    versions = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
                "python": sys.version.split()[0]}

    def session(path):
        return ort_session(path, args.threads)

    def logits_of(path, x):
        s = session(path)
        name = s.get_inputs()[0].name
        return np.concatenate([s.run(None, {name: x[i:i + 32]})[0] for i in range(0, len(x), 32)])

    def ort_ms(path, x):
        """Median batch-1 latency in ONNX Runtime over `args.seconds`, rotating the images."""
        s = session(path)
        name = s.get_inputs()[0].name
        for i in range(3):
            s.run(None, {name: x[i:i + 1]})
        times, end = [], time.perf_counter() + args.seconds
        while len(times) < 10 or time.perf_counter() < end:
            i = len(times) % len(x)
            t0 = time.perf_counter()
            s.run(None, {name: x[i:i + 1]})
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times))

    def dump(config, count, out):
        subprocess.run([str(REPO / args.dump), str(config), str(count), str(out),
                        str(out.with_suffix(".labels.npy"))], check=True, cwd=REPO)
        return np.load(out)

    all_rows = {}
    for m in models:
        config = REPO / f"configs/zoo_{m}.yaml"
        model = ZOO / f"{m}.onnx"
        x = dump(config, COUNT, work / f"{m}_eval.npy")
        # The calibration selection, dumped as a validation selection of the calibration split
        # (paths made absolute: the copy lives elsewhere).
        cfg = yaml.safe_load(config.read_text())
        ds = cfg["dataset"]
        cal = ds["calibration"]
        ds["images"] = str((config.parent / cal["images"]).resolve())
        ds["validation"] = {"count": cal["count"], "seed": cal["seed"]}
        cfg["model"] = str(model)
        cal_config = work / f"{m}_calib.yaml"
        cal_config.write_text(yaml.safe_dump(cfg))
        calib = dump(cal_config, cal["count"], work / f"{m}_calib.npy")
        input_name = session(model).get_inputs()[0].name
        ref = logits_of(model, x)
        fp32_ms = ort_ms(model, x)
        print(f"# {m}: {len(x)} evaluation and {len(calib)} calibration images; ORT fp32 "
              f"{fp32_ms:.2f} ms at batch 1", file=sys.stderr)
        rows = []

        def add(peer, method, plan, fn):
            print(f"# {m} {peer}: {method} ...", file=sys.stderr, flush=True)
            row = {"peer": peer, "method": method, "plan": plan, "agreement": None, "kl": None,
                   "quant_seconds": None, "ort_ms": None, "note": ""}
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    t0 = time.perf_counter()
                    path = fn()
                    row["quant_seconds"] = time.perf_counter() - t0
                row["agreement"], row["kl"] = fidelity(ref, logits_of(path, x))
                row["ort_ms"] = ort_ms(path, x)
                print(f"#   agreement {row['agreement']:.3f}, KL {row['kl']:.4f}, ORT "
                      f"{row['ort_ms']:.2f} ms", file=sys.stderr)
            except Exception as e:  # a refusal or a failure is a result
                row["note"] = refusal(e)
            rows.append(row)

        if "ort" in only:
            from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                                  QuantFormat, QuantType, quantize_static)
            from onnxruntime.quantization.shape_inference import quant_pre_process

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.it = iter(range(0, len(calib), 32))

                def get_next(self):
                    i = next(self.it, None)
                    return None if i is None else {input_name: calib[i:i + 32]}

                def rewind(self):
                    self.it = iter(range(0, len(calib), 32))

            pre = work / f"{m}_pre.onnx"
            quant_pre_process(str(model), str(pre))  # ORT's recommended pre-processing

            for method in (CalibrationMethod.MinMax, CalibrationMethod.Entropy,
                           CalibrationMethod.Percentile):
                def fn(method=method):
                    out = work / f"{m}_ort_{method.name}.onnx"
                    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                                    per_channel=True, activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QInt8, calibrate_method=method)
                    return out
                plan = {"MinMax": "W8A8", "Entropy": "W8A8 (entropy)",
                        "Percentile": "W8A8 (percentile)"}[method.name]
                add("ORT quantize_static", f"QDQ per-channel, {method.name}", plan, fn)

        if "nncf" in only:
            import nncf
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
            from nncf.quantization.range_estimator import RangeEstimatorParametersSet
            versions["nncf"] = nncf.__version__
            proto = onnx.load(str(model))
            dataset = nncf.Dataset([{input_name: calib[i:i + 1]} for i in range(len(calib))])
            for preset in (nncf.QuantizationPreset.PERFORMANCE, nncf.QuantizationPreset.MIXED):
                for bc in (False, True):
                    def fn(preset=preset, bc=bc):
                        adv = AdvancedQuantizationParameters(
                            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
                            disable_bias_correction=not bc)
                        q = nncf.quantize(proto, dataset, preset=preset, subset_size=len(calib),
                                          fast_bias_correction=True, advanced_parameters=adv)
                        out = work / f"{m}_nncf_{preset.name}_{bc}.onnx"
                        onnx.save(q, str(out))
                        return out
                    add("NNCF quantize", f"preset {preset.name.lower()}, MinMax"
                        + (" + fast bias correction" if bc else ""),
                        ("W8A8:bc" if bc else "W8A8") if preset.name == "MIXED" else "", fn)

        bitplan_rows = []
        if "bitplan" in only:
            for plan, extra in [("W8A8", []), ("W8A8 (percentile)", ["--calibration", "percentile"]),
                                ("W8A8 (entropy)", ["--calibration", "entropy"]),
                                ("W8A8 (mse)", ["--calibration", "mse"]), ("W8A8:bc", [])]:
                cmd = [str(REPO / args.bitplan), "evaluate", "--config", str(config), "--count",
                       str(COUNT), "--plan", plan.split()[0], "--threads", str(args.threads),
                       "--json", "--cache-dir", args.cache_dir, *extra]
                print(f"# {m} bitplan: {plan} ...", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                row = {"peer": "bitplan", "method": plan, "plan": plan, "agreement": None,
                       "kl": None, "quant_seconds": time.perf_counter() - t0, "note": ""}
                if done.returncode != 0:
                    row["note"] = f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
                else:
                    q = json.loads(done.stdout)["quantized"]
                    row["agreement"], row["kl"] = q["top1_agreement"], q["kl_divergence"]
                    row["note"] = "wall time of the whole evaluate command (fp32 + plan runs)"
                print(f"#   {row['agreement']} {row['kl']} {row['note']}", file=sys.stderr)
                bitplan_rows.append(row)

                def exported(plan=plan, extra=extra):
                    out = work / f"{m}_bitplan_{plan.split()[0].replace(':', '_')}_{len(extra)}.onnx"
                    cmd = [str(REPO / args.bitplan), "export", "--config", str(config), "--plan",
                           plan.split()[0], "--format", "onnx-qdq", "--output", str(out), "--force",
                           "--cache-dir", args.cache_dir, *extra]
                    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                    if done.returncode != 0:
                        raise RuntimeError(f"bitplan export exit {done.returncode}: "
                                           f"{done.stderr.strip()[-200:]}")
                    return out
                add("bitplan export -> ORT", f"`{plan}` as ONNX QDQ", plan, exported)
        all_rows[m] = {"peers": rows, "bitplan": bitplan_rows, "ort_fp32_ms": fp32_ms}

        def fmt(v, digits=3):
            return "—" if v is None else f"{v:.{digits}f}"

        bp = {r["plan"]: r for r in bitplan_rows}
        print(f"\n{m}: {COUNT} CIFAR-10 test images at 224 px, top-1 agreement / KL to fp32; "
              f"ONNX Runtime {versions['onnxruntime']}, {args.threads} threads\n")
        print(f"ONNX Runtime fp32 at batch 1: {fp32_ms:.2f} ms\n")
        print("| peer | method | agreement / KL | quant s | ORT ms (x fp32) | bitplan plan | "
              "bitplan agreement / KL (simulated) |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            b = bp.get(r["plan"])
            bcol = f"{fmt(b['agreement'])} / {fmt(b['kl'], 4)}" if b else ""
            res = f"{fmt(r['agreement'])} / {fmt(r['kl'], 4)}" if r["agreement"] is not None \
                else r["note"]
            speed = f"{fmt(r['ort_ms'], 2)} ({fp32_ms / r['ort_ms']:.2f}x)" if r["ort_ms"] else "—"
            print(f"| {r['peer']} | {r['method']} | {res} | {fmt(r['quant_seconds'], 1)} | "
                  f"{speed} | {r['plan']} | {bcol} |")
        for b in bitplan_rows:
            res = f"{fmt(b['agreement'])} / {fmt(b['kl'], 4)}" if b["agreement"] is not None \
                else b["note"]
            print(f"| bitplan | `{b['method']}` | {res} | {fmt(b['quant_seconds'], 1)} | — | "
                  f"{b['plan']} | (simulated) |")
    print("\nversions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions, "threads": args.threads, "count": COUNT,
                       "models": all_rows}, f, indent=1)
    for p in work.glob("*"):
        p.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
