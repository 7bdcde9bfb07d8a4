# CNN layers (core/cpu/{conv2d,pool2d,batchnorm,dropout,relu}) and the ResNet/VGG backbones (core/cnn).
ll_add_test_exe(test_cnn ${CMAKE_CURRENT_SOURCE_DIR}/test_cnn.c)
foreach(t grad_conv2d conv2d_direct grad_maxpool2d grad_avgpool2d grad_global_avgpool
          grad_batchnorm_train grad_batchnorm_frozen batchnorm_running_stats grad_dropout grad_relu
          cnn_build grad_cnn_resnet grad_cnn_vgg cnn_arena_steady)
  add_test(NAME ${t} COMMAND test_cnn ${t})
endforeach()
