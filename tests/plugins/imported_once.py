"""Test only: stands for a library an extractor imports lazily. Each process that imports it
appends its pid to the file named by AUDIOKIT_TEST_IMPORT_LOG."""

import os

_log = os.environ.get("AUDIOKIT_TEST_IMPORT_LOG")
if _log:
    with open(_log, "a") as f:
        f.write(f"{os.getpid()}\n")
