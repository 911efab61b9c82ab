#!/bin/sh
# Compares the search policies at an equal evaluation budget by the hypervolume of their
# fronts (accuracy error, predicted latency, size), all normalised the same way.
#   bench/compare_policies.sh BUILD_DIR EVALUATIONS CONFIG...
# e.g. bench/compare_policies.sh build 48 configs/fmnist_resnet.yaml configs/fmnist_mlp.yaml
# Results go to results/policies/<config>/<policy>/; the table is printed as Markdown.
set -eu
build=$1; evals=$2; shift 2
out=results/policies
mkdir -p "$out"
for config in "$@"; do
  name=$(basename "$config" .yaml)
  for policy in exact nsga2 reinforce random; do
    "$build/cli/bitplan" search --config "$config" --policy "$policy" --evaluations "$evals" \
      --set search.final_samples=1000 --output "$out/$name/$policy" >/dev/null 2>"$out/$name.$policy.log" ||
      { echo "search failed: $config $policy (see $out/$name.$policy.log)"; exit 1; }
  done
done
/usr/bin/python3 "$(dirname "$0")/hypervolume.py" "$out" "$@"
