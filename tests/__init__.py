"""The test suite: tests/unit (no process started), tests/e2e (real processes), their shared
helpers in tests/support, and what the end-to-end tests run (tests/apps, tests/js)."""
