# The adapter seam's gradient-from-delta, regularizer, tangent and merge entries, conv adapter slots and the
# LAVA kinds (tests/test_lava.c): FD checks of lava_conv / reshape-LoRA in ResNet and VGG and of LAVA in a ViT,
# the regularizer against its formula, merge / unmerge, tangent projections, errors, and a runexp run.
ll_add_test_exe(test_lava ${CMAKE_CURRENT_SOURCE_DIR}/test_lava.c)
foreach(t grad_lava_conv grad_reshape_lora grad_lava_vit lava_regularizer adapter_backward_delta adapter_merge
          adapter_tangent conv_slot_capabilities adapter_errors)
  add_test(NAME ${t} COMMAND test_lava ${t})
endforeach()
add_test(NAME it_lava_conv_runexp COMMAND test_lava it_lava_conv_runexp $<TARGET_FILE:runexp>
         ${CMAKE_CURRENT_SOURCE_DIR}/data/runexp/lava_conv.yaml)
set_tests_properties(it_lava_conv_runexp PROPERTIES SKIP_RETURN_CODE 77)
