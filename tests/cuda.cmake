# CPU vs CUDA parity (built with the CUDA backend; each test exits 77 = SKIP without a GPU).
if(LORALAB_HAVE_CUDA)
  ll_add_test_exe(test_parity ${CMAKE_CURRENT_SOURCE_DIR}/test_parity.c)
  add_test(NAME parity_linear COMMAND test_parity linear)
  set_tests_properties(parity_linear PROPERTIES SKIP_RETURN_CODE 77)
endif()
