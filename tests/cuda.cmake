# CPU vs CUDA parity (built with the CUDA backend; each test exits 77 = SKIP without a GPU, so CI without a
# GPU stays green). One ctest per op family plus whole-model checks; tests/test_parity.c states tolerances.
if(LORALAB_HAVE_CUDA)
  ll_add_test_exe(test_parity ${CMAKE_CURRENT_SOURCE_DIR}/test_parity.c)
  foreach(case linear layernorm gelu xent adamw lora attention tokens vit_forward vit_step)
    add_test(NAME parity_${case} COMMAND test_parity ${case})
    set_tests_properties(parity_${case} PROPERTIES SKIP_RETURN_CODE 77)
  endforeach()
endif()
