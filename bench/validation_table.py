"""Per-model summary of `bitplan profile --validate --validate-json FILE` (dev-time tool).

usage: validation_table.py VALIDATION.json
"""
import json
import statistics
import sys


def main():
    doc = json.load(open(sys.argv[1]))
    groups = {}
    for row in doc["rows"]:
        groups.setdefault((row["model"], row["batch"]), []).append(row)
    print("| model | batch | fp32 ms | all-int8 ms | int8 / fp32 | median |error| same session | max |"
          " median |error| stored profile |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (model, batch), rows in groups.items():
        errors = [abs(r["error"]) for r in rows]
        stored = [abs(r["error_vs_stored_profile"]) for r in rows]
        fp32 = next(r for r in rows if r["plan"] == "fp32")
        int8 = next(r for r in rows if r["plan"] in ("W8A8", "W7A8"))
        print(f"| {model.removesuffix('.onnx')} | {batch} | {fp32['measured_ms']:.3f} | "
              f"{int8['measured_ms']:.3f} | {int8['measured_ms'] / fp32['measured_ms']:.2f} | "
              f"{100 * statistics.median(errors):.1f}% | {100 * max(errors):.1f}% | "
              f"{100 * statistics.median(stored):.1f}% |")
    print(f"median |error| {100 * doc['median_abs_error']:.1f}% same session, "
          f"{100 * doc['median_abs_error_vs_stored_profile']:.1f}% against the stored profile")


if __name__ == "__main__":
    main()
