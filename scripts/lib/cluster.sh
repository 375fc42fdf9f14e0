# scripts/lib/cluster.sh: start a throwaway 3-master Redis Cluster for the
# bench scripts. Source it after defining free_port, listening, die and the
# pids array; then `start_cluster DIR` sets cluster_url (go-redis's cluster
# URL form) and cluster_ports, and appends the servers to pids.

start_cluster() {
	local dir=$1 p i
	cluster_ports=()
	for i in 1 2 3; do
		mkdir -p "$dir/$i"
		for _ in 1 2 3 4 5; do
			p=$(free_port)
			# The bus port's default, port + 10000, may be taken: pick one.
			redis-server --port "$p" --cluster-port "$(free_port)" --bind 127.0.0.1 --save "" --appendonly no --cluster-enabled yes \
				--cluster-config-file "$dir/$i/nodes.conf" --dir "$dir/$i" --logfile "$dir/$i/log" &
			local pid=$!
			pids+=("$pid")
			if listening "$pid" "$p"; then
				cluster_ports+=("$p")
				break
			fi
			kill "$pid" 2>/dev/null || true
		done
	done
	[[ ${#cluster_ports[@]} == 3 ]] || die "the cluster's redis-servers did not start: $(tail -3 "$dir"/*/log)"
	redis-cli --cluster create "127.0.0.1:${cluster_ports[0]}" "127.0.0.1:${cluster_ports[1]}" \
		"127.0.0.1:${cluster_ports[2]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 ||
		die "redis-cli --cluster create failed: $(tail -5 "$dir/create.log")"
	for _ in $(seq 100); do
		if redis-cli -p "${cluster_ports[0]}" cluster info | grep -q '^cluster_state:ok'; then
			cluster_url="redis://127.0.0.1:${cluster_ports[0]}?addr=127.0.0.1:${cluster_ports[1]}&addr=127.0.0.1:${cluster_ports[2]}"
			return
		fi
		sleep 0.1
	done
	die "the cluster did not reach cluster_state:ok"
}

# cluster_flush empties every master of the cluster.
cluster_flush() {
	local p
	for p in "${cluster_ports[@]}"; do redis-cli -p "$p" flushall >/dev/null; done
}
