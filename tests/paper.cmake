# The paper configs' quick profiles end to end (tests/test_paper.c; SKIP without Fashion-MNIST).
ll_add_test_exe(test_paper ${CMAKE_CURRENT_SOURCE_DIR}/test_paper.c)
add_test(NAME it_vtab_abm_quick COMMAND test_paper vtab_abm $<TARGET_FILE:runexp>)
set_tests_properties(it_vtab_abm_quick PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
