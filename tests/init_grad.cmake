# The gradient-based initializers LoRA-GA and LoRA-SB (tests/test_init_grad.c; fixtures:
# scripts/make_grad_init_fixtures.py -> tests/fixtures/init_grad_ref.safetensors).
ll_add_test_exe(test_init_grad ${CMAKE_CURRENT_SOURCE_DIR}/test_init_grad.c)
add_test(NAME init_lora_ga COMMAND test_init_grad lora_ga)
add_test(NAME init_lora_sb COMMAND test_init_grad lora_sb)
add_test(NAME init_grad_bad_input COMMAND test_init_grad bad)
add_test(NAME ref_init_lora_ga COMMAND test_init_grad ref_lora_ga)
add_test(NAME ref_init_lora_sb COMMAND test_init_grad ref_lora_sb)
