# The C engine against PyTorch fixtures (scripts/make_fixtures.py writes tests/fixtures/).
ll_add_test_exe(test_ref ${CMAKE_CURRENT_SOURCE_DIR}/test_ref.c)
foreach(fx tiny_vit tiny_vit_mean tiny_vit_lora tiny_vit_hf)
  add_test(NAME ref_${fx} COMMAND test_ref ${fx})
endforeach()
