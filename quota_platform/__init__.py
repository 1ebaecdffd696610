"""quota_platform: quota attainment, projections and alerts for sales teams, as Dagster assets."""

__version__ = "0.1.0"
