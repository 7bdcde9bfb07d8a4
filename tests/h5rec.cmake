# results/h5rec: the per-run HDF5 record (tests/test_h5rec.c; argv[1] picks the case).
ll_add_test_exe(test_h5rec ${CMAKE_CURRENT_SOURCE_DIR}/test_h5rec.c)
add_test(NAME record_h5_roundtrip COMMAND test_h5rec roundtrip)
add_test(NAME record_h5_truncate COMMAND test_h5rec truncate)
add_test(NAME fault_h5_kill COMMAND test_h5rec kill)
add_test(NAME fault_h5_readonly COMMAND test_h5rec readonly)
