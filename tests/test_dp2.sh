#!/usr/bin/env bash
# tests/test_dp2.sh RUNEXP CONFIG: issue 9's check on 2 GPUs of one host (SKIP = 77 with fewer than 2 GPUs).
# 20 steps of ViT-B/16 LoRA (CONFIG: tests/data/device/vitb16_dp.yaml) with a global batch of 128 on one GPU
# (device: cuda) and on two (--gpus 2: 64 per GPU, NCCL); the per-step training losses (printed by --log-every 1)
# must agree within bf16 tolerance: |a - b| <= 2e-2 max(|a|, 1) at every step (the two differ by the f32
# all-reduce's summation order and by cuBLASLt's algorithms for the per-rank shapes, both compounded over steps).
set -uo pipefail
runexp="$1"; cfg="$2"
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${ngpu:-0}" -lt 2 ]; then echo "fewer than 2 GPUs ($ngpu): SKIP"; exit 77; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
root="$(dirname "$runexp")/mini-vtab"
if [ ! -f "$root/MINIVTAB_STAMP" ]; then
    "$runexp" data mini-vtab --out "$root" --size 32 > "$tmp/gen.log" 2>&1 || { cat "$tmp/gen.log"; echo "FAIL: mini-VTAB generation (LORALAB_FASHION_MNIST?)"; exit 1; }
fi
run() { # name, extra args
    local n=$1; shift
    NCCL_NVLS_ENABLE=0 timeout 900 "$runexp" "$cfg" "output=$tmp/$n" "dataset.root=$root" --log-every 1 --force "$@" > "$tmp/$n.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || { tail -20 "$tmp/$n.log"; echo "FAIL: runexp $n exited $rc"; exit 1; }
    grep -o 'step [0-9]*/[0-9]* loss [0-9.e+-]*' "$tmp/$n.log" | awk '{ print $4 }' > "$tmp/$n.loss"
}
run g1
run g2 --gpus 2
n1=$(wc -l < "$tmp/g1.loss"); n2=$(wc -l < "$tmp/g2.loss")
[ "$n1" -eq 20 ] && [ "$n2" -eq 20 ] || { echo "FAIL: $n1 and $n2 logged steps, expected 20 each"; exit 1; }
paste "$tmp/g1.loss" "$tmp/g2.loss" | awk '
    { d = $1 - $2; if (d < 0) d = -d; s = ($1 < 0 ? -$1 : $1); if (s < 1) s = 1; r = d / s; if (r > worst) { worst = r; at = NR }
      printf "step %2d: 1 GPU %.5f  2 GPUs %.5f  |diff| / max(|loss|, 1) %.2e\n", NR, $1, $2, r }
    END { printf "largest difference %.2e at step %d (tolerance 2e-2)\n", worst, at; exit !(worst <= 2e-2) }'
rc=$?
[ $rc -eq 0 ] && echo "PASS: 2 GPUs x 64 give the losses of 1 GPU x 128" || echo "FAIL: the losses differ beyond bf16 tolerance"
exit $rc
