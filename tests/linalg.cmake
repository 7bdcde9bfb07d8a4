# core/linalg: SVD, top-k SVD, randomized top-k SVD, QR, eigh, pinv, orth (tests/test_linalg.c; argv[1] picks the case).
ll_add_test_exe(test_linalg ${CMAKE_CURRENT_SOURCE_DIR}/test_linalg.c)
foreach(case svd svd_top svd_lowrank qr eigh pinv orth nonfinite)
  add_test(NAME linalg_${case} COMMAND test_linalg ${case})
endforeach()
