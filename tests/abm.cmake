# ABM-LoRA stage 1 (tests/test_abm.c): the boundary loss and its gradient, layer weights, the injected gradient
# on a tiny ViT and tiny CNNs against finite differences, stage 1 lowering the loss and the sign mismatches, the
# CNN's match points (pre-ReLU values through batchnorm).
ll_add_test_exe(test_abm ${CMAKE_CURRENT_SOURCE_DIR}/test_abm.c)
foreach(check abm_loss_grad abm_weights grad_abm_inject abm_stage1_decreases abm_cnn_points grad_abm_inject_cnn
              abm_stage1_cnn)
  add_test(NAME ${check} COMMAND test_abm ${check})
endforeach()
add_test(NAME it_abm_cnn_runexp COMMAND test_abm it_abm_cnn_runexp $<TARGET_FILE:runexp>
         ${CMAKE_CURRENT_SOURCE_DIR}/data/abm/abm_cnn.yaml)
set_tests_properties(it_abm_cnn_runexp PROPERTIES SKIP_RETURN_CODE 77)
