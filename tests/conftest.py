"""Shared test configuration."""

from hypothesis import HealthCheck, settings

# Tests never assert on wall time: these machines are shared and noisy.
settings.register_profile(
    "twin", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("twin")
