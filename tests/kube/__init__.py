"""A faithful in-process fake of the Kubernetes API server for tests.

rdev's Kubernetes backend talks to real clusters through ``kubernetes_asyncio``; this
package lets tests drive that same client (and ``kubectl``) over the real wire protocol
(REST, chunked watch streams, websocket exec) against pods whose exec'd commands run as
ordinary local processes, with faults injectable on demand.
"""
