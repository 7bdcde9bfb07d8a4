# The CNN paper config's quick profile end to end (tests/test_paper_cnn.c; SKIP without Fashion-MNIST):
# configs/lava_toy.yaml --quick, its parameter counts against closed forms and its report CSVs against the database.
ll_add_test_exe(test_paper_cnn ${CMAKE_CURRENT_SOURCE_DIR}/test_paper_cnn.c)
add_test(NAME it_lava_toy_quick COMMAND test_paper_cnn lava_toy $<TARGET_FILE:runexp>)
set_tests_properties(it_lava_toy_quick PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
