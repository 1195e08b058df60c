"""The Python API against a team server (`SHIPWAY_TRACKING_URI` and `SHIPWAY_TOKEN`).

One seam: `Client.remote` is a `RemoteApi` when a tracking URI is set, and each public function
that works remotely begins with `if client.remote: return remote.<same>(...)`, so the local
code paths stay as they are. `tracking` holds runs (`RemoteRun`), `registry` the registry,
lineage and the audit log; both return the same records and raise the same errors as locally.
"""

from shipway.remote._http import RemoteApi

__all__ = ["RemoteApi"]
