# Research metrics recorded by the runner (tests/test_metrics.c; experiments/metrics.h, docs/metrics.md).
ll_add_test_exe(test_metrics ${CMAKE_CURRENT_SOURCE_DIR}/test_metrics.c)
foreach(case welford gv_exact drift_spectra il_teacher)
  add_test(NAME metrics_${case} COMMAND test_metrics ${case})
endforeach()
set(METRICS_CFG ${CMAKE_CURRENT_SOURCE_DIR}/data/metrics/it_metrics.yaml)
add_test(NAME it_metrics_record COMMAND test_metrics record $<TARGET_FILE:runexp> ${METRICS_CFG})
add_test(NAME it_metrics_bitwise COMMAND test_metrics bitwise $<TARGET_FILE:runexp> ${METRICS_CFG})
add_test(NAME it_metrics_lora_xs COMMAND test_metrics lora_xs $<TARGET_FILE:runexp> ${METRICS_CFG})
set_tests_properties(it_metrics_record it_metrics_bitwise it_metrics_lora_xs PROPERTIES SKIP_RETURN_CODE 77)
add_test(NAME it_metrics_resume COMMAND test_metrics resume $<TARGET_FILE:runexp>
         ${CMAKE_CURRENT_SOURCE_DIR}/data/metrics/it_metrics_resume.yaml)
set_tests_properties(it_metrics_resume PROPERTIES SKIP_RETURN_CODE 77)
