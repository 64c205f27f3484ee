"""A TCP fault proxy that speaks toxiproxy's HTTP API, for chaos tests, and the starter tests
use (`running_fault_proxy()`, driven through toxiproxy-python or a real toxiproxy).

Layout: `toxics` (types, attributes, input checks), `stages` (what each toxic does to a
stream), `links` (a connection pumped both ways through its toxic chains), `proxies` (listening
and the API's operations), `api` (the HTTP paths), `server` and `__main__` (the process),
`starter` (the context manager)."""

from streamhouse.testing.fault_proxy.starter import FaultProxy, running_fault_proxy

__all__ = ["FaultProxy", "running_fault_proxy"]
