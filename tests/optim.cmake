# Optimizers vs torch.optim fixtures, clipping, schedules, and the counter-based RNG.
ll_add_test_exe(test_optim ${CMAKE_CURRENT_SOURCE_DIR}/test_optim.c)
add_test(NAME ref_optim_adamw COMMAND test_optim adamw)
add_test(NAME ref_optim_sgd COMMAND test_optim sgd)
add_test(NAME optim_clip COMMAND test_optim clip)
add_test(NAME optim_schedules COMMAND test_optim sched)
add_test(NAME rng_philox COMMAND test_optim rng)
