#!/usr/bin/env bash
# The runner's device switch and data parallelism end to end (docs/engine.md "device", docs/cluster.md):
#   test_device.sh RUNEXP CONFIG errors   device: cuda / --gpus on a machine without a usable GPU say so and fail
#                                        (skipped when a GPU is present: the GPU cases cover it)
#   test_device.sh RUNEXP CONFIG cpu_cuda the same small ViT LoRA fine-tune with device cpu, cuda, and cuda through
#                                        the NCCL path with --gpus 1: the CUDA losses within bf16 tolerance of the
#                                        CPU's, the NCCL run's equal to the plain CUDA run's, runs.device and the
#                                        'gpus' result recorded; device: cuda on an unsupported adapter is an error
# SKIPs (77) without Fashion-MNIST, and (cpu_cuda) without a GPU.
set -u
runexp=$1 cfg=$2 mode=$3
fm=${LORALAB_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
[ -d "$fm" ] || { echo "no Fashion-MNIST at $fm: skipped"; exit 77; }
have_gpu=0; nvidia-smi -L >/dev/null 2>&1 && have_gpu=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$1"; then echo "ok: $2"; else echo "FAIL: $2"; fail=1; fi; }
val() { "$runexp" query --db "$1/runs.db" --csv "SELECT value FROM results WHERE key = '$2' AND step IS NULL" | tail -n 1; }

if [ "$mode" = errors ]; then
    [ $have_gpu = 1 ] && { echo "a GPU is present: the cpu_cuda case covers the GPU paths; skipped"; exit 77; }
    out=$("$runexp" "$cfg" output="$tmp/a" device=cuda 2>&1); rc=$?
    echo "$out" | tail -n 3
    check '[ $rc -ne 0 ] && echo "$out" | grep -q -e "no CUDA device" -e "no CUDA backend"' "device: cuda without a GPU fails and says why"
    out=$("$runexp" "$cfg" output="$tmp/b" device=auto trainer.max_steps=3 2>&1); rc=$?
    check '[ $rc -eq 0 ] && ! echo "$out" | grep -q "device auto"' "device: auto without a GPU trains on the CPU, silently"
    check '[ "$(val "$tmp/b" gpus)" = "0.0" ] || [ "$(val "$tmp/b" gpus)" = "0" ]' "gpus result 0"
    out=$(timeout 120 "$runexp" "$cfg" output="$tmp/c" --gpus 1 2>&1); rc=$?
    echo "$out" | tail -n 3
    check '[ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q -e "NCCL" -e "no CUDA" -e "nccl"' "--gpus 1 without a GPU fails (no hang) and says why"
    exit $fail
fi

[ $have_gpu = 1 ] || { echo "no GPU: skipped"; exit 77; }
t0=$(date +%s.%N)
"$runexp" "$cfg" output="$tmp/cpu" device=cpu --log-every 20 || fail=1
t1=$(date +%s.%N)
"$runexp" "$cfg" output="$tmp/cuda" device=cuda --log-every 20 || fail=1
t2=$(date +%s.%N)
"$runexp" "$cfg" output="$tmp/nccl" device=cuda --gpus 1 --log-every 20 || fail=1
t3=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN { printf "wall: cpu %.1f s, cuda %.1f s, cuda --gpus 1 %.1f s\n", b - a, c - b, d - c }'
for k in train_loss test_loss test_acc gpus; do
    printf "%-11s cpu %-22s cuda %-22s nccl %s\n" $k "$(val "$tmp/cpu" $k)" "$(val "$tmp/cuda" $k)" "$(val "$tmp/nccl" $k)"
done
lc=$(val "$tmp/cpu" train_loss) lg=$(val "$tmp/cuda" train_loss) ln=$(val "$tmp/nccl" train_loss)
ac=$(val "$tmp/cpu" test_acc) ag=$(val "$tmp/cuda" test_acc) an=$(val "$tmp/nccl" test_acc)
rel=$(awk -v a="$lg" -v b="$lc" 'BEGIN { d = a - b; if (d < 0) d = -d; print d / b }')
echo "final train loss (mean of the last steps): relative CPU-CUDA difference $rel (tolerance 3e-2)"
check 'awk -v r="$rel" "BEGIN { exit !(r <= 3e-2) }"' "CUDA train loss within 3e-2 of the CPU's"
check 'awk -v a="$ag" -v b="$ac" "BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.05) }"' "CUDA test accuracy within 5 points of the CPU's"
check '[ "$ln" = "$lg" ] && [ "$an" = "$ag" ]' "NCCL path (--gpus 1) losses and accuracy equal the plain CUDA run's"
check '[ "$(val "$tmp/cpu" gpus)" = "0.0" ] && [ "$(val "$tmp/cuda" gpus)" = "1.0" ] && [ "$(val "$tmp/nccl" gpus)" = "1.0" ]' "gpus result 0 / 1 / 1"
dev() { "$runexp" query --db "$1/runs.db" --csv "SELECT device FROM runs" | tail -n 1; }
check '[ "$(dev "$tmp/cpu")" = cpu ] && [ "$(dev "$tmp/cuda")" = cuda ] && [ "$(dev "$tmp/nccl")" = cuda ]' "runs.device cpu / cuda / cuda"
out=$("$runexp" "$cfg" output="$tmp/dora" device=cuda method.adapter=dora 2>&1); rc=$?
echo "$out" | grep -m1 "cannot train on the GPU"
check '[ $rc -ne 0 ] && echo "$out" | grep -q "cannot train on the GPU"' "device: cuda with DoRA is refused with the reason"
out=$("$runexp" "$cfg" output="$tmp/auto" method.adapter=dora trainer.max_steps=3 2>&1); rc=$?
echo "$out" | grep -m1 "device auto"
check '[ $rc -eq 0 ] && echo "$out" | grep -q "device auto: CPU"' "device: auto with DoRA falls back to the CPU with a note"
exit $fail
