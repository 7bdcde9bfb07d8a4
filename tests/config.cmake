# experiments/config, schema, grid, sha256: YAML configs, includes, overrides, validation, grids, run ids
# (tests/test_config.c; argv[1] picks the case). docs/config.md.
ll_add_test_exe(test_config ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c)
foreach(case yaml_load includes overrides schema_errors schema_self fragments grid flatten sha256 profiles)
  add_test(NAME config_${case} COMMAND test_config ${case})
endforeach()
