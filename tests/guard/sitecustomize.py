"""TEST GUARD loader (tests only): the test suite puts this folder on PYTHONPATH, so every
Python process it starts (inv, fab, the audit's pytest) runs with gpuhub_test_guard."""
import gpuhub_test_guard

gpuhub_test_guard.install()
