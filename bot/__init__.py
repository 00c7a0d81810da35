"""The transports: chat platforms, the web server, the dispatcher and the scheduler."""

import importlib.util
import sys

# httpcore asks for sniffio at every HTTP request (several times) and, when it is not installed,
# searches the whole import path for it again each time (~0.15 ms a search, ~1.5 ms of CPU per
# message sent): marking it absent once makes each of those a dictionary lookup.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]
