# datasets/: image files, PIL-exact bicubic resize, VTAB-1k folders, CIFAR-10 binaries, the mini-VTAB generator
# and the dataset kinds of experiments/task.c (tests/test_vtab.c; argv[1] picks the case).
ll_add_test_exe(test_vtab ${CMAKE_CURRENT_SOURCE_DIR}/test_vtab.c)
add_test(NAME vtab_resize COMMAND test_vtab resize)
add_test(NAME vtab_load COMMAND test_vtab load)
add_test(NAME fault_vtab_errors COMMAND test_vtab errors)
add_test(NAME vtab_cifar10 COMMAND test_vtab cifar)
add_test(NAME vtab_minivtab COMMAND test_vtab minivtab)
set_tests_properties(vtab_minivtab PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
