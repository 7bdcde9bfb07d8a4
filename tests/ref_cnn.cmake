# core/cnn.c's ResNet and VGG against PyTorch fixtures (scripts/make_cnn_fixtures.py writes tests/fixtures/).
ll_add_test_exe(test_ref_cnn ${CMAKE_CURRENT_SOURCE_DIR}/test_ref_cnn.c)
foreach(fx resnet_train resnet_eval vgg_train vgg_eval)
  add_test(NAME ref_cnn_${fx} COMMAND test_ref_cnn ${fx})
endforeach()
