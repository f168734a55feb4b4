# Sourced by the measurement scripts (cluster_scaling.sh, cluster_rounds.sh).

# Prints YAML file $2 without the top-level keys listed in $1 (space-separated), their blocks
# included: the scripts' configs start from the shipped ones and then set those keys themselves.
yaml_without_keys() {
  awk -v keys="$1" 'BEGIN { n = split(keys, k, " "); for (i = 1; i <= n; i++) drop[k[i]] = 1 }
       /^[A-Za-z_]+:/ { key = $1; sub(/:.*/, "", key); skip = (key in drop) }
       !skip' "$2"
}
