#!/usr/bin/env python3
"""The peers' weight-only methods on the zoo SmolLM2-135M, next to bitplan's (issue 13: "the
same models through the peers' methods where they run here, one table"; issue 12: "for the
LLM, NNCF compress_weights with its mixed INT4/INT8 ratio").

What it measures. The causal LM of configs/zoo_smollm2_135m.yaml (models/zoo/smollm2_135m.onnx,
output `logits` [N, T, 49152]; its 211 MatMuls with a constant weight, the tied 49152 x 576
classifier included; the embedding Gather stays fp32 everywhere) goes through:
  * ONNX Runtime's MatMulNBitsQuantizer (MatMulNBits, 4-bit): round to nearest with
    symmetric and asymmetric blocks of 32 and 64 (the DEFAULT algorithm), and its GPTQ
    (the vendored neural-compressor gptq_quantize: act-order, damping 0.01, blocks of 128
    columns, per-group parameters);
  * NNCF nncf.compress_weights (ONNX backend): INT8_SYM per channel; INT4_SYM groups of 32 and
    64 by round to nearest; INT4_ASYM g32 (the Q4_1 grid the weights came from); INT4_SYM g64
    with AWQ, with scale estimation, with both, and with GPTQ (printed as refused if NNCF
    refuses it); and the mixed INT4/INT8 plan NNCF is known for (ratio 0.8: 80 % of the
    layers in INT4_SYM g64, the rest INT8_ASYM, chosen by its hessian_input_activation
    sensitivity on the calibration windows).
Every data-aware method calibrates on the windows bitplan's GPTQ figures use: 32 of the 32
lee_background windows of 128 tokens (`dataset.calibration.count=32`, seed 1, bitplan's
selection order). Each produced model runs in ONNX Runtime (CPU, --threads intra-op threads)
on the config's 16 enwiki windows of 128 tokens; the figures are the perplexity of the next
tokens (positions 1..127 of each window) and the mean next-token KL divergence KL(fp32 || q) to
ONNX Runtime's fp32 model, in nats, exact over the whole vocabulary (bitplan's own KL keeps
the top tokens of the reference and lumps the tail: the same quantity within about 1e-3 on
these models). "quant s" is the wall time of the peer's quantization call.
The bitplan rows run `bitplan evaluate --config configs/zoo_smollm2_135m.yaml --set
dataset.calibration.count=32 --plan P --threads N --json --cache-dir DIR` (simulated against
its own fp32 executor, whose perplexity equals ONNX Runtime's to 4 digits, docs/performance.md)
and read quantized.metric.{perplexity,next_token_kl}; its time is the whole command's wall time
with whatever --cache-dir already holds (Hessians, GPTQ/AWQ codes).

Run (from the repository root, the venv of bench/peers_requirements.txt, as peers_methods.py):
  .venv-peers/bin/python bench/peers_llm.py --threads 2 [--json out.json]
      [--only ort,nncf,bitplan] [--bitplan build/cli/bitplan] [--cache-dir /work/bpcache-zoo]
Exit 77 (skip) when the model or one of its data files is missing (tools/fetch_models.py makes
them); the message names the file.
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
MODEL = ZOO / "smollm2_135m.onnx"
EVAL = ZOO / "data" / "smollm2_eval_16x128.npy"
CALIB = ZOO / "data" / "smollm2_calib_32x128.npy"
CALIB_COUNT, CALIB_SEED = 32, 1
CONFIG = "configs/zoo_smollm2_135m.yaml"


def check_files():
    for f in [MODEL, EVAL, CALIB, REPO / CONFIG]:
        if not f.is_file():
            print(f"peers_llm: {f.relative_to(REPO)} is missing (tools/fetch_models.py builds "
                  "the zoo model and its data); skipped", file=sys.stderr)
            sys.exit(77)


def next_token_scores(logits, tokens, ref_logp=None):
    """Per window: the summed negative log-likelihood of tokens[1:] under logits[:-1] and, with
    the fp32 model's log-probabilities, the summed KL(fp32 || this); both in double."""
    import numpy as np
    z = logits[:-1].astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    nll = -logp[np.arange(len(tokens) - 1), tokens[1:]].sum()
    kl = 0.0 if ref_logp is None else float((np.exp(ref_logp) * (ref_logp - logp)).sum())
    return float(nll), kl, logp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows here as JSON")
    ap.add_argument("--only", default="ort,nncf,bitplan",
                    help="comma-separated: ort (MatMulNBitsQuantizer), nncf "
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
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="peers_llm."))
    work.mkdir(parents=True, exist_ok=True)
    windows = np.load(EVAL)
    calib_all = np.load(CALIB)
    calib = [{"input_ids": calib_all[i:i + 1]}
             for i in select_indices(CALIB_COUNT, CALIB_SEED, calib_all.shape[0])]

    ref_logps = []

    def score(path, reference=False):
        """(perplexity, mean KL to fp32) of the model at `path` on the evaluation windows, one
        window a run (a batch of 16 would hold 400 MB of logits)."""
        s = ort_session(path, args.threads)
        nll = kl = 0.0
        positions = 0
        for w in range(windows.shape[0]):
            # the first output: NNCF renames the graph's outputs
            logits = s.run(None, {"input_ids": windows[w:w + 1]})[0][0]
            n, k, logp = next_token_scores(logits, windows[w],
                                           None if reference else ref_logps[w])
            if reference:
                ref_logps.append(logp)
            nll, kl, positions = nll + n, kl + k, positions + windows.shape[1] - 1
        return float(np.exp(nll / positions)), kl / positions

    versions = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
                "python": sys.version.split()[0]}
    print(f"# calibration: {len(calib)} windows (seed {CALIB_SEED}); evaluation: "
          f"{windows.shape[0]} x {windows.shape[1]} tokens; threads {args.threads}",
          file=sys.stderr)
    t = time.perf_counter()
    fp32_ppl, _ = score(MODEL, reference=True)
    print(f"# fp32 in ONNX Runtime: perplexity {fp32_ppl:.4f} ({time.perf_counter() - t:.1f} s)",
          file=sys.stderr)

    rows = []

    def add(peer, method, plan, fn):
        """fn() -> (path of the quantized model, seconds of the quantization call, note)."""
        print(f"# {peer}: {method} ...", file=sys.stderr, flush=True)
        row = {"peer": peer, "method": method, "plan": plan, "perplexity": None, "kl": None,
               "quant_seconds": None, "note": ""}
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the peers' progress bars
                path, seconds, note = fn()
            row["quant_seconds"], row["note"] = seconds, note
            row["perplexity"], row["kl"] = score(path)
            path.unlink()  # 100-500 MB each
        except Exception as e:  # a refusal or a failure is a result
            row["note"] = refusal(e)
        rows.append(row)
        if row["perplexity"] is not None:
            print(f"#   perplexity {row['perplexity']:.3f}, KL {row['kl']:.4f}, "
                  f"{row['quant_seconds']:.1f} s", file=sys.stderr, flush=True)
        return row

    def save(model, name, t0):
        seconds = time.perf_counter() - t0
        out = work / f"{name}.onnx"
        onnx.save(model, str(out), save_as_external_data=False)
        return out, seconds

    # ---- ONNX Runtime MatMulNBitsQuantizer ------------------------------------------------
    if "ort" in only:
        from onnxruntime.quantization import CalibrationDataReader
        from onnxruntime.quantization.matmul_nbits_quantizer import (GPTQWeightOnlyQuantConfig,
                                                                     MatMulNBitsQuantizer)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(calib)

            def get_next(self):
                return next(self.it, None)

            def rewind(self):
                self.it = iter(calib)

            def __iter__(self):  # ORT's GPTQ iterates the reader
                return iter(calib)

        def ort_nbits(name, block, symmetric, algo=None):
            def fn():
                t0 = time.perf_counter()
                q = MatMulNBitsQuantizer(onnx.load(str(MODEL)), block_size=block,
                                         is_symmetric=symmetric, algo_config=algo)
                q.process()
                out, seconds = save(q.model.model, f"ort_{name}", t0)
                return out, seconds, ""
            return fn

        for block in (32, 64):
            add("ORT MatMulNBits", f"INT4 sym g{block} (RTN)", f"W4g{block}",
                ort_nbits(f"sym{block}", block, True))
        add("ORT MatMulNBits", "INT4 asym g32 (RTN)", "", ort_nbits("asym32", 32, False))
        for block in (32, 64):
            add("ORT MatMulNBits", f"INT4 sym g{block} + GPTQ (act-order)", f"W4g{block}:gptq",
                ort_nbits(f"gptq{block}", block, True,
                          GPTQWeightOnlyQuantConfig(Reader(), actorder=True)))

    # ---- NNCF ------------------------------------------------------------------------------
    if "nncf" in only:
        import nncf
        from nncf.scopes import IgnoredScope
        versions["nncf"] = nncf.__version__
        model_proto = onnx.load(str(MODEL))
        # NNCF 3.4.0's eliminate_nop_cast pass fails (KeyError) on a float -> float Cast that
        # produces a graph output, as the export's last node does: make it the Identity it is.
        outputs = {o.name for o in model_proto.graph.output}
        typed = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(
            onnx.load(str(MODEL), load_external_data=False)).graph.value_info}
        for n in model_proto.graph.node:
            if n.op_type == "Cast" and n.output[0] in outputs and \
                    typed.get(n.input[0]) == onnx.TensorProto.FLOAT and \
                    onnx.helper.get_attribute_value(n.attribute[0]) == onnx.TensorProto.FLOAT:
                n.op_type = "Identity"
                del n.attribute[:]
                versions["note"] = f"no-op Cast {n.name} before the output made an Identity for NNCF"
        dataset = nncf.Dataset(calib)
        Mode = nncf.CompressWeightsMode

        def nncf_w(name, mode, group=-1, ratio=1.0, data=False, **opts):
            def fn():
                t0 = time.perf_counter()
                extra = {"sensitivity_metric": nncf.SensitivityMetric.HESSIAN_INPUT_ACTIVATION} \
                    if ratio < 1.0 else {}
                # INT8 modes take neither all_layers nor a group size
                int4 = mode in (Mode.INT4_SYM, Mode.INT4_ASYM)
                q = nncf.compress_weights(model_proto, mode=mode, ratio=ratio,
                                          group_size=group if int4 else None,
                                          all_layers=True if int4 else None,
                                          ignored_scope=IgnoredScope(types=["Gather"]),
                                          dataset=dataset if data else None,
                                          subset_size=len(calib), **extra, **opts)
                out, seconds = save(q, f"nncf_{name}", t0)
                return out, seconds, ""
            return fn

        add("NNCF compress_weights", "INT8_SYM per channel", "W8",
            nncf_w("int8", Mode.INT8_SYM, group=-1))
        for g in (32, 64):
            add("NNCF compress_weights", f"INT4_SYM g{g} (RTN)", f"W4g{g}",
                nncf_w(f"int4_g{g}", Mode.INT4_SYM, group=g))
        add("NNCF compress_weights", "INT4_ASYM g32 (RTN)", "", nncf_w("int4a_g32", Mode.INT4_ASYM,
                                                                        group=32))
        for label, plan, opts in [("AWQ", "W4g64:awq", {"awq": True}),
                                  ("scale estimation", "", {"scale_estimation": True}),
                                  ("AWQ + scale estimation", "", {"awq": True,
                                                                 "scale_estimation": True}),
                                  ("GPTQ", "W4g64:gptq", {"gptq": True})]:
            add("NNCF compress_weights", f"INT4_SYM g64 + {label}", plan,
                nncf_w("int4_g64_" + "_".join(opts), Mode.INT4_SYM, group=64, data=True, **opts))
        add("NNCF compress_weights", "INT4_SYM g64, ratio 0.8 (rest INT8_ASYM; hessian "
            "sensitivity)", "", nncf_w("mixed", Mode.INT4_SYM, group=64, ratio=0.8, data=True))

    # ---- bitplan ---------------------------------------------------------------------------
    bitplan_rows = []
    if "bitplan" in only:
        exe = REPO / args.bitplan
        for plan in ["W8", "W4g32", "W4g64", "W4g32z", "W4g32:gptq", "W4g64:gptq",
                     "W4g32z:gptq", "W4g32:awq", "W4g64:awq"]:
            row = {"peer": "bitplan", "method": plan, "plan": plan, "perplexity": None,
                   "kl": None, "quant_seconds": None, "note": ""}
            if not exe.is_file():
                row["note"] = f"{args.bitplan} not built"
            else:
                print(f"# bitplan: {plan} ...", file=sys.stderr, flush=True)
                cmd = [str(exe), "evaluate", "--config", CONFIG, "--set",
                       f"dataset.calibration.count={CALIB_COUNT}", "--plan", plan, "--threads",
                       str(args.threads), "--json", "--cache-dir", args.cache_dir]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                row["quant_seconds"] = time.perf_counter() - t0
                if done.returncode != 0:
                    row["note"] = f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
                else:
                    m = json.loads(done.stdout)["quantized"]["metric"]
                    row["perplexity"], row["kl"] = m["perplexity"], m["next_token_kl"]
                    row["note"] = "wall time of the whole evaluate command (fp32 + plan runs)"
            print(f"#   {row['perplexity']} {row['kl']} {row['note']}", file=sys.stderr,
                  flush=True)
            bitplan_rows.append(row)
    bp = {r["plan"]: r for r in bitplan_rows}

    # ---- the table -------------------------------------------------------------------------
    def fmt(v, digits=3):
        return "—" if v is None else f"{v:.{digits}f}"

    print(f"SmolLM2-135M, 16 x 128 enwiki tokens: perplexity (fp32 {fp32_ppl:.3f} in ONNX "
          f"Runtime) and mean next-token KL to fp32 (nats); ONNX Runtime "
          f"{versions['onnxruntime']}, {args.threads} threads\n")
    print("| peer | method | perplexity | KL | quant s | bitplan plan | bitplan perplexity / KL "
          "| note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = bp.get(r["plan"])
        bcol = f"{fmt(b['perplexity'])} / {fmt(b['kl'], 4)}" if b else ""
        print(f"| {r['peer']} | {r['method']} | {fmt(r['perplexity'])} | {fmt(r['kl'], 4)} | "
              f"{fmt(r['quant_seconds'], 1)} | {r['plan']} | {bcol} | {r['note']} |")
    for b in bitplan_rows:
        print(f"| bitplan | `{b['method']}` | {fmt(b['perplexity'])} | {fmt(b['kl'], 4)} | "
              f"{fmt(b['quant_seconds'], 1)} | {b['plan']} | (simulated) | {b['note']} |")
    print("\nversions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions, "threads": args.threads, "fp32_perplexity": fp32_ppl,
                       "peers": rows, "bitplan": bitplan_rows}, f, indent=1)
    if not args.keep:
        for p in work.glob("*"):
            p.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
