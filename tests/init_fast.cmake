# The fast paths of the SVD/QR initializers keep their results (tests/test_init_fast.c): OLoRA's thin QR of the
# first r columns vs la_qr of W0; every adapter-parallel init with 1 and 2 threads, bit for bit; the helper.
ll_add_test_exe(test_init_fast ${CMAKE_CURRENT_SOURCE_DIR}/test_init_fast.c)
add_test(NAME init_olora_thin_qr COMMAND test_init_fast olora_thin_qr)
add_test(NAME init_parallel COMMAND test_init_fast parallel)
add_test(NAME parallel_items COMMAND test_init_fast parallel_items)
# Not a test: the SVD candidates for la_svd_top timed at 768 x 768 (docs/engine.md, "Init cost").
ll_add_test_exe(bench_svd_top ${CMAKE_CURRENT_SOURCE_DIR}/bench_svd_top.c)
# Not a test: PiSSA / OLoRA / LoRA-GA's linear algebra on 24 adapters of 768 x 768, now and the old way.
ll_add_test_exe(bench_init_cost ${CMAKE_CURRENT_SOURCE_DIR}/bench_init_cost.c)
