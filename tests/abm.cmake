# ABM-LoRA stage 1 (tests/test_abm.c): the boundary loss and its gradient, layer weights, the injected gradient
# on a tiny ViT against finite differences, and stage 1 lowering the loss and the sign mismatches.
ll_add_test_exe(test_abm ${CMAKE_CURRENT_SOURCE_DIR}/test_abm.c)
foreach(check abm_loss_grad abm_weights grad_abm_inject abm_stage1_decreases)
  add_test(NAME ${check} COMMAND test_abm ${check})
endforeach()
