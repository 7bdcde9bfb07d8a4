# CPU vs CUDA parity (built with the CUDA backend; each test exits 77 = SKIP without a GPU, so CI without a
# GPU stays green). One ctest per op family plus whole-model checks; tests/test_parity.c states tolerances.
if(LORALAB_HAVE_CUDA)
  ll_add_test_exe(test_parity ${CMAKE_CURRENT_SOURCE_DIR}/test_parity.c)
  foreach(case linear layernorm gelu xent adamw lora lora_db attention tokens vit_forward vit_step vit_grads vit_graph linalg)
    add_test(NAME parity_${case} COMMAND test_parity ${case})
    set_tests_properties(parity_${case} PROPERTIES SKIP_RETURN_CODE 77)
  endforeach()
  # the two-kernel attention backward (dQ, then dK / dV), which the one-kernel backward replaced for T <= 208
  add_test(NAME parity_attention_twopass COMMAND test_parity attention)
  set_tests_properties(parity_attention_twopass PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_ATTENTION=twopass)
  # the cluster attention backward (2 blocks per head; T <= 208), the measured slower alternative to the one kernel
  # (parity_attention also compares the two directly)
  add_test(NAME parity_attention_cluster COMMAND test_parity attention)
  set_tests_properties(parity_attention_cluster PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_ATTENTION=cluster)
  add_test(NAME parity_vit_step_attention_cluster COMMAND test_parity vit_step)
  set_tests_properties(parity_vit_step_attention_cluster PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_ATTENTION=cluster)
  # the GEMM algorithm tuning (core/cuda/cuda_backend.cu): tuned ViT-B/16-sized linears against the host, the file
  ll_add_test_exe(test_gemm_tune ${CMAKE_CURRENT_SOURCE_DIR}/test_gemm_tune.c)
  add_test(NAME parity_gemm_tune COMMAND test_gemm_tune)
  set_tests_properties(parity_gemm_tune PROPERTIES SKIP_RETURN_CODE 77)
  # the attention kernels alone (cudaEvents; not a test): bench_attention [batch (64)] [iterations (50)]
  add_executable(bench_attention ${PROJECT_SOURCE_DIR}/scripts/bench/bench_attention.cu)
  target_link_libraries(bench_attention PRIVATE ll_core)
  # the LoRA B-gradient kernel vs cuBLASLt on the ViT-B/16 step's shapes (not a test): bench_lora_db [batch ...]
  add_executable(bench_lora_db ${PROJECT_SOURCE_DIR}/scripts/bench/bench_lora_db.cu)
  target_link_libraries(bench_lora_db PRIVATE ll_core)
  # the previous GELU math behind its switch (libdevice erff): op parity and whole LoRA steps
  add_test(NAME parity_gelu_erff COMMAND test_parity gelu)
  set_tests_properties(parity_gelu_erff PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_GELU=erff)
  add_test(NAME parity_vit_step_gelu_erff COMMAND test_parity vit_step)
  set_tests_properties(parity_vit_step_gelu_erff PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_GELU=erff)
  # the folded LoRA with x A_cat^T computed again in backward (not kept from forward), and the unfolded LoRA
  add_test(NAME parity_vit_step_lora_keep_xa0 COMMAND test_parity vit_step)
  set_tests_properties(parity_vit_step_lora_keep_xa0 PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_LORA_KEEP_XA=0)
  add_test(NAME parity_vit_step_lora_fold0 COMMAND test_parity vit_step)
  set_tests_properties(parity_vit_step_lora_fold0 PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_LORA_FOLD=0)
  # the previous LoRA backward behind its switch: ln1 computed again, dln1 += dxa A_cat as its own GEMM
  add_test(NAME parity_vit_step_lora_bwd_separate COMMAND test_parity vit_step)
  set_tests_properties(parity_vit_step_lora_bwd_separate PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_LORA_BWD=separate)
  # fc1's weight in its previous, untransposed layout
  add_test(NAME parity_vit_step_fc1_t0 COMMAND test_parity vit_step)
  set_tests_properties(parity_vit_step_fc1_t0 PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT LORALAB_FC1_T=0)
endif()
# The runner's device switch (device: auto|cpu|cuda) and the NCCL data-parallel path (tests/test_device.sh):
# it_device_errors runs without a GPU (SKIP with one), it_device_cpu_cuda with one (SKIP without).
set(DEVICE_CFG ${CMAKE_CURRENT_SOURCE_DIR}/data/device/vit_lora.yaml)
foreach(mode errors cpu_cuda)
  add_test(NAME it_device_${mode} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_device.sh $<TARGET_FILE:runexp> ${DEVICE_CFG} ${mode})
  set_tests_properties(it_device_${mode} PROPERTIES SKIP_RETURN_CODE 77)
endforeach()
# Issue 9: 20 steps of ViT-B/16 LoRA on 1 GPU x 128 and 2 GPUs x 64 give the same losses (tests/test_dp2.sh; SKIP
# with fewer than 2 GPUs; needs LORALAB_FASHION_MNIST to generate mini-VTAB the first time)
add_test(NAME it_dp2 COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_dp2.sh $<TARGET_FILE:runexp>
         ${CMAKE_CURRENT_SOURCE_DIR}/data/device/vitb16_dp.yaml)
set_tests_properties(it_dp2 PROPERTIES SKIP_RETURN_CODE 77)
# A timm ViT-B/16 (random weights) gives timm's logits on the CPU and the GPU (tests/test_timm_vit.c; SKIP unless
# LORALAB_TIMM_VIT_DIR names the output of scripts/make_timm_vit.py).
ll_add_test_exe(test_timm_vit ${CMAKE_CURRENT_SOURCE_DIR}/test_timm_vit.c)
add_test(NAME ref_timm_vitb16 COMMAND test_timm_vit)
set_tests_properties(ref_timm_vitb16 PROPERTIES SKIP_RETURN_CODE 77)
# The initializers' data passes on the GPU (experiments/init_cuda.h) against the CPU model's (SKIP without a GPU)
if(LORALAB_HAVE_CUDA)
  ll_add_test_exe(test_init_cuda ${CMAKE_CURRENT_SOURCE_DIR}/test_init_cuda.c)
  foreach(case stats grads)
    add_test(NAME parity_init_${case} COMMAND test_init_cuda ${case})
    set_tests_properties(parity_init_${case} PROPERTIES SKIP_RETURN_CODE 77)
  endforeach()
endif()
