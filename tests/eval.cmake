# eval/: information loss, its decomposition, spectra and drift (tests/test_eval.c; argv[1] picks the case).
ll_add_test_exe(test_eval ${CMAKE_CURRENT_SOURCE_DIR}/test_eval.c)
foreach(case info_loss info_decompose info_decompose_xs spectra)
  add_test(NAME eval_${case} COMMAND test_eval ${case})
endforeach()
