"""tools/gpu/report.py reads ctest's log: complete runs in both summary formats, cut runs."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "gpu"))
import report  # noqa: E402

LINES = ("      Start  1: A.One\n 1/3 Test  #1: A.One ......   Passed    0.01 sec\n"
         " 2/3 Test  #2: A.Two ......***Skipped   0.00 sec\n"
         " 3/3 Test  #3: A.Three ....***Failed    0.02 sec\n")


def counts(tmp_path, text):
    (tmp_path / "ctest.log").write_text(text)
    return report.tests(str(tmp_path))


def test_summary_with_failures_is_complete(tmp_path):
    t = counts(tmp_path, LINES + "67% tests passed, 1 tests failed out of 3\n")
    assert (t["passed"], t["failed"], t["skipped"], t["complete"]) == (1, 1, 1, True)
    assert t["failed_names"] == ["A.Three"]


def test_summary_without_failed_part_is_complete(tmp_path):
    # ctest prints "100% tests passed out of N" when nothing failed (seen on the GPU machine).
    t = counts(tmp_path, LINES.replace("***Failed ", "   Passed") + "100% tests passed out of 3\n")
    assert (t["passed"], t["failed"], t["complete"]) == (2, 0, True)


def test_log_without_summary_is_cut_short(tmp_path):
    t = counts(tmp_path, LINES)
    assert t["complete"] is False
