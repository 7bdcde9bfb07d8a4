# datasets/idx: IDX / Fashion-MNIST loader (tests/test_idx.c; argv[1] picks the case).
ll_add_test_exe(test_idx ${CMAKE_CURRENT_SOURCE_DIR}/test_idx.c)
add_test(NAME idx_load COMMAND test_idx load)
add_test(NAME idx_missing COMMAND test_idx missing)
add_test(NAME fault_idx_truncated COMMAND test_idx fault)
add_test(NAME idx_fashion_mnist COMMAND test_idx fashion)
set_tests_properties(idx_fashion_mnist PROPERTIES SKIP_RETURN_CODE 77)
