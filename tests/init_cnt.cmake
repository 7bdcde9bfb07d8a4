# CNTLoRA initializer (tests/test_init_cnt.c; fixtures: scripts/make_cnt_fixtures.py -> tests/fixtures/init_cnt_ref.safetensors).
ll_add_test_exe(test_init_cnt ${CMAKE_CURRENT_SOURCE_DIR}/test_init_cnt.c)
foreach(t x_closed_form modes vas)
  add_test(NAME init_cnt_${t} COMMAND test_init_cnt ${t})
endforeach()
add_test(NAME init_cnt_bad_input COMMAND test_init_cnt bad)
add_test(NAME ref_init_cnt COMMAND test_init_cnt ref)
