"""The `security` stage with the real bandit and pip-audit.

pip-audit asks a vulnerability service about each package. Neither PyPI's vulnerability data
nor OSV is reachable from this machine, so the audit tests point pip-audit (`osv_url`) at a
local server that answers OSV's query API for one known advisory: the one test double here,
standing in for a service that cannot run locally. bandit runs for real on real files.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shipway.pipeline.runner import run_pipeline
from shipway.pipeline.spec import load_spec

ADVISORY = {
    "id": "GHSA-x84v-xcm2-53pg",
    "aliases": ["CVE-2018-18074"],
    "summary": "requests sends Authorization headers to redirected hosts",
    "affected": [
        {
            "package": {"name": "requests", "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
        }
    ],
}


class _Osv(BaseHTTPRequestHandler):
    """OSV's POST /v1/query: the advisory for requests below 2.20.0, nothing for the rest."""

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name, version = query["package"]["name"], query["version"]
        major_minor = tuple(int(p) for p in version.split(".")[:2])
        hit = name == "requests" and major_minor < (2, 20)
        body = json.dumps({"vulns": [ADVISORY]} if hit else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osv_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Osv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    server.shutdown()
    server.server_close()


def project(tmp_path: Path, options: str, code: str, requirements: str) -> Path:
    (tmp_path / "app.py").write_text(code)
    (tmp_path / "requirements.lock").write_text(requirements)
    (tmp_path / "shipway.yaml").write_text(
        f"pipeline:\n  model: m\n  stages:\n    - name: security\n      uses: security\n"
        f"      with: {{{options}}}\n"
    )
    return tmp_path


SAFE = "import json\n\n\ndef load(text):\n    return json.loads(text)\n"
RISKY = (
    "import subprocess\n\n\ndef run(command):\n"
    "    return subprocess.call(command, shell=True)\n"
)


def test_clean_code_and_a_clean_lock_pass(
    shipway_home: Path, tmp_path: Path, osv_url: str
) -> None:
    spec = load_spec(project(
        tmp_path, f"paths: [app.py], requirements: requirements.lock, osv_url: '{osv_url}'",
        SAFE, "requests==2.32.3\nidna==3.7\n",
    ))  # fmt: skip
    run = run_pipeline(spec)
    assert run.status == "succeeded", run.summary
    checks = {c["name"]: c for c in run.stages[0].checks}
    assert checks["bandit"]["passed"] and checks["pip-audit"]["passed"]
    assert "2 package(s) of requirements.lock, none vulnerable" in checks["pip-audit"]["detail"]


def test_a_vulnerable_pin_fails_with_the_advisory_and_the_fix(
    shipway_home: Path, tmp_path: Path, osv_url: str
) -> None:
    spec = load_spec(project(
        tmp_path, f"paths: [app.py], requirements: requirements.lock, osv_url: '{osv_url}'",
        SAFE, "requests==2.19.0\nidna==3.7\n",
    ))  # fmt: skip
    run = run_pipeline(spec)
    assert run.status == "failed"
    assert run.summary == (
        "security failed: pip-audit: 1 vulnerable package(s) in requirements.lock; first: "
        "requests 2.19.0 has CVE-2018-18074 (fixed in 2.20.0)"
    )
    ignored = load_spec(project(
        tmp_path, f"paths: [app.py], requirements: requirements.lock, osv_url: '{osv_url}', "
        "ignore: [GHSA-x84v-xcm2-53pg]", SAFE, "requests==2.19.0\n",
    ))  # fmt: skip
    assert run_pipeline(ignored).status == "succeeded"  # an accepted risk, named


def test_bandit_findings_fail_at_the_configured_severity(
    shipway_home: Path, tmp_path: Path
) -> None:
    spec = load_spec(project(tmp_path, "paths: [app.py], audit: false", RISKY, ""))
    run = run_pipeline(spec)
    assert run.status == "failed"
    assert "bandit found 1 issue(s) at medium or above; first: B602 (high)" in str(run.summary)
    assert "app.py:5" in str(run.summary)
    skipped = load_spec(project(tmp_path, "paths: [app.py], audit: false, ignore: [B602]",
                                RISKY, ""))  # fmt: skip
    assert run_pipeline(skipped).status == "succeeded"


def test_an_unreachable_vulnerability_service_fails_closed(
    shipway_home: Path, tmp_path: Path
) -> None:
    spec = load_spec(project(
        tmp_path, "paths: [app.py], requirements: requirements.lock, "
        "osv_url: 'http://127.0.0.1:9/v1/query'", SAFE, "requests==2.32.3\n",
    ))  # fmt: skip
    run = run_pipeline(spec)
    assert run.status == "failed"
    assert "pip-audit could not audit requirements.lock" in str(run.summary)
