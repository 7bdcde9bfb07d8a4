#!/usr/bin/env bash
# tests/test_slurm.sh: `runexp sweep --slurm`, `runexp status`, `runexp collect` (docs/cluster.md).
#   test_slurm.sh fake RUNEXP CONFIG   no SLURM: sbatch and squeue are stand-ins on PATH that record the script and
#                                      answer from a file; the "tasks" are the script run by hand. Checks the script
#                                      (array -> run mapping, %K, overrides quoted, logs), the job ids in runs.db,
#                                      the states status derives from the queue, --retry-failed, and a sharded
#                                      sweep whose shards `runexp collect` merges (twice: nothing changes).
#   test_slurm.sh real RUNEXP CONFIG   a real one-node SLURM (slurmctld + slurmd on loopback, auth/none, no
#                                      cgroups, everything under a temp dir; needs root and scripts/deps.sh's
#                                      slurm packages): a 4-run array, then a slow run cancelled mid-run with
#                                      scancel, shown interrupted, and finished by --retry-failed.
# Exit 77 (SKIP) with the reason when it cannot run here. The daemons are stopped whatever happens.
set -u
mode="$1" RUNEXP="$2" CFG="$3"
FMNIST="${LORALAB_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -n "${tmp:-}" ] && [ -n "${keep_logs:-}" ] && tail -n 20 "$tmp"/*.log "$tmp"/out/slurm/*.log 2>/dev/null; exit 1; }
[ -r "$FMNIST/train-images-idx3-ubyte.gz" ] || [ -r "$FMNIST/train-images-idx3-ubyte" ] || skip "Fashion-MNIST not at $FMNIST"
case "$RUNEXP" in /*) ;; *) RUNEXP="$PWD/$RUNEXP" ;; esac
case "$CFG" in /*) ;; *) CFG="$PWD/$CFG" ;; esac

tmp="$(mktemp -d /tmp/loralab_slurm_XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    [ -z "${keep_tmp:-}" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$tmp" || exit 1
OUT="$tmp/out"
ARGS=("output=$OUT" "dataset.path=$FMNIST")

q() { "$RUNEXP" query --db "$OUT/runs.db" --csv "$1" | sed -n 2p; }          # first value of a query
state_of() { "$RUNEXP" status "$CFG" "${ARGS[@]}" "$@" | awk -v r="$RUN" '$1 == r {print $5}'; }

# ---------------------------------------------------------------------------------------------------------------
fake() {
    mkdir -p "$tmp/bin"
    # sbatch: keeps the script, prints a job id (--parsable); squeue: prints $tmp/queue
    cat >"$tmp/bin/sbatch" <<EOF
#!/bin/sh
n=\$(cat "$tmp/next_job" 2>/dev/null || echo 100); echo \$((n + 1)) > "$tmp/next_job"
cp "\$2" "$tmp/job_\$n.sh"; echo "\$n"
EOF
    cat >"$tmp/bin/squeue" <<EOF
#!/bin/sh
cat "$tmp/queue" 2>/dev/null; exit 0
EOF
    chmod +x "$tmp/bin/sbatch" "$tmp/bin/squeue"
    export PATH="$tmp/bin:$PATH"
    : >"$tmp/queue"
    # a task of job J, array index I, as SLURM would start it (in the script's --chdir, its --output)
    task() {
        local log; log="$(sed -n 's/^#SBATCH --output=//p' "$tmp/job_$1.sh" | sed "s/%A/$1/; s/%a/$2/")"
        SLURM_ARRAY_TASK_ID="$2" SLURM_CPUS_PER_TASK=1 bash "$tmp/job_$1.sh" >"$log" 2>&1
    }

    local out; out="$("$RUNEXP" sweep "$CFG" "${ARGS[@]}" "description=it's" --slurm --max-parallel 3 --time 0:05:00 2>&1)" ||
        fail "sweep: $out"
    echo "$out" | grep -q "submitted 4 run(s) as job array 100" || fail "sweep output: $out"
    local s="$tmp/job_100.sh"
    grep -q '^#SBATCH --array=0-3%3$' "$s" || fail "no --array=0-3%3 in $s"
    grep -q '^#SBATCH --time=0:05:00$' "$s" || fail "no --time in $s"
    grep -q "^#SBATCH --output=$OUT/slurm/it_sweep-%A_%a.log$" "$s" || fail "log path in $s"
    grep -q "^RUNS=(0 1 2 3)$" "$s" || fail "RUNS in $s"
    grep -q "'description=it'\\\\''s' --cell \"\$run\" --no-requires" "$s" || fail "overrides not quoted in $s"
    [ "$(q "SELECT group_concat(job_id, ' ') FROM (SELECT job_id FROM runs ORDER BY cell_index)")" = "100_0 100_1 100_2 100_3" ] ||
        fail "job ids in runs.db: $(q "SELECT group_concat(job_id) FROM runs")"
    [ "$(q "SELECT count(*) FROM runs WHERE status = 'pending'")" = 4 ] || fail "submitted runs not pending"
    # squeue says: 100_0 runs, 100_1 is queued; 100_2 and 100_3 are gone without starting -> failed
    printf '100_0 RUNNING\n100_1 PENDING\n' >"$tmp/queue"
    local st; st="$("$RUNEXP" status "$CFG" "${ARGS[@]}")"
    echo "$st" | grep -q "done 0, running 1, pending 1, failed 2, interrupted 0, new 0" || fail "status: $st"
    echo "$st" | grep -q "its job ended before the run began: $OUT/slurm/it_sweep-100_2.log" || fail "status note: $st"
    # tasks 0 and 1 run; the queue forgets them
    task 100 0 || fail "task 0: $(cat "$OUT"/slurm/it_sweep-100_0.log)"
    task 100 1 || fail "task 1"
    : >"$tmp/queue"
    grep -q "array task 1 -> run 1" "$OUT/slurm/it_sweep-100_1.log" || fail "task log"
    [ "$(q "SELECT count(*) FROM runs WHERE status = 'done'")" = 2 ] || fail "2 runs done"
    # run 3 made slow (a new run; 0-2 stay the same runs): only it is submitted; its task is killed -9 mid-run,
    # so the database still says 'running' while its job is gone: interrupted
    ARGS+=("zip.trainer.max_steps=[30,30,30,6000]")
    out="$("$RUNEXP" sweep "$CFG" "${ARGS[@]}" "description=it's" --slurm 2>&1)" || fail "slow sweep: $out"
    echo "$out" | grep -q "submitted 1 run(s) as job array 101" || fail "slow sweep: $out"
    grep -q "^RUNS=(3)$" "$tmp/job_101.sh" || fail "slow RUNS: $(grep RUNS= "$tmp/job_101.sh")"
    task 101 0 & local tp=$! t=0
    until grep -q "step [0-9]*/6000" "$OUT/slurm/it_sweep-101_0.log" 2>/dev/null; do
        sleep 0.1; t=$((t + 1)); [ $t -ge 300 ] && fail "slow task did not start"
    done
    pkill -9 -P "$tp" 2>/dev/null; kill -9 "$tp" 2>/dev/null; wait "$tp" 2>/dev/null
    [ "$(q "SELECT status FROM runs WHERE cell_index = 3 AND job_id = '101_0'")" = running ] || fail "killed run not 'running'"
    st="$("$RUNEXP" status "$CFG" "${ARGS[@]}")"
    echo "$st" | grep -q "done 2, running 0, pending 0, failed 1, interrupted 1, new 0" || fail "status after kill: $st"
    echo "$st" | grep -q "its job ended while it ran" || fail "status note after kill: $st"
    # a plain sweep submits nothing (no new runs); --retry-failed the two stopped ones, mapped to their runs
    out="$("$RUNEXP" sweep "$CFG" "${ARGS[@]}" "description=it's" --slurm 2>&1)" || fail "sweep 2: $out"
    echo "$out" | grep -q "nothing to submit (failed or interrupted runs: add --retry-failed)" || fail "sweep 2: $out"
    out="$("$RUNEXP" sweep "$CFG" "${ARGS[@]}" "description=it's" --slurm --retry-failed 2>&1)" || fail "retry: $out"
    echo "$out" | grep -q "submitted 2 run(s) as job array 102" || fail "retry: $out"
    grep -q "^RUNS=(2 3)$" "$tmp/job_102.sh" || fail "retry RUNS: $(grep RUNS= "$tmp/job_102.sh")"
    grep -q '^#SBATCH --array=0-1$' "$tmp/job_102.sh" || fail "retry --array"
    [ "$(q "SELECT job_id FROM runs WHERE cell_index = 2")" = 102_0 ] || fail "retry job id"
    [ "$(q "SELECT status FROM runs WHERE cell_index = 3 AND job_id = '102_1'")" = running ] ||
        fail "a resubmitted run keeps its status (so it resumes)"
    printf '102_0 PENDING\n102_1 PENDING\n' >"$tmp/queue"
    "$RUNEXP" status "$CFG" "${ARGS[@]}" | grep -q "done 2, running 0, pending 2, failed 0" || fail "resubmitted: pending"
    : >"$tmp/queue"
    task 102 0 || fail "retry task 0"
    task 102 1 || fail "retry task 1"
    grep -q "resumed at step" "$OUT/slurm/it_sweep-102_1.log" || fail "the retried run did not resume"
    st="$("$RUNEXP" status "$CFG" "${ARGS[@]}")"
    echo "$st" | grep -q "done 4, running 0, pending 0, failed 0, interrupted 0, new 0" || fail "status at the end: $st"
    echo "fake: script, job ids, queue states, retry: ok"

    # --- results.shard: tasks write only shards; status and collect merge them; merging again changes nothing
    OUT="$tmp/sharded"
    ARGS=("output=$OUT" "dataset.path=$FMNIST" "results.shard=true")
    out="$("$RUNEXP" sweep "$CFG" "${ARGS[@]}" --slurm 2>&1)" || fail "sharded sweep: $out"
    local job; job="$(echo "$out" | sed -n 's/.*as job array \([0-9]*\).*/\1/p')"
    rm -f "$OUT/runs.db" "$OUT/runs.db-wal" "$OUT/runs.db-shm" # the tasks must not need it (written from elsewhere)
    for i in 0 1 2 3; do task "$job" $i || fail "sharded task $i"; done
    [ ! -e "$OUT/runs.db" ] || fail "a sharded task wrote $OUT/runs.db"
    [ "$(ls "$OUT"/shards/*.db | wc -l)" = 4 ] || fail "4 shards expected: $(ls "$OUT"/shards)"
    out="$("$RUNEXP" collect "$CFG" "${ARGS[@]}")" || fail "collect: $out"
    echo "$out" | grep -q "merged 4 shard(s)" || fail "collect: $out"
    local dump="SELECT r.id, r.status, r.cell_index, r.wall_s, (SELECT count(*) FROM params p WHERE p.run_id = r.id),
                (SELECT group_concat(key || '=' || quote(value), ',') FROM (SELECT * FROM results x WHERE x.run_id = r.id
                 ORDER BY key, step)) FROM runs r ORDER BY r.id"
    local d1 d2; d1="$("$RUNEXP" query --db "$OUT/runs.db" --csv "$dump")"
    [ "$(echo "$d1" | grep -c ',done,')" = 4 ] || fail "collected runs: $d1"
    "$RUNEXP" collect "$CFG" "${ARGS[@]}" >/dev/null || fail "collect 2"
    d2="$("$RUNEXP" query --db "$OUT/runs.db" --csv "$dump")"
    [ "$d1" = "$d2" ] || fail "collecting twice changed runs.db: $(diff <(echo "$d1") <(echo "$d2"))"
    "$RUNEXP" status "$CFG" "${ARGS[@]}" | grep -q "done 4, running 0, pending 0, failed 0, interrupted 0, new 0" ||
        fail "sharded status"
    [ "$(q "SELECT count(DISTINCT key) FROM results WHERE key = 'test_acc'")" = 1 ] || fail "results merged"
    echo "fake: sharded sweep: 4 shards collected, collecting again changed nothing: ok"
}

