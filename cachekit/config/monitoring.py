"""MonitoringConfig: what a decorated function reports about itself.

Every field only decides what is *exported*; the counters themselves live
in the C object and cost the same either way (cachekit/observe.py,
cachekit/prometheus.py, docs/observability.md).
"""

from __future__ import annotations

import dataclasses

from cachekit.exceptions import ConfigurationError


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """``collect_stats``: list the function in ``cachekit.metrics.all_stats()``
    and the Prometheus collector (its own ``cache_info()`` counts regardless).
    ``enable_structured_logging``: DEBUG records of its misses and L2
    operations on the ``cachekit`` logger, when DEBUG is enabled there.
    ``enable_prometheus_metrics``: export it through the Prometheus
    collector, which decorating such a function registers with
    ``prometheus_client``'s default registry when that package is installed.
    """

    collect_stats: bool = True
    enable_structured_logging: bool = True
    enable_prometheus_metrics: bool = True

    def validate(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, bool):
                raise ConfigurationError(
                    f"MonitoringConfig.{field.name} must be True or False, not {value!r}"
                )
