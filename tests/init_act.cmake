# The activation-driven initializers EVA and CorDA (tests/test_init_act.c; fixtures:
# scripts/make_act_init_fixtures.py -> tests/fixtures/init_act_ref.safetensors).
ll_add_test_exe(test_init_act ${CMAKE_CURRENT_SOURCE_DIR}/test_init_act.c)
add_test(NAME init_eva COMMAND test_init_act eva)
add_test(NAME init_corda COMMAND test_init_act corda)
add_test(NAME init_act_bad_input COMMAND test_init_act bad)
add_test(NAME ref_init_eva COMMAND test_init_act ref_eva)
add_test(NAME ref_init_corda COMMAND test_init_act ref_corda)
# The same checks against PEFT's own EVA and CorDA (scripts/make_peft_act_fixtures.py, run where PEFT is).
add_test(NAME peft_init_eva COMMAND test_init_act peft_eva)
add_test(NAME peft_init_corda COMMAND test_init_act peft_corda)
