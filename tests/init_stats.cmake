# The data passes' second moments (init_input_stats) and EVA's Gram PCA / CorDA's covariance built on them
# (tests/test_init_stats.c).
ll_add_test_exe(test_init_stats ${CMAKE_CURRENT_SOURCE_DIR}/test_init_stats.c)
add_test(NAME init_input_stats COMMAND test_init_stats stats)
add_test(NAME init_eva_pca_gram COMMAND test_init_stats pca_gram)
add_test(NAME init_eva_gram COMMAND test_init_stats eva_gram)
add_test(NAME init_corda_stats COMMAND test_init_stats corda_stats)
# EVA and CorDA with the GPU's statistics against the CPU's (SKIP without a GPU or CUDA)
add_test(NAME init_act_cuda COMMAND test_init_stats cuda)
set_tests_properties(init_act_cuda PROPERTIES SKIP_RETURN_CODE 77)
