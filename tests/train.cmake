# Whole training runs (tests/test_train.c).
ll_add_test_exe(test_train ${CMAKE_CURRENT_SOURCE_DIR}/test_train.c)
add_test(NAME it_determinism COMMAND test_train determinism)
add_test(NAME it_arena_steady COMMAND test_train arena)
add_test(NAME it_resume_exact COMMAND test_train resume)
add_test(NAME it_fmnist_train COMMAND test_train fmnist)
set_tests_properties(it_fmnist_train PROPERTIES SKIP_RETURN_CODE 77)
