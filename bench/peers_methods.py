#!/usr/bin/env python3
"""The peers' post-training quantization methods on the zoo MiniLM-L6, next to bitplan's
(issue 13: "the same models through the peers' methods, one table").

What it measures. The sentence encoder of configs/zoo_minilm_l6.yaml (models/zoo/minilm_l6.onnx,
output `sentence_embedding` [N, 384]) goes through:
  * ONNX Runtime quantize_static, W8A8: QDQ, int8 per-channel weights, uint8 per-tensor
    activations, MinMax calibration, three ways: ORT's default op set; the MatMuls with a
    constant weight (nodes_to_quantize), inputs and outputs; the same, inputs only
    (OpTypesToExcludeOutputQuantization), which are bitplan's W8A8 quantization points; and
    that last with ORT's SmoothQuant option (extra_options SmoothQuant, SmoothQuantAlpha 0.5;
    ORT imports it from neural-compressor 2.x: 3.x has no ONNX adaptor; if it does not
    import, the row says so);
  * NNCF nncf.quantize, W8A8 (preset MIXED: int8 symmetric per-channel weights, asymmetric
    8-bit per-tensor activations; model_type TRANSFORMER; MinMax range estimator), without
    and with its SmoothQuant (NNCF's default alphas) and fast bias correction;
  * NNCF nncf.compress_weights, INT4_SYM group 128 on every MatMul (all_layers, the Gather
    embeddings left in fp32 as bitplan leaves them), round to nearest, awq=True,
    scale_estimation=True, both, and gptq=True (what NNCF refuses is printed as such).
    NNCF 3.4.0's ONNX backend gives MatMulNBits the bias of the MatMul's following Add and
    keeps the Add (the bias counted twice): each model is judged as produced and, in a row
    marked "bias once", with those MatMulNBits bias inputs cleared by this script.
A column repeats each peer figure with ORT's graph optimizations off (QDQ stays
DequantizeLinear -> float op), which separates the method's grid from ORT's int8 kernels.
All calibrate on the config's calibration selection: 128 of the 256 lee_background sentences
(count 128, seed 1: bitplan's splitmix64 Fisher-Yates selection, data/dataset.cpp), fed one
sentence a batch at the stored padded length. Each produced model runs in ONNX Runtime (CPU,
--threads intra-op threads) on the 200 polarity sentences (batch 32); the figures are the mean
and the worst over sentences of the cosine of its embedding to the fp32 model's embedding (in
ONNX Runtime), computed in double from the float outputs as executor/metrics.cpp's
row_cosines does (a zero vector: cosine 1 if both are zero, else 0). "quant s" is the wall
time of the peer's quantization call (calibration included; not the model's load or save).
The bitplan column runs `bitplan evaluate --config configs/zoo_minilm_l6.yaml --plan P
--threads 2 --json --cache-dir /work/bpcache-zoo` for the matching plans and reads
quantized.metric.cosine_mean / cosine_worst (bitplan judges against its own fp32 executor);
its time is the command's wall time with whatever --cache-dir already holds.

Run (from the repository root; the venv is made from bench/peers_requirements.txt):
  python3 -m venv .venv-peers
  .venv-peers/bin/pip install --require-hashes -r bench/peers_requirements.txt
  .venv-peers/bin/python bench/peers_methods.py --threads 2 [--json out.json]
      [--only ort,nncf_q,nncf_w,bitplan] [--bitplan build/cli/bitplan]
      [--cache-dir /work/bpcache-zoo] [--keep DIR]
Exit 77 (skip) when the model or one of its data files is missing (tools/fetch_models.py
makes them); the message names the file.
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
from peers_common import ort_session, refusal, select_indices  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "models" / "zoo"
MODEL = ZOO / "minilm_l6.onnx"
DATA = ZOO / "data"
EVAL_INPUTS = {"input_ids": DATA / "minilm_polarity_input_ids.npy",
               "attention_mask": DATA / "minilm_polarity_attention_mask.npy"}
CALIB_INPUTS = {"input_ids": DATA / "minilm_calib_input_ids.npy",
                "attention_mask": DATA / "minilm_calib_attention_mask.npy"}
CALIB_COUNT, CALIB_SEED = 128, 1  # configs/zoo_minilm_l6.yaml dataset.calibration
EVAL_BATCH = 32
CONFIG = "configs/zoo_minilm_l6.yaml"


def check_files():
    for f in [MODEL, *EVAL_INPUTS.values(), *CALIB_INPUTS.values(), REPO / CONFIG]:
        if not f.is_file():
            print(f"peers_methods: {f.relative_to(REPO)} is missing (tools/fetch_models.py "
                  "builds the zoo model and its data); skipped", file=sys.stderr)
            sys.exit(77)


def row_cosines(ref, cand):
    """executor/metrics.cpp row_cosines: per row cos = a.b / sqrt(a.a b.b) in double; a zero
    row gives 1 if both are zero, else 0. Returns (mean, worst)."""
    import numpy as np
    a = ref.astype(np.float64).reshape(ref.shape[0], -1)
    b = cand.astype(np.float64).reshape(cand.shape[0], -1)
    aa, bb, ab = (a * a).sum(1), (b * b).sum(1), (a * b).sum(1)
    c = np.where((aa == 0) | (bb == 0), np.where(aa == bb, 1.0, 0.0),
                 ab / np.sqrt(np.where(aa * bb == 0, 1, aa * bb)))
    return float(c.mean()), float(c.min())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows here as JSON")
    ap.add_argument("--only", default="ort,nncf_q,nncf_w,bitplan",
                    help="comma-separated: ort, nncf_q (nncf.quantize), nncf_w "
                    "(nncf.compress_weights), bitplan")
    ap.add_argument("--bitplan", default="build/cli/bitplan")
    ap.add_argument("--cache-dir", default="/work/bpcache-zoo")
    ap.add_argument("--keep", help="keep the peers' quantized models in this folder")
    args = ap.parse_args()
    check_files()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import numpy as np
    import onnx
    import onnxruntime as ort
    ort.set_default_logger_severity(3)

    only = set(args.only.split(","))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="peers_methods."))
    work.mkdir(parents=True, exist_ok=True)

    evals = {k: np.load(v) for k, v in EVAL_INPUTS.items()}
    calib_all = {k: np.load(v) for k, v in CALIB_INPUTS.items()}
    n_calib = next(iter(calib_all.values())).shape[0]
    calib_idx = select_indices(CALIB_COUNT, CALIB_SEED, n_calib)
    calib = [{k: v[i:i + 1] for k, v in calib_all.items()} for i in calib_idx]

    def embed(path, optimize=True):
        s = ort_session(path, args.threads, optimize)
        n = next(iter(evals.values())).shape[0]
        out = [s.run(["sentence_embedding"], {k: v[i:i + EVAL_BATCH] for k, v in evals.items()})[0]
               for i in range(0, n, EVAL_BATCH)]
        return np.concatenate(out)

    versions = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
                "python": sys.version.split()[0]}
    print(f"# calibration: {len(calib)} sentences (seed {CALIB_SEED}) of {n_calib}; "
          f"evaluation: {next(iter(evals.values())).shape[0]} sentences; threads {args.threads}",
          file=sys.stderr)
    t = time.perf_counter()
    ref = embed(MODEL)
    print(f"# fp32 in ONNX Runtime: {time.perf_counter() - t:.1f} s", file=sys.stderr)

    rows = []  # dicts: peer, method, plan (bitplan's equivalent), mean, worst, seconds, note

    def add(peer, method, plan, fn):
        """fn() -> (path of the quantized model, seconds of the quantization call, note)."""
        print(f"# {peer}: {method} ...", file=sys.stderr, flush=True)
        row = {"peer": peer, "method": method, "plan": plan, "cosine_mean": None,
               "cosine_worst": None, "unoptimized_mean": None, "unoptimized_worst": None,
               "quant_seconds": None, "note": ""}
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the peers' progress bars: off the table
                path, seconds, note = fn()
            row["quant_seconds"], row["note"] = seconds, note
            emb = embed(path)
            row["cosine_mean"], row["cosine_worst"] = row_cosines(ref, emb)
            row["_emb"] = emb
            row["unoptimized_mean"], row["unoptimized_worst"] = row_cosines(ref, embed(path, False))
        except Exception as e:  # a refusal or a failure is a result
            row["note"] = refusal(e)
        rows.append(row)
        if row["cosine_mean"] is not None:
            print(f"#   cosine {row['cosine_mean']:.4f} / {row['cosine_worst']:.4f}, "
                  f"{row['quant_seconds']:.1f} s", file=sys.stderr, flush=True)
        return row

    # ---- ONNX Runtime quantize_static ------------------------------------------------------
    if "ort" in only:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                              QuantType, quantize_static)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(calib)

            def get_next(self):
                return next(self.it, None)

            def rewind(self):
                self.it = iter(calib)

        # bitplan's W8A8 quantizes the 36 MatMuls with a constant weight; ORT's default op set
        # also quantizes the attention MatMuls, the embedding Gathers, Add, Mul, Div, Softmax...
        graph = onnx.load(str(MODEL), load_external_data=False).graph
        consts = {i.name for i in graph.initializer} | \
            {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        weighted = [n.name for n in graph.node
                    if n.op_type in ("MatMul", "Gemm") and any(i in consts for i in n.input)]

        def ort_static(name, extra, nodes=None):
            def fn():
                out = work / f"ort_{name}.onnx"
                t0 = time.perf_counter()
                quantize_static(str(MODEL), str(out), Reader(), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                                calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
                return out, time.perf_counter() - t0, ""
            return fn

        add("ORT quantize_static", "W8A8 (QDQ, MinMax), ORT's default op set", "",
            ort_static("w8a8_all", {}))
        add("ORT quantize_static", f"W8A8 (QDQ, MinMax), the {len(weighted)} weighted MatMuls "
            "(inputs and outputs)", "", ort_static("w8a8_out", {}, weighted))
        # bitplan quantizes a layer's inputs only: ORT's option for that
        inputs_only = {"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]}
        add("ORT quantize_static", f"W8A8 (QDQ, MinMax), the {len(weighted)} weighted MatMuls, "
            "inputs only", "W8A8", ort_static("w8a8", inputs_only, weighted))
        try:
            import neural_compressor  # noqa: F401  (ORT's SmoothQuant imports its 2.x adaptor)
            from neural_compressor.adaptor.ox_utils.smooth_quant import ORTSmoothQuant  # noqa: F401
            versions["neural-compressor"] = neural_compressor.__version__
            add("ORT quantize_static", f"W8A8 + SmoothQuant α 0.5, the {len(weighted)} weighted "
                "MatMuls, inputs only", "W8A8:smoothquant",
                ort_static("w8a8_sq", {"SmoothQuant": True, "SmoothQuantAlpha": 0.5, **inputs_only},
                           weighted))
        except Exception as e:
            rows.append({"peer": "ORT quantize_static", "method": "W8A8 + SmoothQuant α 0.5",
                         "plan": "W8A8:smoothquant", "cosine_mean": None, "cosine_worst": None,
                         "unoptimized_mean": None, "unoptimized_worst": None, "quant_seconds": None,
                         "note": f"unavailable: neural-compressor's ONNX SmoothQuant does not "
                                 f"import ({type(e).__name__}: {e})"[:300]})

    # ---- NNCF ------------------------------------------------------------------------------
    if "nncf_q" in only or "nncf_w" in only:
        import nncf
        from nncf.parameters import ModelType
        versions["nncf"] = nncf.__version__
        model_proto = onnx.load(str(MODEL))
        dataset = nncf.Dataset(calib)

    if "nncf_q" in only:
        from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                           AdvancedSmoothQuantParameters)
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        def nncf_q(name, sq, fbc):
            def fn():
                adv = AdvancedQuantizationParameters(
                    activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
                    disable_bias_correction=not fbc)
                if not sq:
                    adv.smooth_quant_alphas = AdvancedSmoothQuantParameters(convolution=-1, matmul=-1)
                t0 = time.perf_counter()
                q = nncf.quantize(model_proto, dataset, preset=nncf.QuantizationPreset.MIXED,
                                  model_type=ModelType.TRANSFORMER, subset_size=len(calib),
                                  fast_bias_correction=True, advanced_parameters=adv)
                seconds = time.perf_counter() - t0
                out = work / f"nncf_{name}.onnx"
                onnx.save(q, str(out))
                return out, seconds, ""
            return fn

        sq_default = AdvancedSmoothQuantParameters()
        sq_txt = f"SmoothQuant (α matmul {sq_default.matmul})"
        def same(a, b, what):
            if a.get("_emb") is not None and b.get("_emb") is not None:
                d = float(np.abs(a["_emb"] - b["_emb"]).max())
                b["note"] = (b["note"] + f" largest |difference| of the embeddings to {what}'s: "
                             f"{d:.2e}").strip()

        plain = add("NNCF quantize", "W8A8 (MinMax)", "W8A8", nncf_q("w8a8", False, False))
        sq = add("NNCF quantize", f"W8A8 + {sq_txt}", "W8A8:smoothquant",
                 nncf_q("w8a8_sq", True, False))
        same(plain, add("NNCF quantize", "W8A8 + fast bias correction", "W8A8:bc (n/a)",
                        nncf_q("w8a8_fbc", False, True)), "W8A8")
        same(sq, add("NNCF quantize", f"W8A8 + {sq_txt} + fast BC", "",
                     nncf_q("w8a8_sq_fbc", True, True)), "W8A8 + SmoothQuant")

    if "nncf_w" in only:
        from nncf.scopes import IgnoredScope

        def drop_duplicate_bias(model):
            """NNCF 3.4.0's ONNX weight compression passes the bias of a MatMul -> Add(constant)
            to MatMulNBits' bias input and keeps the Add, so the bias is added twice. Clear
            the MatMulNBits input where its output still feeds an Add of that same constant.
            Returns the number of nodes changed."""
            consumers = {}
            for n in model.graph.node:
                for i in n.input:
                    consumers.setdefault(i, []).append(n)
            changed = 0
            for n in model.graph.node:
                if n.op_type == "MatMulNBits" and len(n.input) > 5 and n.input[5] and any(
                        c.op_type == "Add" and n.input[5] in c.input
                        for c in consumers.get(n.output[0], [])):
                    inputs = list(n.input[:5])
                    while inputs and not inputs[-1]:
                        inputs.pop()
                    del n.input[:]
                    n.input.extend(inputs)
                    changed += 1
            return changed

        compressed = {}

        def nncf_w(name, **opts):
            def fn():
                data = dataset if any(opts.values()) else None
                t0 = time.perf_counter()
                q = nncf.compress_weights(model_proto, mode=nncf.CompressWeightsMode.INT4_SYM,
                                          ratio=1.0, group_size=128, all_layers=True,
                                          ignored_scope=IgnoredScope(types=["Gather"]),
                                          dataset=data, subset_size=len(calib), **opts)
                seconds = time.perf_counter() - t0
                out = work / f"nncf_{name}.onnx"
                onnx.save(q, str(out))
                compressed[name] = (q, seconds)
                return out, seconds, "as produced"
            return fn

        def nncf_w_fixed(name):
            def fn():
                q, seconds = compressed[name]
                changed = drop_duplicate_bias(q)
                out = work / f"nncf_{name}_bias_once.onnx"
                onnx.save(q, str(out))
                return out, seconds, (f"this script cleared the duplicated bias input of "
                                      f"{changed} MatMulNBits nodes")
            return fn

        variants = [("w4g128", "W4g128", {}), ("awq", "W4g128:awq", {"awq": True}),
                    ("se", "", {"scale_estimation": True}),
                    ("awq_se", "", {"awq": True, "scale_estimation": True}),
                    ("gptq", "W4g128:gptq", {"gptq": True})]
        rtn = None
        for name, plan, opts in variants:
            method = "INT4_SYM g128" + "".join(f" + {k}" for k in opts) if opts else \
                "INT4_SYM g128 (RTN)"
            r = add("NNCF compress_weights", method, "", nncf_w(name, **opts))
            if name not in compressed:
                r["plan"] = plan  # a refusal: show it on the row bitplan's plan matches
                continue
            f = add("NNCF compress_weights", method + ", bias once", plan, nncf_w_fixed(name))
            if rtn is None:
                rtn = f
            elif f.get("_emb") is not None and rtn.get("_emb") is not None and \
                    np.array_equal(f["_emb"], rtn["_emb"]):
                f["note"] += "; output identical to RTN's (NNCF: no matching AWQ pattern)"

    # ---- bitplan ---------------------------------------------------------------------------
    bitplan_rows = []
    if "bitplan" in only:
        exe = REPO / args.bitplan
        for plan in ["W8A8", "W8A8:smoothquant", "W4g128", "W4g128:gptq", "W4g128:awq"]:
            row = {"peer": "bitplan", "method": plan, "plan": plan, "cosine_mean": None,
                   "cosine_worst": None, "quant_seconds": None, "note": ""}
            if not exe.is_file():
                row["note"] = f"{args.bitplan} not built"
            else:
                print(f"# bitplan: {plan} ...", file=sys.stderr, flush=True)
                cmd = [str(exe), "evaluate", "--config", CONFIG, "--plan", plan, "--threads",
                       str(args.threads), "--json", "--cache-dir", args.cache_dir]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                row["quant_seconds"] = time.perf_counter() - t0
                if done.returncode != 0:
                    row["note"] = f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
                else:
                    m = json.loads(done.stdout)["quantized"]["metric"]
                    row["cosine_mean"], row["cosine_worst"] = m["cosine_mean"], m["cosine_worst"]
                    row["note"] = "wall time of the whole evaluate command (fp32 + plan runs)"
            print(f"#   {row['cosine_mean']} / {row['cosine_worst']} {row['note']}",
                  file=sys.stderr, flush=True)
            bitplan_rows.append(row)
        row = {"peer": "bitplan", "method": "W8A8:bc", "plan": "W8A8:bc", "cosine_mean": None,
               "cosine_worst": None, "quant_seconds": None,
               "note": "not run: bias correction does not apply to MatMul layers in bitplan"}
        bitplan_rows.append(row)
    bp = {r["plan"]: r for r in bitplan_rows}

    # ---- the table -------------------------------------------------------------------------
    def fmt(v, digits=4):
        return "—" if v is None else f"{v:.{digits}f}"

    print(f"MiniLM-L6, 200 polarity sentences, cosine of embeddings to fp32 (mean / worst); "
          f"ONNX Runtime {versions['onnxruntime']}, {args.threads} threads\n")
    print("| peer | method | cosine mean / worst (ORT CPU) | same, graph optimizations off | "
          "quant s | bitplan plan | bitplan mean / worst | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = bp.get(r["plan"])
        bcol = f"{fmt(b['cosine_mean'])} / {fmt(b['cosine_worst'])}" if b else ""
        q = f"{fmt(r['cosine_mean'])} / {fmt(r['cosine_worst'])}" \
            if r["cosine_mean"] is not None else "—"
        u = f"{fmt(r['unoptimized_mean'])} / {fmt(r['unoptimized_worst'])}" \
            if r.get("unoptimized_mean") is not None else "—"
        print(f"| {r['peer']} | {r['method']} | {q} | {u} | {fmt(r['quant_seconds'], 1)} | "
              f"{r['plan'] or ''} | {bcol} | {r['note']} |")
    for b in bitplan_rows:
        q = f"{fmt(b['cosine_mean'])} / {fmt(b['cosine_worst'])}" \
            if b["cosine_mean"] is not None else "—"
        print(f"| bitplan | `{b['method']}` | {q} | (simulated) | {fmt(b['quant_seconds'], 1)} | "
              f"{b['plan']} | {q} | {b['note']} |")
    print("\nversions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    if args.json:
        for r in rows:
            r.pop("_emb", None)
        with open(args.json, "w") as f:
            json.dump({"versions": versions, "threads": args.threads, "peers": rows,
                       "bitplan": bitplan_rows}, f, indent=1)
    if not args.keep:
        for p in work.glob("*"):
            p.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
