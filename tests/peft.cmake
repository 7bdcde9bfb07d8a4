# Adapters in PEFT's format (tests/test_peft.c); the fixture comes from real PEFT (scripts/make_peft_fixture.py).
ll_add_test_exe(test_peft ${CMAKE_CURRENT_SOURCE_DIR}/test_peft.c)
add_test(NAME ref_peft_load COMMAND test_peft ref)
add_test(NAME record_peft_roundtrip COMMAND test_peft roundtrip)
add_test(NAME fault_peft_mismatch COMMAND test_peft mismatch)
add_test(NAME record_peft_kinds COMMAND test_peft kinds)
