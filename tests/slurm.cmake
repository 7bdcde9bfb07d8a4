# runexp sweep --slurm / status / collect (tests/test_slurm.sh; docs/cluster.md).
#   it_sweep_fake   stand-in sbatch/squeue: the array script, job ids, states from the queue, --retry-failed,
#                   results.shard + runexp collect (twice: nothing changes)
#   it_slurm_array  a real one-node SLURM (root + scripts/deps.sh's slurm packages, else SKIP): a 4-run array, a
#                   slow run cancelled with scancel, finished by --retry-failed
set(SWEEP_TINY ${CMAKE_CURRENT_SOURCE_DIR}/data/sweep/tiny4.yaml)
add_test(NAME it_sweep_fake COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_slurm.sh fake $<TARGET_FILE:runexp> ${SWEEP_TINY})
add_test(NAME it_slurm_array COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_slurm.sh real $<TARGET_FILE:runexp> ${SWEEP_TINY})
set_tests_properties(it_sweep_fake it_slurm_array PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
