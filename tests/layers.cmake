# Gradient checks of the transformer layers, LoRA and whole tiny-ViT steps (tests/test_grad_layers.c).
ll_add_test_exe(test_grad_layers ${CMAKE_CURRENT_SOURCE_DIR}/test_grad_layers.c)
foreach(check linear layernorm attention attention_causal gelu silu xent tokens_cls tokens_mean)
  add_test(NAME grad_${check} COMMAND test_grad_layers ${check})
endforeach()
add_test(NAME grad_vit_step COMMAND test_grad_layers vit)
add_test(NAME grad_lora_vit_step COMMAND test_grad_layers vit_lora)
add_test(NAME grad_init_capabilities COMMAND test_grad_layers capabilities)
