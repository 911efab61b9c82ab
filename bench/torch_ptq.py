#!/usr/bin/python3
"""PyTorch's own INT8 static post-training quantization of a bitplan fixture model: the
peer that bitplan's W8A8 plans are compared against (accuracy and CPU latency).

    /usr/bin/python3 bench/torch_ptq.py --model NAME [--threads 2] [--calib 512]
        [--batch-sizes 1,64] [--seconds 2] [--engine x86|fbgemm|onednn]
        [--calib-seed 0] [--observer default|minmax] [--reduce-range]

Needs Debian's torch (/usr/bin/python3; torch 1.13). Prints ONE JSON line on stdout:
    {"model", "engine", "torch_version", "calibration_samples", "calibration_seed",
     "observer", "reduce_range_forced", "fp32_top1", "int8_top1",
     "top1_agreement_with_fp32", "test_samples",
     "latency": {"1": {"fp32_ms", "int8_ms", "speedup"}, "64": {...}}, "threads", "notes"}
and a one-line progress/engine message on stderr.

What it does, step by step
- Model: tools/fixture_models.build(NAME) with the weights bench/torch_peer.py loads
  (models/torch/NAME.pt; for the CIFAR ResNets the published .th under
  ../shared/models/cifar10-resnet when present), in eval mode.
- Data: the full test set in dataset order. Fashion-MNIST: the IDX files in
  /usr/share/datasets/fashion-mnist, x = (pixel/255 - 0.2860) / 0.3530. CIFAR-10: the JPEG
  folder ../shared/data/cifar10/test (class folders sorted, file names sorted, PIL RGB),
  x = (pixel/255 - mean) / std with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
  The readers are those of tools/train_fixtures.py (small local copies are used if that
  module cannot be imported).
- Engine: torch.backends.quantized.engine = --engine, by default the first of x86, fbgemm,
  onednn that this torch build supports (Debian's torch 1.13 is built without FBGEMM, so
  there it is 'onednn').
- Quantization: torch.ao.quantization FX graph mode static PTQ, prepare_fx / convert_fx
  with get_default_qconfig_mapping(engine) (and that engine's backend config where torch
  has one: x86, fbgemm; otherwise the native one). prepare_fx fuses Conv+BN(+ReLU) and
  Linear+ReLU. The engine defaults give per-channel symmetric int8 weights
  (PerChannelMinMaxObserver) and per-tensor affine uint8 activations: the counterpart of
  bitplan's W8A8 (int8/channel/sym weights, uint8/tensor/asym activations). One
  difference: the defaults calibrate activations with a HistogramObserver (range chosen
  to minimise the L2 quantization error), whereas bitplan's default calibration is
  min/max; --observer minmax swaps in MinMaxObserver with the engine's reduce_range for
  a like-for-like comparison. reduce_range: x86/fbgemm default to True (activations use
  7 of the 8 bits, to avoid int16 overflow in the u8*s8 kernels), onednn to False;
  --reduce-range forces it on. Ops the native backend has no quantized pattern for stay fp32
  between dequantize and quantize; the notes list them and the quantized
  modules/functions (ViT: Linear, LayerNorm, matmul, add, mul are quantized; softmax,
  GELU, F.pad and the q/k/v indexing run in fp32. CIFAR ResNets: the option-A shortcut's
  slicing and padding run in fp32).
- Calibration: the first --calib (default 512) test samples in dataset order, i.e. what
  bitplan's `calibration: {count: 512, seed: 0}` selects; --calib-seed S selects what
  `{count: N, seed: S}` selects (the same splitmix64 + Fisher-Yates permutation as
  bitplan's select_indices). All of them go through the prepared model in one batch.
  Note that the CIFAR folder order is class-major, so its first 512 test samples are all
  airplanes.
- Accuracy: top-1 of the fp32 model and of the converted int8 model on the full test
  set (batches of 500, torch.inference_mode()), and the fraction of samples where the two
  predictions agree.
- Diagnostic (a note, not a result): the int8 model's logits against the same quantized
  model simulated in fp32 (convert_to_reference_fx: quantize/dequantize around fp32 ops)
  on every 5th test sample; a large gap points at kernel effects (e.g. int16 saturation
  of u8*s8 products on CPUs without VNNI, since the onednn qconfig keeps reduce_range off).
- Latency: torch.set_num_threads(--threads), eval mode, torch.inference_mode(), a random
  float32 input [B, C, H, W] (torch.manual_seed(0)); for each batch size B, first the fp32
  model then the int8 model (whose forward includes the input quantize and the output
  dequantize): 3 warm-up runs, then runs until --seconds have passed and at least 5 runs
  were made; the median in ms. speedup = fp32_ms / int8_ms.
- Reading the numbers (Debian's torch 1.13.1): fp32 Linear/MatMul go through the
  reference (netlib) BLAS of that build, so the fp32 MLP/ViT baselines are slow and their
  speedups flatter int8; convolutions use oneDNN in both. Timings on a loaded 2-core
  machine are unreliable (OpenMP workers waiting whole scheduler ticks: medians snap to
  multiples of 4 ms); measure on a quiet machine.
- If FX tracing, prepare, convert or the int8 forward fails, int8_top1, the agreement and
  the int8 latencies are null and the notes give the error; nothing else (e.g. dynamic
  quantization) is substituted.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import statistics
import sys
import time
import traceback

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "bench"))
import fixture_models as fm  # noqa: E402
import peers_common  # noqa: E402
from torch_peer import load_model  # noqa: E402
import train_fixtures as tf  # noqa: E402

WARMUP = 3
MIN_RUNS = 5
EVAL_BATCH = 500
REFERENCE_STRIDE = 5
ENGINE_PREFERENCE = ("x86", "fbgemm", "onednn")

CIFAR_TEST_DIR = os.path.join(REPO, "..", "shared", "data", "cifar10", "test")


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def test_set(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The full test set of the model's dataset, preprocessed, in dataset order (the readers
    of tools/train_fixtures.py, which made the fixtures)."""
    if name.startswith("cifar10_"):
        if not os.path.isdir(CIFAR_TEST_DIR):
            sys.exit(f"torch_ptq: {CIFAR_TEST_DIR} is missing (the CIFAR-10 JPEG test folder)")
        x, y, _ = tf.cifar_test_tensors()
        return x, y
    return tf.fmnist_tensors("test")


