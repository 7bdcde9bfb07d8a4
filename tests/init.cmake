# Initializers' properties (tests/test_init.c).
ll_add_test_exe(test_init ${CMAKE_CURRENT_SOURCE_DIR}/test_init.c)
foreach(i kaiming gaussian orthogonal)
  add_test(NAME init_${i} COMMAND test_init ${i})
endforeach()
add_test(NAME init_bad_input COMMAND test_init bad)