# ---------------------------------------------------------------------------------------------------------------
wait_queue_empty() { # job, seconds
    local t=0
    while [ -n "$(squeue -h -j "$1" 2>/dev/null)" ]; do
        sleep 1; t=$((t + 1)); [ $t -ge "$2" ] && fail "job $1 still queued after $2 s: $(squeue)"
    done
}

real() {
    [ "$(id -u)" = 0 ] || skip "a real SLURM needs root (slurmd starts jobs as their users)"
    for b in slurmctld slurmd sbatch squeue scancel sinfo; do
        command -v "$b" >/dev/null || skip "$b missing (scripts/deps.sh installs slurmctld slurmd slurm-client)"
    done
    local plug; plug="$(dirname "$(ls /usr/lib/*/slurm-wlm/auth_none.so /usr/lib*/slurm/auth_none.so 2>/dev/null | head -1)")"
    [ -n "$plug" ] && [ "$plug" != . ] || skip "no auth/none plugin in this SLURM build"
    local host port; host="$(hostname -s)"; port=$((20000 + RANDOM % 20000))
    mkdir -p "$tmp/state" "$tmp/spool"
    cat >"$tmp/slurm.conf" <<EOF
ClusterName=loralabtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$tmp/slurm.conf"
    slurmctld -D -i >"$tmp/slurmctld.out" 2>&1 & pids+=($!)
    slurmd -D >"$tmp/slurmd.out" 2>&1 & pids+=($!)
    local t=0
    until [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; do
        sleep 1; t=$((t + 1))
        if [ $t -ge 30 ]; then
            tail -n 5 "$tmp"/slurmctld.out "$tmp"/slurmd.out
            skip "slurmctld/slurmd did not bring the node up within 30 s (logs above)"
        fi
    done
    keep_logs=1
    echo "real: SLURM $(sinfo -V) up on $host:$port with $(nproc) CPUs (${t}s)"

    local out job t0=$SECONDS
    out="$("$RUNEXP" sweep "$CFG" "${ARGS[@]}" --slurm --cpus-per-task 1 --max-parallel 4 2>&1)" || fail "sweep: $out"
    job="$(echo "$out" | sed -n 's/.*as job array \([0-9]*\).*/\1/p')"
    [ -n "$job" ] || fail "no job id: $out"
    wait_queue_empty "$job" 120
    [ "$(q "SELECT count(*) FROM runs WHERE status = 'done' AND job_id LIKE '${job}_%'")" = 4 ] ||
        fail "4 done runs expected: $("$RUNEXP" status "$CFG" "${ARGS[@]}")"
    [ "$(ls "$OUT"/slurm/it_sweep-"$job"_*.log | wc -l)" = 4 ] || fail "4 task logs expected"
    echo "real: 4-run array $job finished in $((SECONDS - t0)) s, 4 runs done in runs.db"
    "$RUNEXP" sweep "$CFG" "${ARGS[@]}" --slurm | grep -q "nothing to submit" || fail "finished runs resubmitted"

    # one run made slow (zip: the other three stay the same, done, runs); cancel it mid-run
    ARGS+=("zip.trainer.max_steps=[30,30,30,15000]")
    RUN=3
    out="$("$RUNEXP" sweep "$CFG" "${ARGS[@]}" --slurm --cpus-per-task 1 2>&1)" || fail "slow sweep: $out"
    echo "$out" | grep -q "submitted 1 run(s)" || fail "slow sweep: $out"
    job="$(echo "$out" | sed -n 's/.*as job array \([0-9]*\).*/\1/p')"
    local log="$OUT/slurm/it_sweep-${job}_0.log"
    t=0
    until [ "$(state_of)" = running ] && grep -q "step [0-9]*/15000" "$log" 2>/dev/null; do
        sleep 0.5; t=$((t + 1)); [ $t -ge 120 ] && fail "the slow run did not start: $("$RUNEXP" status "$CFG" "${ARGS[@]}")"
    done
    grep -q "done:" "$log" && fail "the slow run finished before it could be cancelled (make it slower)"
    scancel "${job}_0"
    wait_queue_empty "$job" 60
    local st; st="$(state_of)"
    [ "$st" = interrupted ] || [ "$st" = failed ] || fail "cancelled run shows '$st': $("$RUNEXP" status "$CFG" "${ARGS[@]}")"
    echo "real: ($SECONDS s) slow run cancelled with scancel at $(grep -o 'step [0-9]*/15000' "$log" | tail -1): status '$st'"
    "$RUNEXP" sweep "$CFG" "${ARGS[@]}" --slurm | grep -q "add --retry-failed" || fail "plain sweep resubmitted it"
    out="$("$RUNEXP" sweep "$CFG" "${ARGS[@]}" --slurm --retry-failed --cpus-per-task 1 2>&1)" || fail "retry: $out"
    echo "$out" | grep -q "submitted 1 run(s)" || fail "retry: $out"
    job="$(echo "$out" | sed -n 's/.*as job array \([0-9]*\).*/\1/p')"
    wait_queue_empty "$job" 150
    log="$OUT/slurm/it_sweep-${job}_0.log"
    [ "$(state_of)" = done ] || fail "retried run not done: $("$RUNEXP" status "$CFG" "${ARGS[@]}"; cat "$log")"
    grep -q "resumed at step" "$log" || fail "the retried run did not resume from its checkpoint: $(head "$log")"
    "$RUNEXP" status "$CFG" "${ARGS[@]}" | grep -q "done 4, running 0, pending 0, failed 0, interrupted 0, new 0" ||
        fail "final status"
    echo "real: --retry-failed $(grep -o 'resumed at step [0-9]*' "$log"), done; whole test $SECONDS s"
}

case "$mode" in
fake) fake ;;
real) real ;;
*) echo "usage: $0 fake|real RUNEXP CONFIG"; exit 2 ;;
esac
echo "ok"
