# The runexp program end to end (tests/test_runexp.c; SKIP without Fashion-MNIST).
ll_add_test_exe(test_runexp ${CMAKE_CURRENT_SOURCE_DIR}/test_runexp.c)
set(RUNEXP_TINY ${CMAKE_CURRENT_SOURCE_DIR}/data/runexp/tiny.yaml)
add_test(NAME fault_runexp_kill COMMAND test_runexp kill $<TARGET_FILE:runexp> ${RUNEXP_TINY})
add_test(NAME it_runexp_sigint COMMAND test_runexp sigint $<TARGET_FILE:runexp> ${RUNEXP_TINY})
add_test(NAME config_runexp_errors COMMAND test_runexp errors $<TARGET_FILE:runexp> ${RUNEXP_TINY})
add_test(NAME fault_runexp_broken_h5 COMMAND test_runexp broken $<TARGET_FILE:runexp> ${RUNEXP_TINY})
add_test(NAME report_runexp_jobs COMMAND test_runexp jobs $<TARGET_FILE:runexp> ${RUNEXP_TINY})
add_test(NAME fault_runexp_disk_full COMMAND test_runexp diskfull $<TARGET_FILE:runexp> ${RUNEXP_TINY})
add_test(NAME report_runexp_profiles COMMAND test_runexp profiles $<TARGET_FILE:runexp> ${RUNEXP_TINY})
add_test(NAME fault_runexp_concurrent COMMAND test_runexp concurrent $<TARGET_FILE:runexp> ${RUNEXP_TINY})
set_tests_properties(fault_runexp_kill fault_runexp_broken_h5 it_runexp_sigint config_runexp_errors report_runexp_jobs
                     fault_runexp_disk_full report_runexp_profiles fault_runexp_concurrent PROPERTIES SKIP_RETURN_CODE 77)
