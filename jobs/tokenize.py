"""`spark-submit jobs/tokenize.py`: the tokenize stage (see jobs/tokenize_stage.py)."""

import sys

if __name__ == "tokenize":
    # `spark-submit jobs/<stage>.py` puts jobs/ first on sys.path, so the standard library's `import
    # tokenize` finds this file. Hand that import the real module (the importer returns whatever
    # sys.modules holds once this file has run) and define nothing else.
    import importlib.util
    import os
    import sysconfig

    _spec = importlib.util.spec_from_file_location("tokenize", os.path.join(sysconfig.get_paths()["stdlib"], "tokenize.py"))
    _stdlib_tokenize = importlib.util.module_from_spec(_spec)
    sys.modules["tokenize"] = _stdlib_tokenize
    _spec.loader.exec_module(_stdlib_tokenize)
elif __name__ == "__main__":
    from jobs.tokenize_stage import main

    sys.exit(main())
