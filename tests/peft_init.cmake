# PiSSA and OLoRA against PEFT's own output (tests/test_peft_init.c).
ll_add_test_exe(test_peft_init ${CMAKE_CURRENT_SOURCE_DIR}/test_peft_init.c)
add_test(NAME ref_peft_init_pissa COMMAND test_peft_init pissa)
add_test(NAME ref_peft_init_olora COMMAND test_peft_init olora)
add_test(NAME peft_random_orthogonal COMMAND test_peft_init random_orthogonal)
add_test(NAME peft_random_gaussian COMMAND test_peft_init random_gaussian)
