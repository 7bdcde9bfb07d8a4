# ViT checkpoints: round trip and malformed / mismatched files (tests/test_checkpoint.c).
ll_add_test_exe(test_checkpoint ${CMAKE_CURRENT_SOURCE_DIR}/test_checkpoint.c)
add_test(NAME record_vit_checkpoint COMMAND test_checkpoint roundtrip)
add_test(NAME fault_vit_checkpoint COMMAND test_checkpoint faults)
