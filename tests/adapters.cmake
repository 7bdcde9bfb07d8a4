# The DoRA and LoRA-XS adapter kinds (tests/test_adapters.c): FD gradient checks on a row-sliced linear and in a
# tiny ViT, DoRA's identity at init, LoRA-XS's frozen factors, DoRA against PyTorch
# (scripts/make_adapter_fixtures.py writes tests/fixtures/dora_ref.safetensors).
ll_add_test_exe(test_adapters ${CMAKE_CURRENT_SOURCE_DIR}/test_adapters.c)
add_test(NAME grad_dora COMMAND test_adapters grad_dora)
add_test(NAME grad_lora_xs COMMAND test_adapters grad_lora_xs)
add_test(NAME adapter_dora_init COMMAND test_adapters dora_init)
add_test(NAME adapter_lora_xs_frozen COMMAND test_adapters lora_xs_frozen)
add_test(NAME ref_dora COMMAND test_adapters ref_dora)
