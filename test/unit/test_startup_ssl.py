"""processor.startup.ca_certificates_on_first_use: aiohttp's default client contexts
get their CA store when a client first asks for one, and the same store as without."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import ssl
from processor.startup import ca_certificates_on_first_use
with ca_certificates_on_first_use():
    import aiohttp.web
import aiohttp.connector as c
assert ssl.SSLContext.set_default_verify_paths.__name__ == "set_default_verify_paths"
before = c._SSL_CONTEXT_VERIFIED.cert_store_stats()

class Request:
    ssl = True
    def is_ssl(self):
        return True

connector = c.TCPConnector.__new__(c.TCPConnector)
connector._ssl = True  # what TCPConnector() sets by default
context = connector._get_ssl_context(Request())
reference = ssl.create_default_context().cert_store_stats()
print(before["x509_ca"], context is c._SSL_CONTEXT_VERIFIED,
      context.cert_store_stats() == reference, reference["x509_ca"] > 0,
      c.TCPConnector._get_ssl_context.__name__)
"""


def test_default_contexts_load_their_ca_store_on_first_use() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True", "True", "True", "_get_ssl_context"]
