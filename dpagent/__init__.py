"""dpagent: observability for the DPerformance agent pipeline.

The instrumentation library lives in :mod:`dpagent.telemetry`; the rest of this
package (reference agents, batch runner, demo workload, CLI) is its first user.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
