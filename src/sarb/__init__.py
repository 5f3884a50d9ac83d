"""sarb: multi-label image recognition with partial labels (SARB, AAAI 2022, and baselines)."""

__version__ = "0.1.0"