def select_indices(count: int, seed: int, size: int) -> list[int]:
    """bitplan's calibration selection (bench/peers_common.py), with the count checked."""
    if not 0 < count <= size:
        raise ValueError(f"calibration count {count} must be in [1, {size}]")
    return peers_common.select_indices(count, seed, size)


# --------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------
def pick_engine(requested: str | None) -> str:
    supported = list(torch.backends.quantized.supported_engines)
    if requested is None:
        for engine in ENGINE_PREFERENCE:
            if engine in supported:
                return engine
        sys.exit(f"torch_ptq: none of {ENGINE_PREFERENCE} is supported by this torch "
                 f"(supported: {supported})")
    if requested not in supported:
        sys.exit(f"torch_ptq: engine '{requested}' is not supported by this torch build "
                 f"(supported: {supported})")
    return requested


def qconfig_mapping_for(engine: str, observer: str, reduce_range: bool):
    """get_default_qconfig_mapping(engine), optionally with its HistogramObserver
    activations replaced by MinMaxObserver (same dtype / qscheme) and/or with
    reduce_range forced on (7-bit activations). Fixed-qparams ops (softmax, sigmoid, ...)
    and the weight observers are left as they are."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver
    mapping = get_default_qconfig_mapping(engine)
    if observer == "default" and not reduce_range:
        return mapping

    def swap(qconfig):
        if qconfig is None:
            return None
        probe = qconfig.activation()
        if not isinstance(probe, HistogramObserver):
            return qconfig
        cls = MinMaxObserver if observer == "minmax" else HistogramObserver
        act = cls.with_args(dtype=probe.dtype, qscheme=probe.qscheme,
                            reduce_range=probe.reduce_range or reduce_range)
        return QConfig(activation=act, weight=qconfig.weight)

    mapping.global_qconfig = swap(mapping.global_qconfig)
    for key, qc in list(mapping.object_type_qconfigs.items()):
        mapping.object_type_qconfigs[key] = swap(qc)
    return mapping


def backend_config_for(engine: str):
    from torch.ao.quantization import backend_config as bc
    getter = {"x86": "get_x86_backend_config",
              "fbgemm": "get_fbgemm_backend_config"}.get(engine, "get_native_backend_config")
    if not hasattr(bc, getter):
        getter = "get_native_backend_config"
    return getter, getattr(bc, getter)()


def describe_observers(prepared: torch.nn.Module) -> str:
    from torch.ao.quantization.observer import ObserverBase
    kinds = collections.Counter()
    for mod in prepared.modules():
        if isinstance(mod, ObserverBase):
            extra = ""
            if hasattr(mod, "reduce_range"):
                extra = f"(dtype={str(mod.dtype).replace('torch.', '')}, " \
                        f"qscheme={str(mod.qscheme).replace('torch.', '')}, " \
                        f"reduce_range={mod.reduce_range})"
            kinds[type(mod).__name__ + extra] += 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items()))


def describe_converted(qmodel: torch.fx.GraphModule) -> tuple[str, str]:
    """(quantized modules/functions, ops fed by a dequantize = left in fp32)."""
    modules = dict(qmodel.named_modules())
    quantized = collections.Counter()
    float_ops = collections.Counter()
    for node in qmodel.graph.nodes:
        if node.op == "call_module":
            mod = modules[node.target]
            kind = type(mod).__module__ + "." + type(mod).__name__
            if ".quantized" in kind:
                quantized[type(mod).__name__] += 1
        elif node.op == "call_function":
            name = getattr(node.target, "__name__", str(node.target))
            if "quantized" in getattr(node.target, "__module__", "") or \
                    str(node.target).startswith("quantized."):
                quantized[name] += 1
        # an op whose input comes from a dequantize runs in fp32
        if node.op in ("call_function", "call_method", "call_module") and not (
                node.op == "call_method" and node.target == "dequantize"):
            fed_by_dq = any(isinstance(a, torch.fx.Node) and a.op == "call_method"
                            and a.target == "dequantize" for a in node.all_input_nodes)
            if fed_by_dq and node.target is not torch.quantize_per_tensor:
                if node.op == "call_module":
                    label = type(modules[node.target]).__name__
                else:
                    label = getattr(node.target, "__name__", str(node.target))
                float_ops[label] += 1
    fmt = lambda c: ", ".join(f"{k} x{v}" for k, v in sorted(c.items())) or "none"  # noqa: E731
    return fmt(quantized), fmt(float_ops)


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(x[i:i + EVAL_BATCH]).float().argmax(1)
                          for i in range(0, x.shape[0], EVAL_BATCH)])


def reference_check(qmodel, ref_model, x_test: torch.Tensor) -> str:
    """Compares the int8 kernels with the same quantized model simulated in fp32
    (convert_to_reference_fx: quantize/dequantize around fp32 ops) on every 5th test
    sample: a large gap would point at kernel effects such as int16 saturation."""
    x = x_test[::REFERENCE_STRIDE]
    with torch.inference_mode():
        q = torch.cat([qmodel(x[i:i + EVAL_BATCH]).float() for i in range(0, x.shape[0], EVAL_BATCH)])
        r = torch.cat([ref_model(x[i:i + EVAL_BATCH]).float()
                       for i in range(0, x.shape[0], EVAL_BATCH)])
    agree = float((q.argmax(1) == r.argmax(1)).float().mean())
    rel = float(((q - r).abs().amax(1) / r.abs().amax(1).clamp_min(1e-12)).max())
    return (f"int8 kernels vs fp32-simulated reference quantized model (convert_to_reference_fx)"
            f" on {x.shape[0]} test samples (every {REFERENCE_STRIDE}th): top-1 agreement "
            f"{agree:.4f}, worst per-sample max|dlogit|/max|logit| {rel:.3g}")


def median_ms(model: torch.nn.Module, x: torch.Tensor, seconds: float) -> float:
    times = []
    with torch.inference_mode():
        for _ in range(WARMUP):
            model(x)
        start = time.perf_counter()
        while len(times) < MIN_RUNS or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def reference_accuracy(name: str) -> float | None:
    path = os.path.join(REPO, "models", f"{name}.json")
    try:
        with open(path) as f:
            return float(json.load(f)["torch_test_accuracy"])
    except Exception:  # noqa: BLE001
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description="PyTorch INT8 static PTQ peer (one JSON line)")
    ap.add_argument("--model", required=True, choices=sorted(fm.MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib", type=int, default=512, help="calibration samples (default 512)")
    ap.add_argument("--calib-seed", type=int, default=0,
                    help="bitplan's calibration seed: 0 = dataset order (default)")
    ap.add_argument("--batch-sizes", default="1,64")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--engine", choices=("x86", "fbgemm", "onednn"), default=None,
                    help="default: the first of x86, fbgemm, onednn this torch supports")
    ap.add_argument("--observer", choices=("default", "minmax"), default="default",
                    help="activation observer: the engine's default (HistogramObserver) "
                         "or MinMaxObserver like bitplan's minmax calibration")
    ap.add_argument("--reduce-range", action="store_true",
                    help="force reduce_range=True (7-bit activation range) on the activation "
                         "observers, as the x86/fbgemm defaults have; avoids int16 "
                         "saturation in the onednn kernels on CPUs without VNNI")
    args = ap.parse_args()
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        ap.error("--batch-sizes must be a comma-separated list of integers")
    if not batch_sizes or min(batch_sizes) < 1 or args.threads < 1 or args.seconds < 0 \
            or args.calib < 1 or args.calib_seed < 0:
        ap.error("--batch-sizes, --threads and --calib must be >= 1, --seconds and "
                 "--calib-seed >= 0")

    notes: list[str] = []
    torch.set_num_threads(args.threads)
    engine = pick_engine(args.engine)
    torch.backends.quantized.engine = engine
    supported = list(torch.backends.quantized.supported_engines)
    notes.append(f"quantized engine '{engine}' "
                 f"({'requested' if args.engine else 'auto-selected'}); this torch supports "
                 f"{supported}")
    print(f"torch_ptq: {args.model}: quantized engine {engine} (supported {supported})",
          file=sys.stderr, flush=True)
    if engine == "onednn":
        flags = ""
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((l for l in f if l.startswith("flags")), "")
        except OSError:
            pass
        if flags and "avx512_vnni" not in flags and "avx_vnni" not in flags:
            notes.append("this CPU has no VNNI: oneDNN's int8 kernels sum pairs of u8*s8 "
                         "products in int16 (vpmaddubsw), which can saturate with full-range "
                         "activations; the onednn qconfig keeps reduce_range off (see the "
                         "reference check below, and --reduce-range)")

    model = load_model(args.model)
    published = fm.PUBLISHED_WEIGHTS.get(args.model)
    if published and os.path.isfile(os.path.join(REPO, published)):
        notes.append(f"weights: {published}")
    else:
        notes.append(f"weights: models/torch/{args.model}.pt")

    x_test, y_test = test_set(args.model)
    n_test = int(x_test.shape[0])
    calib_idx = select_indices(args.calib, args.calib_seed, n_test)
    x_calib = x_test[torch.tensor(calib_idx)]
    classes = torch.bincount(y_test[torch.tensor(calib_idx)], minlength=10)
    notes.append(f"calibration: test samples {calib_idx[0]}..{calib_idx[-1]}"
                 if args.calib_seed == 0 else
                 f"calibration: {args.calib} test samples chosen by seed {args.calib_seed}")
    notes.append(f"calibration samples per class: {classes.tolist()}")

    # fp32 accuracy
    fp32_pred = predict(model, x_test)
    fp32_top1 = float((fp32_pred == y_test).float().mean())
    ref = reference_accuracy(args.model)
    if ref is not None and abs(ref - fp32_top1) > 1e-4:
        notes.append(f"fp32_top1 {fp32_top1:.4f} differs from models/{args.model}.json "
                     f"torch_test_accuracy {ref:.4f}")

    # Static PTQ in FX graph mode
    qmodel = None
    int8_top1 = agreement = None
    stage = "prepare_fx"
    try:
        from torch.ao.quantization.quantize_fx import (convert_fx, convert_to_reference_fx,
                                                       prepare_fx)
        mapping = qconfig_mapping_for(engine, args.observer, args.reduce_range)
        bc_name, bc = backend_config_for(engine)
        notes.append(f"qconfig: get_default_qconfig_mapping('{engine}')"
                     + ("" if args.observer == "default"
                        else " with activation HistogramObserver -> MinMaxObserver")
                     + (" with activation reduce_range forced on" if args.reduce_range else "")
                     + f"; backend config: {bc_name}")
        prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, (x_calib[:1],),
                              backend_config=bc)
        notes.append("observers: " + describe_observers(prepared))
        stage = "calibration"
        with torch.no_grad():
            prepared(x_calib)
        try:
            ref_model = convert_to_reference_fx(copy.deepcopy(prepared),
                                                backend_config=bc).eval()
        except Exception as e:  # noqa: BLE001 (a diagnostic only)
            ref_model = None
            notes.append(f"convert_to_reference_fx failed: {type(e).__name__}: {e}")
        stage = "convert_fx"
        qmodel = convert_fx(prepared, backend_config=bc).eval()
        q_ops, f_ops = describe_converted(qmodel)
        notes.append("int8 modules/functions: " + q_ops)
        notes.append("ops left in fp32 (fed by a dequantize): " + f_ops)
        stage = "int8 forward"
        int8_pred = predict(qmodel, x_test)
        int8_top1 = float((int8_pred == y_test).float().mean())
        agreement = float((int8_pred == fp32_pred).float().mean())
        if ref_model is not None:
            try:
                notes.append(reference_check(qmodel, ref_model, x_test))
            except Exception as e:  # noqa: BLE001 (a diagnostic only)
                notes.append(f"reference check failed: {type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001
        qmodel = None
        last = traceback.extract_tb(e.__traceback__)[-1]
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        notes.append(f"static PTQ failed at {stage}: {type(e).__name__}: {msg[:300]} "
                     f"({os.path.basename(last.filename)}:{last.lineno}); int8 results "
                     "reported as null (no substitute such as dynamic quantization)")

    # Latency
    torch.manual_seed(0)
    latency = {}
    for b in batch_sizes:
        x = torch.randn(b, *fm.input_shape(args.model), dtype=torch.float32)
        fp32_ms = median_ms(model, x, args.seconds)
        int8_ms = None
        if qmodel is not None:
            try:
                int8_ms = median_ms(qmodel, x, args.seconds)
            except Exception as e:  # noqa: BLE001
                notes.append(f"int8 timing at batch {b} failed: {type(e).__name__}: {e}")
        latency[str(b)] = {
            "fp32_ms": round(fp32_ms, 4),
            "int8_ms": None if int8_ms is None else round(int8_ms, 4),
            "speedup": None if int8_ms is None else round(fp32_ms / int8_ms, 3)}

    print(json.dumps({
        "model": args.model, "engine": engine, "torch_version": torch.__version__,
        "calibration_samples": args.calib, "calibration_seed": args.calib_seed,
        "observer": args.observer, "reduce_range_forced": args.reduce_range,
        "fp32_top1": round(fp32_top1, 4),
        "int8_top1": None if int8_top1 is None else round(int8_top1, 4),
        "top1_agreement_with_fp32": None if agreement is None else round(agreement, 4),
        "test_samples": n_test, "latency": latency, "threads": args.threads,
        "notes": notes}), flush=True)


if __name__ == "__main__":
    main()
