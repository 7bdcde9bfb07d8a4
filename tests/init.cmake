# Initializers' properties and reference fixtures (tests/test_init.c; fixtures: scripts/make_init_fixtures.py).
ll_add_test_exe(test_init ${CMAKE_CURRENT_SOURCE_DIR}/test_init.c)
foreach(i kaiming gaussian orthogonal pissa olora lora_xs)
  add_test(NAME init_${i} COMMAND test_init ${i})
endforeach()
add_test(NAME init_bad_input COMMAND test_init bad)
foreach(i pissa olora)
  add_test(NAME ref_init_${i} COMMAND test_init ref_${i})
endforeach()
# init_lora_xs SKIPs while no "lora_xs" adapter kind is registered.
set_tests_properties(init_lora_xs PROPERTIES SKIP_RETURN_CODE 77)
