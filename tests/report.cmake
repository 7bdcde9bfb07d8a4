# results/report + results/figure: tables and gnuplot figures from the record (tests/test_report.c; argv[1] picks
# the case). docs/report.md.
ll_add_test_exe(test_report ${CMAKE_CURRENT_SOURCE_DIR}/test_report.c)
add_test(NAME report_table_values COMMAND test_report values)
add_test(NAME report_table_latex COMMAND test_report latex)
add_test(NAME report_table_paper COMMAND test_report paper)
add_test(NAME report_table_errors COMMAND test_report errors)
add_test(NAME report_figure_png COMMAND test_report figure)
add_test(NAME report_no_gnuplot COMMAND test_report nogp)
# without gnuplot on PATH the figure test SKIPs (report_no_gnuplot checks that case's error)
set_tests_properties(report_figure_png PROPERTIES SKIP_RETURN_CODE 77)
add_test(NAME report_metric_columns COMMAND test_report metric_cols)
